// The Function App's user-assigned managed identity: it reaches Storage, Key Vault and
// Application Insights through role assignments, and signs in to Microsoft Graph as the app
// registration's federated credential (no secret anywhere).
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
