"""Domain inputs → Graph JSON request bodies (the other direction of `parse`)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from core.graph.errors import BadRequest
from core.graph.model import Attendee, BodyType, EventChanges, EventDraft, OutgoingMail, SubscriptionRequest

CHANGE_TYPES = frozenset({"created", "updated", "deleted"})
MAX_CLIENT_STATE = 128  # Graph's limit


def graph_datetime(moment: datetime) -> dict[str, str]:
    """A Graph dateTimeTimeZone in UTC (what the gateway also asks Graph to answer in)."""
    return {
        "dateTime": moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        "timeZone": "UTC",
    }


def _recipients(addresses: Sequence[str]) -> list[dict[str, Any]]:
    return [{"emailAddress": {"address": address}} for address in addresses]


def event_body(draft: EventDraft, transaction_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject": draft.subject,
        "body": {"contentType": draft.body_type.value, "content": draft.body},
        "start": graph_datetime(draft.start),
        "end": graph_datetime(draft.end),
        "isAllDay": draft.is_all_day,
        "showAs": draft.show_as.value,
        "sensitivity": draft.sensitivity.value,
        "transactionId": transaction_id,
    }
    if draft.location:
        body["location"] = {"displayName": draft.location}
    if draft.categories:
        body["categories"] = list(draft.categories)
    if draft.attendees:
        body["attendees"] = _attendees(draft.attendees)
    return body


def _attendees(attendees: Sequence[Attendee]) -> list[dict[str, Any]]:
    def address(attendee: Attendee) -> dict[str, str]:
        return (
            {"address": attendee.address, "name": attendee.name}
            if attendee.name
            else {"address": attendee.address}
        )

    return [{"type": a.type, "emailAddress": address(a)} for a in attendees]


def event_changes_body(changes: EventChanges) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if changes.subject is not None:
        body["subject"] = changes.subject
    if changes.body is not None:
        body_type = changes.body_type or BodyType.TEXT
        body["body"] = {"contentType": body_type.value, "content": changes.body}
    if changes.start is not None:
        body["start"] = graph_datetime(changes.start)
    if changes.end is not None:
        body["end"] = graph_datetime(changes.end)
    if changes.is_all_day is not None:
        body["isAllDay"] = changes.is_all_day
    if changes.location is not None:
        body["location"] = {"displayName": changes.location}
    if changes.show_as is not None:
        body["showAs"] = changes.show_as.value
    if changes.sensitivity is not None:
        body["sensitivity"] = changes.sensitivity.value
    if changes.categories is not None:
        body["categories"] = list(changes.categories)
    if changes.attendees is not None:
        body["attendees"] = _attendees(changes.attendees)
    return body


def schedule_body(schedules: Sequence[str], start: datetime, end: datetime, interval: int) -> dict[str, Any]:
    return {
        "schedules": list(schedules),
        "startTime": graph_datetime(start),
        "endTime": graph_datetime(end),
        "availabilityViewInterval": interval,
    }


def forward_body(to: Sequence[str], comment: str) -> dict[str, Any]:
    # Graph takes `comment` or `message.body`, never both (400); the bridge only uses comment.
    return {"comment": comment, "toRecipients": _recipients(to)}


def message_body(mail: OutgoingMail, *, with_attachments: bool = True) -> dict[str, Any]:
    """A Graph message: for `sendMail` (with its attachments) or as a draft (without: they are
    added one by one)."""
    message: dict[str, Any] = {
        "subject": mail.subject,
        "body": {"contentType": mail.body_type.value, "content": mail.body},
        "toRecipients": _recipients(mail.to),
        "importance": mail.importance.value,
    }
    if mail.cc:
        message["ccRecipients"] = _recipients(mail.cc)
    if mail.bcc:
        message["bccRecipients"] = _recipients(mail.bcc)
    if mail.reply_to:
        message["replyTo"] = _recipients(mail.reply_to)
    if mail.from_address:
        message["from"] = {"emailAddress": {"address": mail.from_address}}
    if with_attachments and mail.attachments:
        message["attachments"] = [
            file_attachment(a.name, a.content_type, a.content) for a in mail.attachments
        ]
    return message


def file_attachment(name: str, content_type: str, content: bytes) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": name,
        "contentType": content_type,
        "contentBytes": base64.b64encode(content).decode("ascii"),
    }


def send_mail_body(mail: OutgoingMail) -> dict[str, Any]:
    return {"message": message_body(mail), "saveToSentItems": mail.save_to_sent_items}


def graph_instant(moment: datetime) -> str:
    """An instant as Graph's DateTimeOffset properties take it (expirationDateTime)."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def subscription_body(request: SubscriptionRequest) -> dict[str, Any]:
    """POST /subscriptions; BadRequest for what Graph would refuse, before any I/O."""
    if not request.resource.startswith("/users/") or "?" in request.resource:
        raise BadRequest("a subscription's resource is a /users/… path without a query")
    if not request.change_types or not set(request.change_types) <= CHANGE_TYPES:
        raise BadRequest(f"a subscription's change types are some of {sorted(CHANGE_TYPES)}")
    if not 0 < len(request.client_state) <= MAX_CLIENT_STATE:
        raise BadRequest(f"a clientState is 1 to {MAX_CLIENT_STATE} characters")
    for url in (request.notification_url, request.lifecycle_url):
        if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise BadRequest("notification URLs are https (http only to loopback, for tests)")
    return {
        "changeType": ",".join(sorted(request.change_types)),
        "notificationUrl": request.notification_url,
        "lifecycleNotificationUrl": request.lifecycle_url,
        "resource": request.resource,
        "expirationDateTime": graph_instant(request.expiration),
        "clientState": request.client_state,
        "latestSupportedTlsVersion": "v1_2",
    }


def dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
