// Azure Monitor alerts on the app's telemetry, each to one action group (e-mail):
// - a failed function run (a request with success == false), split by function;
// - any exception;
// - a message moved to a `-poison` queue (the Functions host logs "Message has reached
//   MaxDequeueCount of 5. Moving message to queue '<queue>-poison'." at the fifth failure),
//   split by queue, so an operator knows which work is parked for a replay.
param location string
param tags object
param namePrefix string
param appInsightsId string
param alertEmail string

@description('How often each rule runs, and the window it looks at.')
param evaluationFrequency string = 'PT5M'

var failedRunsQuery = '''
requests
| where success == false
| summarize failures = count() by function = name
'''
var exceptionsQuery = '''
exceptions
| summarize occurrences = count() by problemId
'''
var poisonQuery = '''
traces
| where message has "MaxDequeueCount" and message has "Moving message to queue"
| extend queue = extract(@"Moving message to queue '([^']+-poison)'", 1, message)
| where isnotempty(queue)
| summarize moved = count() by queue
'''

var rules = [
  {
    name: 'failed-runs'
    displayName: 'm365-bridge: a function run failed'
    description: 'A function execution failed (requests with success == false), per function. The run row (GET …/runs) says why in plain words.'
    severity: 2
    query: failedRunsQuery
    measure: 'failures'
    dimension: 'function'
  }
  {
    name: 'exceptions'
    displayName: 'm365-bridge: exceptions'
    description: 'The app or the Functions host recorded an exception.'
    severity: 3
    query: exceptionsQuery
    measure: 'occurrences'
    dimension: 'problemId'
  }
  {
    name: 'poison-messages'
    displayName: 'm365-bridge: a message went to a poison queue'
    description: 'A queue message failed five times and was moved to <queue>-poison: nothing is lost, but that work waits for an operator to fix the cause and move the message back to <queue> (Azure Portal > the storage account > Queues, or Azure Storage Explorer).'
    severity: 1
    query: poisonQuery
    measure: 'moved'
    dimension: 'queue'
  }
]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${namePrefix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'm365bridge'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      { name: 'operator', emailAddress: alertEmail, useCommonAlertSchema: true }
    ]
  }
}

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in rules: {
    name: 'alert-${namePrefix}-${rule.name}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [appInsightsId]
      evaluationFrequency: evaluationFrequency
      windowSize: evaluationFrequency
      autoMitigate: true
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Total'
            metricMeasureColumn: rule.measure
            dimensions: [{ name: rule.dimension, operator: 'Include', values: ['*'] }]
            operator: 'GreaterThan'
            threshold: 0
            failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
          }
        ]
      }
      actions: { actionGroups: [actionGroup.id] }
    }
  }
]
