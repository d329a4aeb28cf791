// The Function App on Flex Consumption (Linux, Python 3.12), running as the user-assigned
// identity: the host's storage, the deployment package, Key Vault and Application Insights are
// all reached with Entra ID, so no app setting holds a key. Every setting `core/settings.py`
// reads is set here (tests/infra compares the two lists).
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param appInsightsName string
param keyVaultUri string
param bridgeAppClientId string
param publicUrl string
param operatorKeySha256 string
param calendarSyncSchedule string
param mailImportSchedule string
param housekeepingSchedule string
param calendarSyncDaysBack int
param calendarSyncDaysAhead int
param maximumInstanceCount int
param instanceMemoryMB int
param zoneRedundant bool

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy is offered only in some regions; the parameter zoneRedundant turns it on where it is.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true, zoneRedundant: zoneRedundant }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_56: App Service authentication would put a sign-in in front of host systems and of Microsoft's sign-in callback; every route already needs the Functions key and, per tenant, a hashed API key (the callback is verified by its single-use state).
  // checkov:skip=CKV_AZURE_17: client certificates are not how host systems authenticate (Functions key + tenant API key over TLS).
  // checkov:skip=CKV_AZURE_222: public network access is how host systems and Microsoft's sign-in reach the API; a private endpoint needs a virtual network the default deployment does not make.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero on demand (queue length, HTTP load); a standing minimum of instances would cost around the clock for no work.
  // checkov:skip=CKV_AZURE_213: the platform health check calls without keys, and every route here needs the Functions key; GET /api/v1/health serves monitors that hold one, and Azure Monitor alerts on failed runs.
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      ftpsState: 'Disabled'
      remoteDebuggingEnabled: false
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: { type: 'UserAssignedIdentity', userAssignedIdentityResourceId: identityId }
        }
      }
      scaleAndConcurrency: { maximumInstanceCount: maximumInstanceCount, instanceMemoryMB: instanceMemoryMB }
      runtime: { name: 'python', version: '3.12' }
    }
  }

  resource settings 'config' = {
    // These are app settings, which checkov reads as a site configuration:
    // checkov:skip=CKV_AZURE_222: see the site: public network access is how host systems reach the API.
    // checkov:skip=CKV_AZURE_13: see the site (CKV_AZURE_56): keys, not App Service authentication.
    // checkov:skip=CKV_AZURE_63: App Service HTTP logs do not exist on Flex Consumption; every request is in Application Insights.
    // checkov:skip=CKV_AZURE_66: failed request tracing is an App Service (IIS) log Flex Consumption does not have; failures are in Application Insights and alerted on.
    // checkov:skip=CKV_AZURE_65: detailed error pages would show callers internals; errors answer RFC 9457 problem+json with a reference id that is in the log.
    // checkov:skip=CKV_AZURE_80: the app is Python 3.12, not .NET.
    // checkov:skip=CKV_AZURE_88: Flex Consumption deploys from a blob container; nothing uses Azure Files.
    name: 'appsettings'
    properties: {
      // the Functions host's storage, by identity
      AzureWebJobsStorage__accountName: storage.name
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identityClientId
      // telemetry, Entra-authenticated (the workspace refuses the key alone)
      APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
      // core/settings.py
      AZURE_CLIENT_ID: identityClientId
      BRIDGE_TABLE_PREFIX: 'bridge'
      SECRETS_PROVIDER: 'keyvault'
      KEY_VAULT_URI: keyVaultUri
      SECRETS_CACHE_SECONDS: '300'
      BRIDGE_APP_CLIENT_ID: bridgeAppClientId
      BRIDGE_PUBLIC_URL: publicUrl
      BRIDGE_OPERATOR_KEY_SHA256: operatorKeySha256
      API_KEY_GRACE_HOURS: '24'
      LOG_LEVEL: 'INFO'
      LOG_FORMAT: 'message'
      HOUSEKEEPING_SCHEDULE: housekeepingSchedule
      RUN_RETENTION_DAYS: '30'
      GRAPH_BASE_URL: '${environment().graph}v1.0'
      GRAPH_AUTHORITY_HOST: environment().authentication.loginEndpoint
      GRAPH_RETRY_BUDGET_SECONDS: '60'
      GRAPH_TIMEOUT_SECONDS: '30'
      WEBHOOK_TIMEOUT_SECONDS: '10'
      WEBHOOK_BACKOFF_BASE_SECONDS: '2'
      WEBHOOK_BACKOFF_CAP_SECONDS: '300'
      WEBHOOK_RETRY_BUDGET_SECONDS: '86400'
      OUTBOX_GAP_GRACE_SECONDS: '10'
      OUTBOX_RETENTION_DAYS: '30'
      CALENDAR_SYNC_SCHEDULE: calendarSyncSchedule
      CALENDAR_SYNC_DAYS_BACK: string(calendarSyncDaysBack)
      CALENDAR_SYNC_DAYS_AHEAD: string(calendarSyncDaysAhead)
      CALENDAR_SYNC_WINDOW_SLACK_DAYS: '7'
      CALENDAR_SYNC_SUBSCRIBED_HOURS: '6'
      GRAPH_SUBSCRIPTION_MINUTES: '4230'
      GRAPH_SUBSCRIPTION_SCHEDULE: '0 20 * * * *'
      MAIL_IMPORT_SCHEDULE: mailImportSchedule
      MAIL_DOCUMENT_URL_SECONDS: '604800'
      MAIL_SEND_MAX_MB: '35'
    }
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
