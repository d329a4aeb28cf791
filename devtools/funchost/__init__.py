"""A small local Azure Functions host for HTTP, timer and queue triggers.

Azure Functions Core Tools cannot be installed here (its CLI comes from a CDN), so this package
runs a v2-programming-model `func.FunctionApp` itself: `python -m devtools.funchost`, or
`async with FunctionHost(app=...) as host:` in tests. It follows the real host where the app can
tell the difference (routes, auth levels, queue retries and poison queue, timer schedules,
the admin invoke API) and knowingly differs here:

- Triggers: HTTP, timer and queue only; no blob, Event Grid, Service Bus, Cosmos DB or Durable
  triggers. No input or output bindings (the app writes through SDK clients); an app declaring
  one fails at start-up naming the function and binding type. No `function.json` (v1) apps and
  no retry policies (`@app.retry`).
- In-process: functions run in the host's process and event loop (sync ones in a thread pool),
  not in a separate worker, so module state is shared with the caller; a sync function that
  never returns keeps the process from exiting.
- Keys: authLevel is enforced (Azure does; `func start` does not). One function key for every
  function plus the master key, random per start unless FUNCHOST_FUNCTION_KEY /
  FUNCHOST_MASTER_KEY are set; never persisted; no host or system keys, no key management API.
- Admin API: only `GET /admin/host/status` and `POST /admin/functions/{name}`.
- HTTP: plain HTTP on 127.0.0.1; no HTTPS, CORS or proxies; 100 MB request limit and no
  request timeout (Azure's load balancer cuts at 230 s). Route parameters must fill whole
  segments; constraints int, long, bool, guid and alpha only.
- Timers: UTC only (WEBSITE_TIME_ZONE is ignored); six-field NCRONTAB or TimeSpan schedules.
  Single instance, so no blob lease and no schedule monitor: occurrences missed while the host
  was stopped are not caught up, and `past_due` only reports invocations that started more than
  a second late in this process.
- Queues: connection strings only (no identity-based `__queueServiceUri` connections); polling
  back-off without jitter; concurrency is per host, with newBatchThreshold = batchSize/2 (N = 1).
- No scale-out: one instance, one process. No Application Insights: logs go to stdlib `logging`.
- `context`: invocation id, function name and directory are real; trace and retry contexts are
  empty.
"""

from __future__ import annotations

from devtools.funchost.host import FunctionHost
from devtools.funchost.settings import FunctionHostError, HostConfig, QueuesConfig

__all__ = ["FunctionHost", "FunctionHostError", "HostConfig", "QueuesConfig"]
