"""The Graph port: lean domain types, named errors, and the `GraphGateway` protocol.

Importing this package is cheap (no msgraph-sdk, kiota or httpx): the real adapter lives in
`core.graph.gateway` and is imported by the composition root only when a gateway is built.
"""

from __future__ import annotations

from core.graph.errors import (
    BadRequest,
    Conflict,
    ConsentMissing,
    FolderNotFound,
    GraphError,
    GraphUnavailable,
    MalformedItem,
    MalformedResponse,
    NotFound,
    SyncStateExpired,
    Throttled,
    TokenUnavailable,
)
from core.graph.limits import MailboxLimiter
from core.graph.model import (
    Attachment,
    AttachmentKind,
    Attendee,
    BodyType,
    Calendar,
    DeltaPage,
    Event,
    EventChanges,
    EventDraft,
    EventType,
    MailFolder,
    Message,
    OutgoingAttachment,
    OutgoingMail,
    Removed,
    Schedule,
    ScheduleItem,
    Sensitivity,
    ShowAs,
    User,
    transaction_id,
)
from core.graph.port import GraphGateway

__all__ = [
    "Attachment",
    "AttachmentKind",
    "Attendee",
    "BadRequest",
    "BodyType",
    "Calendar",
    "Conflict",
    "ConsentMissing",
    "DeltaPage",
    "Event",
    "EventChanges",
    "EventDraft",
    "EventType",
    "FolderNotFound",
    "GraphError",
    "GraphGateway",
    "GraphUnavailable",
    "MailFolder",
    "MailboxLimiter",
    "MalformedItem",
    "MalformedResponse",
    "Message",
    "NotFound",
    "OutgoingAttachment",
    "OutgoingMail",
    "Removed",
    "Schedule",
    "ScheduleItem",
    "Sensitivity",
    "ShowAs",
    "SyncStateExpired",
    "Throttled",
    "TokenUnavailable",
    "User",
    "transaction_id",
]
