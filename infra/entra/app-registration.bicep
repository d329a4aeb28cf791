// The deployment's own app registration (credential mode `managed`), through the Microsoft
// Graph Bicep extension: the application permissions the features use, granted (admin consent)
// by assigning them to its service principal, each looked up by name on the Microsoft Graph
// service principal; the Function App's managed identity as its federated credential, so it
// signs in with no secret; and the delegated sign-in's redirect URI and scopes (credential mode
// `delegated`, users connecting their own calendars).
//
// Deploying it needs Application.ReadWrite.All and AppRoleAssignment.ReadWrite.All: in practice
// the Privileged Role Administrator or Global Administrator role (README).
extension microsoftGraphV1

param uniqueName string
param displayName string
param signInAudience string
param managedIdentityPrincipalId string
param redirectUri string

// What the features call Graph for, and nothing more: the write permissions include reading;
// no feature reads the directory or mailbox settings.
var applicationPermissions = ['Calendars.ReadWrite', 'Mail.ReadWrite', 'Mail.Send']
// What a user consents to when connecting their own calendar (core/delegated.py).
var delegatedPermissions = ['Calendars.Read', 'Calendars.ReadWrite', 'User.Read', 'offline_access', 'openid', 'profile']
var graphAppId = '00000003-0000-0000-c000-000000000000'

resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graphAppId
}

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: signInAudience
  publicClient: { redirectUris: [redirectUri] }
  requiredResourceAccess: [
    {
      resourceAppId: graphAppId
      resourceAccess: concat(
        map(applicationPermissions, permission => {
          id: filter(graph.appRoles, role => role.value == permission)[0].id
          type: 'Role'
        }),
        map(delegatedPermissions, permission => {
          id: filter(graph.oauth2PermissionScopes, scope => scope.value == permission)[0].id
          type: 'Scope'
        })
      )
    }
  ]

  resource managedIdentity 'federatedIdentityCredentials@v1.0' = {
    name: '${app.uniqueName}/function-app-identity'
    description: 'The m365-bridge Function App\'s user-assigned managed identity'
    audiences: ['api://AzureADTokenExchange']
    issuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
    subject: managedIdentityPrincipalId
  }
}

resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
}

// Admin consent for this tenant: each application permission assigned to the app.
resource grants 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for permission in applicationPermissions: {
    appRoleId: filter(graph.appRoles, role => role.value == permission)[0].id
    principalId: servicePrincipal.id
    resourceId: graph.id
  }
]

output clientId string = app.appId
output servicePrincipalId string = servicePrincipal.id
