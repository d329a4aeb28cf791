// The one storage account: the Functions host (leases, timers, the deployment package), the
// work queues and their poison queues, the state tables and the staged documents. Reached only
// with Entra ID (shared keys off, so no connection string exists), no anonymous blob access,
// TLS 1.2, blob soft delete, and staged documents deleted after `stagedDocumentRetentionDays`.
param name string
param location string
param tags object
param sku string
param deploymentContainerName string
param stagedDocumentRetentionDays int
param workspaceId string

@description('Prefix of the state tables (the app setting BRIDGE_TABLE_PREFIX).')
param tablePrefix string = 'bridge'

// Every queue a function triggers on, and the poison queue the host moves a message to after
// five failed runs (tests/infra compare this list with the app's queue triggers).
var workQueues = [
  'calendar-sync'
  'calendar-push'
  'mail-import'
  'booking-reservations'
  'presence'
  'host-delivery'
  'graph-subscriptions'
  'mail-send'
]
var queues = concat(workQueues, map(workQueues, queue => '${queue}-poison'))
// The state tables (tests/infra compare them with core/store/records.py).
var tables = [
  'tenants'
  'links'
  'syncstate'
  'eventmap'
  'eventtx'
  'appointments'
  'bookingcalendars'
  'slotclaims'
  'reservations'
  'mailimports'
  'mailimportstate'
  'mailledger'
  'presence'
  'presencesettings'
  'connectstate'
  'delegatedgrants'
  'outbox'
  'counters'
  'runs'
  'subscriptions'
  'mailsenders'
  'outgoingmail'
]
var stagedDocuments = 'staged-documents'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without a virtual network reaches Storage over its public endpoint, so the firewall cannot deny by default; shared keys are off, so every request needs an Entra token with a data role of the app's identity.
  // checkov:skip=CKV2_AZURE_33: same reason: no private endpoint without a virtual network.
  // checkov:skip=CKV2_AZURE_1: customer-managed keys are the tenant's choice; data is encrypted at rest with Microsoft-managed keys.
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35: the public endpoint is needed without a virtual network; anonymous blob access and shared keys are both off.
  // checkov:skip=CKV_AZURE_206: the SKU is a parameter limited to ZRS, GZRS, RA-GZRS and (for regions without zones) LRS; zone-redundant by default.
  // checkov:skip=CKV_AZURE_43: the name is computed (a prefix and a unique token of lower-case letters and digits); checkov cannot evaluate it.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: sku }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: { defaultAction: 'Allow', bypass: 'AzureServices' }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: { enabled: true, keyType: 'Account' }
        file: { enabled: true, keyType: 'Account' }
        queue: { enabled: true, keyType: 'Account' }
        table: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
    containerDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: deploymentContainerName
  properties: { publicAccess: 'None' }
}

resource stagedContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: stagedDocuments
  properties: { publicAccess: 'None' }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queueResources 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queue in queues: {
    parent: queueService
    name: queue
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource tableResources 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for table in tables: {
    parent: tableService
    name: '${tablePrefix}${table}'
  }
]

// A staged document's download URL lasts at most 7 days; the blob goes some days later.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-staged-documents'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: ['blockBlob'], prefixMatch: ['${stagedDocuments}/'] }
            actions: { baseBlob: { delete: { daysAfterCreationGreaterThan: stagedDocumentRetentionDays } } }
          }
        }
      ]
    }
  }
}

// Storage's own log of every write and delete, for audit. Reads are left out: the host polls
// each queue every few seconds, and logging those reads would cost more than the app at rest.
resource blobLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobs
  properties: {
    workspaceId: workspaceId
    logs: [
      { category: 'StorageWrite', enabled: true }
      { category: 'StorageDelete', enabled: true }
    ]
  }
}

resource queueLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: queueService
  properties: {
    workspaceId: workspaceId
    logs: [
      { category: 'StorageWrite', enabled: true }
      { category: 'StorageDelete', enabled: true }
    ]
  }
}

resource tableLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: tableService
  properties: {
    workspaceId: workspaceId
    logs: [
      { category: 'StorageWrite', enabled: true }
      { category: 'StorageDelete', enabled: true }
    ]
  }
}

output name string = account.name
output deploymentContainerName string = deploymentContainer.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
