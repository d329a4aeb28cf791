// Key Vault for the secrets the app keeps for tenants (customer client secrets, users' refresh
// tokens, webhook signing secrets): Azure RBAC only (no access policies), soft delete with purge
// protection, and its audit log in Log Analytics.
param name string
param location string
param tags object
param workspaceId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_189: Flex Consumption without a virtual network reaches the vault over its public endpoint; every request still needs an Entra token with a Key Vault data role (RBAC below), and the vault is audited. Private endpoints are a network design decision left to the tenant.
  // checkov:skip=CKV_AZURE_109: same reason: a firewall that denies by default would lock the Function App out (it is not a trusted Microsoft service for Key Vault).
  // checkov:skip=CKV2_AZURE_32: same reason: no private endpoint without a virtual network.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: { defaultAction: 'Allow', bypass: 'AzureServices' }
  }
}

resource audit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: workspaceId
    logs: [{ categoryGroup: 'audit', enabled: true }]
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
