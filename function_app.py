"""The Function App: registers one blueprint per area, nothing else."""

import azure.functions as func

from functions import health, housekeeping

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

app.register_functions(health.bp)
app.register_functions(housekeeping.bp)
