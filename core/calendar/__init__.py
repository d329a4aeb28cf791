"""Calendar sync between Outlook and a host's scheduler.

Down (Outlook → host): `fanout` puts one sync request per down-linked calendar on the
`calendar-sync` queue; `sync.CalendarSync` runs each — delta rounds over a rolling `window`,
a pure `planner` deciding which `appointment.upserted` / `appointment.deleted` events the host
gets, `payload` shaping them.
"""
