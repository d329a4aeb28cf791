"""Timer: prune old state (schedule from the HOUSEKEEPING_SCHEDULE app setting)."""

import logging

import azure.functions as func

from core.bootstrap import container
from core.housekeeping import housekeeping as run_housekeeping

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.timer_trigger(schedule="%HOUSEKEEPING_SCHEDULE%", arg_name="timer", run_on_startup=False)
async def housekeeping(timer: func.TimerRequest) -> None:
    app = await container()
    await run_housekeeping(
        app.tables.runs(),
        app.settings.run_retention_days,
        clock=app.clock,
        outbox=app.tables,
        outbox_retention_days=app.settings.outbox_retention_days,
        reservations=app.reservation_queue(),
    )
