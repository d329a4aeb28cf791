// m365-bridge on Azure: `azd up` provisions everything in one resource group, secure by default.
// Modules by concern: security/ (identity, Key Vault, role assignments), data/ (storage),
// monitoring/ (Log Analytics, Application Insights, alerts, workbook), entra/ (the app
// registration through the Microsoft Graph Bicep extension), app/ (the Function App).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name: names and tags every resource.')
param environmentName string

@minLength(1)
@description('Azure region for every resource (one that offers Flex Consumption).')
@metadata({ azd: { type: 'location' } })
param location string

@description('Where the alerts go (failed runs, exceptions, poison messages). Empty: alerts fire with no e-mail.')
param alertEmail string = ''

@description('Create the app registration with its Graph permissions granted (needs Privileged Role Administrator or Global Administrator). false: bring your own, see existingAppClientId.')
param createAppRegistration bool = true

@description('With createAppRegistration=false: the client id of an app registration you made, which trusts the managed identity as a federated credential (README).')
param existingAppClientId string = ''

@description('Who may sign in to the app registration: AzureADMultipleOrgs lets other tenants consent to it (credential mode managed across tenants); AzureADMyOrg keeps it to this tenant.')
@allowed(['AzureADMyOrg', 'AzureADMultipleOrgs'])
param appSignInAudience string = 'AzureADMultipleOrgs'

@description('SHA-256 hex digest(s) of the operator key, comma-separated while rolling (`python -m core.operator_auth` makes a key and its digest). Empty: the operator API is off.')
param operatorKeySha256 string = ''

@description('Six-field NCRONTAB of the calendar down-sync timer.')
param calendarSyncSchedule string = '0 */15 * * * *'

@description('Six-field NCRONTAB of the mail import timer.')
param mailImportSchedule string = '0 0 */2 * * *'

@description('Six-field NCRONTAB of housekeeping.')
param housekeepingSchedule string = '0 17 3 * * *'

@description('Days before today the host sees of each calendar.')
@minValue(0)
@maxValue(365)
param calendarSyncDaysBack int = 30

@description('Days after today the host sees of each calendar.')
@minValue(1)
@maxValue(1825)
param calendarSyncDaysAhead int = 365

@description('Days a staged document stays in Blob Storage (its download URL lasts at most 7).')
@minValue(8)
@maxValue(3650)
param stagedDocumentRetentionDays int = 30

@description('Flex Consumption: the most instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Flex Consumption: memory per instance.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Spread the Function App\'s instances across availability zones (regions with zones only).')
param zoneRedundant bool = false

@description('Storage redundancy. Zone-redundant by default; LRS where the region has no zones.')
@allowed(['Standard_ZRS', 'Standard_LRS', 'Standard_GZRS', 'Standard_RAGZRS'])
param storageSku string = 'Standard_ZRS'

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = '${abbrs.webSitesFunctions}${resourceToken}'
// The Function App's address is fixed by its name, so the app registration can carry the
// delegated sign-in's redirect URI before the app exists (no dependency cycle).
var publicUrl = 'https://${functionAppName}.azurewebsites.net'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'security/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'monitoring/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    workspaceName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    appInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'data/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    sku: storageSku
    deploymentContainerName: 'app-package-${resourceToken}'
    stagedDocumentRetentionDays: stagedDocumentRetentionDays
    workspaceId: monitoring.outputs.workspaceId
  }
}

module keyVault 'security/key-vault.bicep' = {
  name: 'key-vault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    workspaceId: monitoring.outputs.workspaceId
  }
}

module roles 'security/role-assignments.bicep' = {
  name: 'role-assignments'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
  }
}

module appRegistration 'entra/app-registration.bicep' = if (createAppRegistration) {
  name: 'app-registration'
  scope: rg
  params: {
    uniqueName: 'm365-bridge-${resourceToken}'
    displayName: 'm365-bridge (${environmentName})'
    signInAudience: appSignInAudience
    managedIdentityPrincipalId: identity.outputs.principalId
    redirectUri: '${publicUrl}/api/v1/connect/callback'
  }
}

module functionApp 'app/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  dependsOn: [roles]
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    appInsightsName: monitoring.outputs.appInsightsName
    keyVaultUri: keyVault.outputs.uri
    bridgeAppClientId: createAppRegistration ? appRegistration.outputs.clientId : existingAppClientId
    publicUrl: publicUrl
    operatorKeySha256: operatorKeySha256
    calendarSyncSchedule: calendarSyncSchedule
    mailImportSchedule: mailImportSchedule
    housekeepingSchedule: housekeepingSchedule
    calendarSyncDaysBack: calendarSyncDaysBack
    calendarSyncDaysAhead: calendarSyncDaysAhead
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    zoneRedundant: zoneRedundant
  }
}

module alerts 'monitoring/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    namePrefix: resourceToken
    appInsightsId: monitoring.outputs.appInsightsId
    alertEmail: alertEmail
  }
}

module workbook 'monitoring/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.appInsightsId
    displayName: 'm365-bridge (${environmentName})'
  }
}

// What azd and an operator need next; ids and names only — nothing here is a secret.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output BRIDGE_PUBLIC_URL string = publicUrl
output BRIDGE_APP_CLIENT_ID string = createAppRegistration ? appRegistration.outputs.clientId : existingAppClientId
output ADMIN_CONSENT_URL string = '${environment().authentication.loginEndpoint}organizations/adminconsent?client_id=${createAppRegistration ? appRegistration.outputs.clientId : existingAppClientId}'
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output KEY_VAULT_URI string = keyVault.outputs.uri
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
