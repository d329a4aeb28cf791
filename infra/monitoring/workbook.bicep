// An Azure Monitor workbook over Application Insights: runs and failures per function, failed
// runs in plain words, Graph throttling, delivery lag to host webhooks and dead letters per
// tenant, and poison messages (the queries are in workbook.json).
param location string
param tags object
param appInsightsId string
param displayName string

var content = loadJsonContent('workbook.json')

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'm365-bridge-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsightsId
    serializedData: string(union(content, { fallbackResourceIds: [appInsightsId] }))
  }
}
