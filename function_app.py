"""The Function App: registers one blueprint per area, nothing else."""

import azure.functions as func

from functions import (
    appointments,
    booking,
    calendar,
    connect,
    delivery,
    diagnostics,
    events,
    health,
    housekeeping,
    mail,
    mail_send,
    notifications,
    openapi,
    operator,
    presence,
    resources,
    runs,
)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

app.register_functions(health.bp)
app.register_functions(housekeeping.bp)
app.register_functions(delivery.bp)
app.register_functions(events.bp)
app.register_functions(operator.bp)
app.register_functions(resources.bp)
app.register_functions(calendar.bp)
app.register_functions(appointments.bp)
app.register_functions(mail.bp)
app.register_functions(booking.bp)
app.register_functions(presence.bp)
app.register_functions(runs.bp)
app.register_functions(connect.bp)
app.register_functions(openapi.bp)
app.register_functions(diagnostics.bp)
app.register_functions(notifications.bp)
app.register_functions(mail_send.bp)
