"""Test settings (`POST …/tenants/{id}/test`): the guides' button that checks a tenant's set-up
and says, for each thing that is wrong, how to fix it in plain words.

Checks, in order: `token` (Entra ID issues the tenant's credential a Graph token), `permissions`
(the token carries what the configured features need), then, each against Graph, every linked
`calendar`, every mail import's `mail-folder`s, every `booking-calendar` and one `presence`
read. One line per check and target, with `ok`, `failed`, `warning` (Graph busy or slow: try
again) or `skipped` (nothing to check, or no token to check with).

Plan, then act: what the configuration needs (`needs_of`), what the token grants
(`granted_by`) and every fix text are pure functions of plain data; `TenantDiagnostics` reads
the configuration, makes the Graph calls (a few at a time, the gateway's per-mailbox limit
still holds) and turns each answer or named error into a line. Bounded: at most `MAX_TARGETS`
targets and `DEFAULT_DEADLINE` seconds, the report says what it left out.

Where: `report.py` (the lines and the report), `needs.py` (what the configuration needs, what a
token grants), `fixes.py` (each line and fix), `checks.py` (the shell).

Never in a report or a log: a secret, a token (only the permission names it carries), mail or
event content. Calendar names of a mailbox appear only as a hint when a linked name is wrong.
"""

from core.diagnostics.checks import (
    DEFAULT_CONCURRENCY,
    DEFAULT_DEADLINE,
    MAX_TARGETS,
    TenantDiagnostics,
    TokenGraphs,
)
from core.diagnostics.fixes import AppIdentity, app_identity, credential_fix, permission_fix, token_fix
from core.diagnostics.needs import Granted, Need, Setup, accounts_of, granted_by, needs_of
from core.diagnostics.report import Check, CheckLine, Report, Status

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_DEADLINE",
    "MAX_TARGETS",
    "AppIdentity",
    "Check",
    "CheckLine",
    "Granted",
    "Need",
    "Report",
    "Setup",
    "Status",
    "TenantDiagnostics",
    "TokenGraphs",
    "accounts_of",
    "app_identity",
    "credential_fix",
    "granted_by",
    "needs_of",
    "permission_fix",
    "token_fix",
]
