"""Domain inputs → Graph JSON request bodies (the other direction of `parse`)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from core.graph.model import Attendee, BodyType, EventChanges, EventDraft, OutgoingMail


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


def send_mail_body(mail: OutgoingMail) -> dict[str, Any]:
    message: dict[str, Any] = {
        "subject": mail.subject,
        "body": {"contentType": mail.body_type.value, "content": mail.body},
        "toRecipients": _recipients(mail.to),
    }
    if mail.cc:
        message["ccRecipients"] = _recipients(mail.cc)
    if mail.bcc:
        message["bccRecipients"] = _recipients(mail.bcc)
    if mail.reply_to:
        message["replyTo"] = _recipients(mail.reply_to)
    if mail.attachments:
        message["attachments"] = [
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": a.name,
                "contentType": a.content_type,
                "contentBytes": base64.b64encode(a.content).decode("ascii"),
            }
            for a in mail.attachments
        ]
    return {"message": message, "saveToSentItems": mail.save_to_sent_items}


def dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
