"""Upload sessions for large attachments (events now, messages later), per the Graph docs
"Attach large files to Outlook messages or events":

- the Graph endpoint (`.../attachments/createUploadSession`) calls `UploadSessions.create` and
  answers 201 with `session_json(...)`: `uploadUrl`, `expirationDateTime`, `nextExpectedRanges`;
- the client PUTs byte ranges to the pre-authenticated `uploadUrl` with `Content-Range: bytes
  a-b/total` and *no* Authorization header (a request that sends one is refused: the docs say not
  to, and a client that leaks its Graph token to the upload host is a bug worth catching);
- each partial PUT answers 200 with the next expected range; the last one runs the owner's
  completion callback (which stores the attachment) and answers 201 with a `Location` header and
  an empty body. `DELETE uploadUrl` cancels the session.

Ranges must arrive in order. Upload requests count against the mailbox's counters but bypass
throttling and fault injection (in the real service they go to outlook.office.com).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devtools.graph_emulator.context import EmulatorContext, graph_call, json_response
from devtools.graph_emulator.errors import GraphError, bad_request
from devtools.graph_emulator.routing import GraphRouter
from devtools.graph_emulator.timezones import format_instant

_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
MAX_UPLOAD_BYTES = 150 * 1024 * 1024


@dataclass
class UploadedFile:
    name: str
    size: int
    content_type: str
    data: bytes
    is_inline: bool
    content_id: str | None


@dataclass
class UploadSession:
    id: str
    token: str
    user_id: str
    name: str
    size: int
    content_type: str
    is_inline: bool
    content_id: str | None
    expires: dt.datetime
    on_complete: Callable[[UploadedFile], str]  # stores the file, returns its Location URL
    received: bytearray = field(default_factory=bytearray)


class UploadSessions:
    lifetime = dt.timedelta(minutes=15)

    def __init__(self, ctx: EmulatorContext) -> None:
        self.ctx = ctx
        self.reject_authorization_header = True
        self._sessions: dict[str, UploadSession] = {}

    def routes(self, router: GraphRouter) -> None:
        router.add_raw("PUT", "/api/v2.0/AttachmentSessions/{session}", self._put)
        router.add_raw("DELETE", "/api/v2.0/AttachmentSessions/{session}", self._delete)

    def reset(self) -> None:
        self._sessions.clear()

    def create(
        self,
        *,
        user_id: str,
        item: dict[str, Any],
        on_complete: Callable[[UploadedFile], str],
    ) -> UploadSession:
        """A session for the `attachmentItem` JSON of a createUploadSession request."""
        if not isinstance(item, dict):
            raise bad_request("AttachmentItem is required.")
        if item.get("attachmentType", "file") != "file":
            raise bad_request("Only attachmentType 'file' can be uploaded in a session.")
        name, size = item.get("name"), item.get("size")
        if not isinstance(name, str) or not name:
            raise bad_request("AttachmentItem.name is required.")
        if not isinstance(size, int) or size <= 0:
            raise bad_request("AttachmentItem.size must be a positive integer.")
        if size > MAX_UPLOAD_BYTES:
            raise GraphError(
                413, "ErrorAttachmentSizeLimitExceeded", "The attachment exceeds the 150 MB limit."
            )
        session = UploadSession(
            id="AAMkAS" + secrets.token_urlsafe(24),
            token=secrets.token_urlsafe(32),
            user_id=user_id,
            name=name,
            size=size,
            content_type=str(item.get("contentType") or "application/octet-stream"),
            is_inline=bool(item.get("isInline", False)),
            content_id=item.get("contentId"),
            expires=self.ctx.clock.now() + self.lifetime,
            on_complete=on_complete,
        )
        self._sessions[session.id] = session
        self.ctx.counters.mailbox(user_id).upload_sessions += 1
        return session

    def upload_url(self, session: UploadSession) -> str:
        return f"{self.ctx.base_url}/api/v2.0/AttachmentSessions/{session.id}?authtoken={session.token}"

    def session_json(self, session: UploadSession) -> dict[str, Any]:
        return {
            "@odata.context": f"{self.ctx.graph_url}/$metadata#microsoft.graph.uploadSession",
            "uploadUrl": self.upload_url(session),
            "expirationDateTime": format_instant(session.expires),
            "nextExpectedRanges": [f"{len(session.received)}-"],
        }

    def _session(self, request: web.Request) -> UploadSession:
        if self.reject_authorization_header and "Authorization" in request.headers:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "The upload URL is pre-authenticated: do not send an Authorization header.",
            )
        session = self._sessions.get(request.match_info["session"])
        if session is None or not secrets.compare_digest(request.query.get("authtoken", ""), session.token):
            raise GraphError(404, "ErrorItemNotFound", "The upload session was not found.")
        if self.ctx.clock.now() >= session.expires:
            del self._sessions[session.id]
            raise GraphError(404, "ErrorItemNotFound", "The upload session has expired.")
        user = self.ctx.directory.any_user(session.user_id)
        call = graph_call(request)
        call.mailbox, call.mailbox_key = user, session.user_id  # counted against the mailbox
        return session

    async def _put(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        match = _RANGE.fullmatch(request.headers.get("Content-Range", "").strip())
        if match is None:
            raise bad_request("Content-Range must be 'bytes {start}-{end}/{total}'.")
        start, end, total = (int(g) for g in match.groups())
        body = await request.read()
        if total != session.size or end < start or end >= total:
            raise bad_request(
                f"The Content-Range {start}-{end}/{total} does not fit a file of {session.size} bytes."
            )
        if len(body) != end - start + 1:
            raise bad_request("The body length does not match the Content-Range.")
        if start != len(session.received):
            raise GraphError(
                416,
                "ErrorInvalidRange",
                f"Expected the range to start at byte {len(session.received)}, not {start}.",
            )
        session.received.extend(body)
        if len(session.received) < session.size:
            return json_response(
                {
                    "@odata.context": f"{self.ctx.base_url}/api/v2.0/$metadata#AttachmentSessions/$entity",
                    "expirationDateTime": format_instant(session.expires),
                    "nextExpectedRanges": [str(len(session.received))],
                }
            )
        del self._sessions[session.id]
        location = session.on_complete(
            UploadedFile(
                session.name,
                session.size,
                session.content_type,
                bytes(session.received),
                session.is_inline,
                session.content_id,
            )
        )
        return web.Response(status=201, headers={"Location": location})

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        del self._sessions[session.id]
        return web.Response(status=204)
