"""The mail domain on the Graph surface: mail folders, messages, attachments, move/copy,
forward, createForward, drafts and send, sendMail, message delta, plus the control API that
delivers mail and acts as a person in Outlook. The state and every write are in mail_ops.py; ids
in mail_ids.py; the model and its JSON in mail_store.py; delta in mail_delta.py.

Graph paths served, each under `/users/{id|upn}` and `/me` ({f} is `/mailFolders/{id}` or
`/mailFolders/{id}/childFolders/{id}`; folder ids may be well-known names):
  GET/POST   /mailFolders              GET {f}            GET/POST {f}/childFolders
  GET/POST   {f}/messages              GET {f}/messages/delta
  GET/POST   /messages                 POST /sendMail
  GET/PATCH/DELETE {m}                 GET {m}/$value (MIME)
  POST       {m}/move  {m}/copy  {m}/forward  {m}/createForward  {m}/send
  GET/POST   {m}/attachments           GET/DELETE {m}/attachments/{aid}
  GET        {m}/attachments/{aid}/$value     POST {m}/attachments/createUploadSession
where {m} is `/messages/{id}` or `{f}/messages/{id}`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from devtools.graph_emulator import mail_ids, mail_mime
from devtools.graph_emulator.context import (
    CALL,
    EmulatorContext,
    GraphCall,
    Permissions,
    action_parameters,
    graph_call,
    json_response,
    read_json,
)
from devtools.graph_emulator.directory import User
from devtools.graph_emulator.errors import GraphError, bad_request, not_found
from devtools.graph_emulator.mail_delta import MessageDeltaHandler
from devtools.graph_emulator.mail_ops import FileSpec, Mail
from devtools.graph_emulator.mail_query import (
    apply_filter,
    apply_orderby,
    expands_item,
    parse_expand,
    parse_orderby,
)
from devtools.graph_emulator.mail_store import (
    MAX_REQUEST_BYTES,
    MIN_UPLOAD_SESSION_BYTES,
    AttachmentRecord,
    Blob,
    BlobStore,
    MailFolder,
    MessageRecord,
    attachment_json,
    folder_json,
    message_json,
)
from devtools.graph_emulator.odata import collection, offset_page, select
from devtools.graph_emulator.routing import ControlRouter, GraphRouter, ModuleBase
from devtools.graph_emulator.uploads import UploadedFile

if TYPE_CHECKING:
    from pathlib import Path

    from devtools.graph_emulator.server import GraphEmulator

READ_FOLDERS = Permissions.of(
    "Mail.ReadBasic.All",
    "Mail.ReadBasic",
    "Mail.Read",
    "Mail.ReadWrite",
    delegated=("Mail.ReadBasic", "Mail.Read", "Mail.ReadWrite"),
)
READ = Permissions.of("Mail.Read", "Mail.ReadWrite")
WRITE = Permissions.of("Mail.ReadWrite")
SEND = Permissions.of("Mail.Send")
FOLDER_PREFIXES = ("/mailFolders/{folder}", "/mailFolders/{parent}/childFolders/{folder}")
MESSAGE_PREFIXES = ("/messages/{message}", *(f + "/messages/{message}" for f in FOLDER_PREFIXES))
STREAM_CHUNK = 256 * 1024


def mail_api(graph: GraphEmulator) -> Mail:
    """The mail module's state and Python API of a running emulator (`deliver_mail`, ...)."""
    module = graph.module("mail")
    assert isinstance(module, MailModule)
    return module.mail


async def stream_blob(request: web.Request, blob: Blob, content_type: str) -> web.StreamResponse:
    """Like odata.stream_bytes, for bytes that may be in a spool file: read and written a chunk
    at a time, so a 150 MB attachment is never whole in memory on the way out either."""
    call = request[CALL]
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": content_type,
            "request-id": call.request_id,
            "client-request-id": call.client_request_id,
        },
    )
    response.content_length = blob.size
    if call.count is not None:
        call.count(response)  # before the body: see GraphCall.count
    await response.prepare(request)
    chunks = blob.chunks(STREAM_CHUNK)
    while True:
        chunk = await asyncio.to_thread(next, chunks, b"") if blob.path is not None else next(chunks, b"")
        if not chunk:
            break
        await response.write(chunk)
    await response.write_eof()
    return response


def _too_long(request: web.Request) -> None:
    # Reported by users of the service (python-o365 issue 472: HTTP 413 on sendMail; docs issue
    # 3816: code BadRequest); not in the reference docs. Base64 makes 3 MB of attachments 4 MB.
    if (request.content_length or 0) > MAX_REQUEST_BYTES:
        raise GraphError(413, "BadRequest", "The maximum request length supported is 4MB.")


class MailModule(ModuleBase):
    name = "mail"

    def __init__(self, spool_directory: Path | None = None) -> None:
        self._mail: Mail | None = None
        self._spool = spool_directory

    @property
    def mail(self) -> Mail:
        if self._mail is None:
            raise RuntimeError("the mail module is not set up")
        return self._mail

    def setup(self, ctx: EmulatorContext) -> None:
        super().setup(ctx)
        self._mail = Mail(ctx, BlobStore(self._spool))

    def reset(self) -> None:
        self.mail.reset()

    def resolve_subscription_container(self, user: User, container_kind: str, key: str | None) -> str | None:
        """For the subscriptions module: the folder id a `mailFolders('{key}')/messages` resource
        names (well-known names resolved) - the id message changes carry as `container_id`."""
        if container_kind != "mailFolder" or key is None:
            return None
        try:
            folder = self.mail.folder(user, key)
        except GraphError as err:
            raise not_found("The mail folder was not found.") from err
        return self.mail.mailbox(user).folder_id(folder)

    # -- routes ------------------------------------------------------------------------------

    def graph_routes(self, router: GraphRouter) -> None:
        add = router.add_mailbox
        add("GET", "/mailFolders", self._list_folders, permissions=READ_FOLDERS)
        add("POST", "/mailFolders", self._create_folder, permissions=WRITE)
        delta = MessageDeltaHandler(self.ctx, self.mail, self._folder_of)
        for f in FOLDER_PREFIXES:
            add("GET", f, self._get_folder, permissions=READ_FOLDERS)
            add("GET", f + "/childFolders", self._list_folders, permissions=READ_FOLDERS)
            add("POST", f + "/childFolders", self._create_folder, permissions=WRITE)
            # Before {f}/messages/{message}: aiohttp matches routes in the order they are added.
            add("GET", f + "/messages/delta", delta.handle, permissions=READ)
            add("GET", f + "/messages", self._list_messages, permissions=READ)
            add("POST", f + "/messages", self._create_message, permissions=WRITE)
        add("GET", "/messages", self._list_messages, permissions=READ)
        add("POST", "/messages", self._create_message, permissions=WRITE)
        add("POST", "/sendMail", self._send_mail, permissions=SEND)
        for m in MESSAGE_PREFIXES:
            add("GET", m, self._get_message, permissions=READ)
            add("PATCH", m, self._update_message, permissions=WRITE)
            add("DELETE", m, self._delete_message, permissions=WRITE)
            add("GET", m + "/$value", self._message_value, permissions=READ)
            add("POST", m + "/move", self._move, permissions=WRITE)
            add("POST", m + "/copy", self._copy, permissions=WRITE)
            add("POST", m + "/forward", self._forward, permissions=SEND)
            add("POST", m + "/createForward", self._create_forward, permissions=WRITE)
            add("POST", m + "/send", self._send_draft, permissions=SEND)
            att = m + "/attachments"
            add("POST", att + "/createUploadSession", self._create_upload_session, permissions=WRITE)
            add("GET", att, self._list_attachments, permissions=READ)
            add("POST", att, self._add_attachment, permissions=WRITE)
            add("GET", att + "/{attachment}", self._get_attachment, permissions=READ)
            add("DELETE", att + "/{attachment}", self._delete_attachment, permissions=WRITE)
            add("GET", att + "/{attachment}/$value", self._attachment_value, permissions=READ)

    def control_routes(self, router: ControlRouter) -> None:
        router.add("GET", "/users/{user}/mailFolders", self._control_folders)
        router.add("POST", "/users/{user}/mailFolders", self._control_create_folder)
        router.add("GET", "/users/{user}/mailFolders/{folder}/messages", self._control_list)
        router.add("POST", "/users/{user}/messages", self._control_deliver)
        router.add("PATCH", "/users/{user}/messages/{message}", self._control_update)
        router.add("DELETE", "/users/{user}/messages/{message}", self._control_delete)
        router.add("POST", "/users/{user}/messages/{message}/move", self._control_move)
        router.add("GET", "/mail/outbox", self._control_outbox)
        router.add("GET", "/mail/sent", self._control_sent)
        router.add("DELETE", "/mail/sent", self._control_clear_sent)

    # -- helpers -----------------------------------------------------------------------------

    def _context(self, call: GraphCall, suffix: str) -> str:
        return f"{self.ctx.graph_url}/$metadata#users('{call.user().id}')/{suffix}"

    def _folder_of(self, request: web.Request) -> MailFolder:
        """The folder the path names; with `/childFolders/` it must be the parent's child."""
        user = graph_call(request).user()
        folder = self.mail.folder(user, request.match_info["folder"])
        parent = request.match_info.get("parent")
        if parent is not None and folder.parent_key != self.mail.folder(user, parent).key:
            raise not_found()
        return folder

    def _path_folder_id(self, request: web.Request) -> str | None:
        if "folder" not in request.match_info:
            return None
        return self.mail.mailbox(graph_call(request).user()).folder_id(self._folder_of(request))

    def _message_of(self, request: web.Request) -> MessageRecord:
        folder = self._folder_of(request) if "folder" in request.match_info else None
        return self.mail.find(graph_call(request).user(), request.match_info["message"], folder)

    def _body_type(self, call: GraphCall) -> str | None:
        """`Prefer: outlook.body-content-type="text"|"html"` (Graph converts the body)."""
        for part in call.prefer.raw:
            name, _, value = part.partition("=")
            if name.strip().lower() == "outlook.body-content-type":
                wanted = value.strip().strip('"').lower()
                if wanted in ("text", "html"):
                    call.apply(f'outlook.body-content-type="{wanted}"')
                    return wanted
        return None

    def _render(
        self, call: GraphCall, record: MessageRecord, expand: tuple[str, ...] | None = None
    ) -> dict[str, Any]:
        return message_json(
            self.mail.mailbox(call.user()),
            record,
            immutable=call.prefer.immutable_ids,
            body_type=self._body_type(call),
            expand=expand,
        )

    def _message_response(self, call: GraphCall, record: MessageRecord, status: int = 200) -> web.Response:
        out = {"@odata.context": self._context(call, "messages/$entity"), **self._render(call, record)}
        return json_response(out, status)

    def _message_id(self, call: GraphCall, record: MessageRecord) -> str:
        return self.mail.mailbox(call.user()).message_id(record, call.prefer.immutable_ids)

    # -- folders -----------------------------------------------------------------------------

    async def _list_folders(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        user = call.user()
        parent = self._path_folder_id(request)
        hidden = request.query.get("includeHiddenFolders", "").lower() == "true"
        mailbox = self.mail.mailbox(user)
        items = [folder_json(mailbox, f) for f in self.mail.folders(user, parent, include_hidden=hidden)]
        items = apply_filter(items, request.query.get("$filter"))
        if request.query.get("$orderby"):
            items = apply_orderby(items, parse_orderby(request.query["$orderby"]))
        page, next_link = offset_page(request, call, self.ctx.base_url, items)
        suffix = "mailFolders" if parent is None else f"mailFolders('{parent}')/childFolders"
        return json_response(
            collection(select(page, request), context=self._context(call, suffix), next_link=next_link)
        )

    async def _create_folder(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        user = call.user()
        body = await read_json(request)
        parent = self._path_folder_id(request)
        unknown = [k for k in body if k not in ("displayName", "isHidden") and not k.startswith("@")]
        if unknown:
            raise GraphError(
                400,
                "RequestBodyRead",
                f"The property '{unknown[0]}' does not exist on type 'microsoft.graph.mailFolder'.",
            )
        folder = self.mail.create_folder(
            user, str(body.get("displayName") or ""), parent, is_hidden=body.get("isHidden") is True
        )
        out = {
            "@odata.context": self._context(call, "mailFolders/$entity"),
            **folder_json(self.mail.mailbox(user), folder),
        }
        return json_response(out, 201)

    async def _get_folder(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        folder = self._folder_of(request)
        out = {
            "@odata.context": self._context(call, "mailFolders/$entity"),
            **folder_json(self.mail.mailbox(call.user()), folder),
        }
        return json_response(select([out], request)[0])

    # -- messages ----------------------------------------------------------------------------

    async def _list_messages(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        user = call.user()
        if "$search" in request.query:
            raise bad_request("The emulator does not support $search on messages.", "ErrorInvalidUrlQuery")
        records = (
            self.mail.messages(user, folder_id)
            if (folder_id := self._path_folder_id(request))
            else self.mail.all_messages(user)
        )
        expand = parse_expand(request.query.get("$expand"))
        items = [self._render(call, r) for r in records]
        items = apply_filter(items, request.query.get("$filter"))
        if request.query.get("$orderby"):
            items = apply_orderby(items, parse_orderby(request.query["$orderby"]))
        page, next_link = offset_page(request, call, self.ctx.base_url, items)
        if expand is not None:
            # Attachments rendered for the page only: contentBytes of a whole folder is costly.
            by_id = {self._message_id(call, r): r for r in records}
            page = [
                {**item, "attachments": self._render(call, by_id[item["id"]], expand)["attachments"]}
                for item in page
            ]
        page = _select(page, request, expand is not None)
        return json_response(collection(page, context=self._context(call, "messages"), next_link=next_link))

    async def _get_message(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        record = self._message_of(request)
        expand = parse_expand(request.query.get("$expand"))
        out = {
            "@odata.context": self._context(call, "messages/$entity"),
            **self._render(call, record, expand),
        }
        return json_response(_select([out], request, expand is not None)[0])

    async def _create_message(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        _too_long(request)
        body = await read_json(request)
        folder = self._path_folder_id(request)
        record = self.mail.create_message(call.user(), body, folder)
        return self._message_response(call, record, 201)

    async def _update_message(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        record = self._message_of(request)
        patch = await read_json(request)
        updated = self.mail.update_message(
            call.user(), self._message_id(call, record), patch, if_match=request.headers.get("If-Match")
        )
        return self._message_response(call, updated)

    async def _delete_message(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        record = self._message_of(request)
        self.mail.delete_message(
            call.user(), self._message_id(call, record), if_match=request.headers.get("If-Match")
        )
        return web.Response(status=204)

    async def _message_value(self, request: web.Request) -> web.StreamResponse:
        record = self._message_of(request)
        data = mail_mime.render(record)
        return await stream_blob(request, Blob(len(data), data=data), "message/rfc822")

    async def _destination(self, request: web.Request) -> str:
        """The destination folder's id: a folder id or well-known name (never a path - the
        Python API's convenience - so a Graph request cannot create folders)."""
        params = action_parameters(await read_json(request))
        destination = params.get("destinationid")
        if not isinstance(destination, str) or not destination:
            raise bad_request("The destinationId parameter is required.", "ErrorInvalidRequest")
        user = graph_call(request).user()
        return self.mail.mailbox(user).folder_id(self.mail.folder(user, destination))

    async def _move(self, request: web.Request) -> web.StreamResponse:
        """201 with the moved message: a new regular id, unless the request asked for immutable
        ids (then the same id as before)."""
        call = graph_call(request)
        record = self._message_of(request)
        destination = await self._destination(request)
        moved = self.mail.move_message(call.user(), self._message_id(call, record), destination)
        return self._message_response(call, moved, 201)

    async def _copy(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        record = self._message_of(request)
        destination = await self._destination(request)
        copied = self.mail.copy_message(call.user(), self._message_id(call, record), destination)
        return self._message_response(call, copied, 201)

    async def _forward_parameters(
        self, request: web.Request
    ) -> tuple[str | None, list[dict[str, Any]] | None, dict[str, Any] | None]:
        """(comment, toRecipients, message) of a forward or createForward request."""
        _too_long(request)
        params = action_parameters(await read_json(request))
        comment = params.get("comment")
        to = params.get("torecipients")
        message = params.get("message")
        if to is not None and not isinstance(to, list):
            raise bad_request("toRecipients must be a collection of recipients.", "RequestBodyRead")
        if message is not None and not isinstance(message, dict):
            raise bad_request("message must be a message object.", "RequestBodyRead")
        return None if comment is None else str(comment), to, message

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        record = self._message_of(request)
        comment, to, message = await self._forward_parameters(request)
        self.mail.forward(
            call.user(), self._message_id(call, record), comment=comment, to=to, message=message
        )
        return web.Response(status=202)

    async def _create_forward(self, request: web.Request) -> web.StreamResponse:
        """201 with the draft (in Drafts); `{m}/send` sends it."""
        call = graph_call(request)
        record = self._message_of(request)
        comment, to, message = await self._forward_parameters(request)
        draft = self.mail.create_forward(
            call.user(), self._message_id(call, record), comment=comment, to=to, message=message
        )
        return self._message_response(call, draft, 201)

    async def _send_draft(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        record = self._message_of(request)
        self.mail.send_draft(call.user(), self._message_id(call, record))
        return web.Response(status=202)

    async def _send_mail(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        _too_long(request)
        params = action_parameters(await read_json(request))
        message = params.get("message")
        if not isinstance(message, dict):
            raise bad_request("The message parameter is required.", "ErrorInvalidRequest")
        save = params.get("savetosentitems", True)
        if not isinstance(save, bool):
            raise bad_request("saveToSentItems must be a boolean.", "RequestBodyRead")
        self.mail.send_mail(call.user(), message, save_to_sent_items=save)
        return web.Response(status=202)

    # -- attachments -------------------------------------------------------------------------

    def _attachment_context(self, call: GraphCall, record: MessageRecord) -> str:
        return self._context(call, f"messages('{self._message_id(call, record)}')/attachments")

    async def _list_attachments(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        record = self._message_of(request)
        owner = self._message_id(call, record)
        items = [attachment_json(owner, a) for a in record.attachments]
        items = apply_filter(items, request.query.get("$filter"))
        return json_response(
            collection(select(items, request), context=self._attachment_context(call, record))
        )

    async def _add_attachment(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        record = self._message_of(request)
        body = await read_json(request)
        attachment = self.mail.add_attachment(call.user(), self._message_id(call, record), body)
        out = {
            "@odata.context": self._attachment_context(call, record) + "/$entity",
            **attachment_json(self._message_id(call, record), attachment),
        }
        return json_response(out, 201)

    def _attachment_of(self, request: web.Request) -> tuple[MessageRecord, AttachmentRecord]:
        call = graph_call(request)
        record = self._message_of(request)
        attachment = self.mail.attachment(
            call.user(), self._message_id(call, record), request.match_info["attachment"]
        )
        return record, attachment

    async def _get_attachment(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        record, attachment = self._attachment_of(request)
        expand = expands_item(request.query.get("$expand"))
        out = {
            "@odata.context": self._attachment_context(call, record) + "/$entity",
            **attachment_json(self._message_id(call, record), attachment, expand_item=expand),
        }
        return json_response(select([out], request)[0])

    async def _attachment_value(self, request: web.Request) -> web.StreamResponse:
        _, attachment = self._attachment_of(request)
        if attachment.item is not None:
            data = mail_mime.render(attachment.item)
            return await stream_blob(request, Blob(len(data), data=data), "message/rfc822")
        if attachment.blob is None:
            # Graph: "Attempting to get the $value of a reference attachment returns HTTP 405."
            raise GraphError(
                405, "ErrorInvalidRequest", "The $value of a reference attachment cannot be read."
            )
        return await stream_blob(
            request, attachment.blob, attachment.content_type or "application/octet-stream"
        )

    async def _delete_attachment(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        record = self._message_of(request)
        self.mail.delete_attachment(
            call.user(), self._message_id(call, record), request.match_info["attachment"]
        )
        return web.Response(status=204)

    async def _create_upload_session(self, request: web.Request) -> web.StreamResponse:
        call = graph_call(request)
        user = call.user()
        record = self._message_of(request)  # 404 before a session is made
        item = action_parameters(await read_json(request)).get("attachmentitem")
        size = item.get("size") if isinstance(item, dict) else None
        if isinstance(size, int) and 0 < size < MIN_UPLOAD_SESSION_BYTES:
            # Documented in "Attach large files to Outlook messages or events" (Errors).
            raise GraphError(
                400,
                "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                "Attachment size must be greater than the minimum size.",
            )
        message_key = record.key
        mailbox = self.mail.mailbox(user)

        def complete(upload: UploadedFile) -> str:
            message_id = mail_ids.immutable_id(mailbox.tag, message_key)
            attachment = self.mail.add_attachment(
                user,
                message_id,
                FileSpec(upload.name, upload.data, upload.content_type, upload.is_inline, upload.content_id),
                limit=False,
            )
            return (
                f"{self.ctx.base_url}/api/v2.0/Users('{user.id}@{user.tenant_id}')/Messages('{message_id}')"
                f"/Attachments('{mail_ids.attachment_id(message_id, attachment.key)}')"
            )

        session = self.ctx.uploads.create(
            user_id=user.id, item=item if isinstance(item, dict) else {}, on_complete=complete
        )
        return json_response(self.ctx.uploads.session_json(session), 201)

    # -- control API -------------------------------------------------------------------------

    def _control_message(self, user: Any, record: MessageRecord) -> dict[str, Any]:
        out = message_json(
            self.mail.mailbox(user),
            record,
            immutable=True,
            expand=("id", "name", "contentType", "size", "isInline", "contentId"),
        )
        out["folderPath"] = (
            self.mail.folder_path(user, self.mail.mailbox(user).folders[record.folder_key])
            if record.folder_key
            else None
        )
        return out

    async def _control_folders(self, request: web.Request) -> web.StreamResponse:
        user = self.mail.user(request.match_info["user"])
        mailbox = self.mail.mailbox(user)
        out = [
            {**folder_json(mailbox, f), "wellKnownName": f.well_known, "path": self.mail.folder_path(user, f)}
            for f in mailbox.folders.values()
            if f.parent_key is not None
        ]
        return json_response({"value": sorted(out, key=lambda f: str(f["path"]).casefold())})

    async def _control_create_folder(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        user = self.mail.user(request.match_info["user"])
        if body.get("path"):
            folder = self.mail.ensure_folder_path(user, str(body["path"]))
        else:
            folder = self.mail.create_folder(
                user,
                str(body.get("displayName") or ""),
                body.get("parent"),
                is_hidden=body.get("isHidden") is True,
            )
        return json_response(
            {**folder_json(self.mail.mailbox(user), folder), "path": self.mail.folder_path(user, folder)}, 201
        )

    async def _control_list(self, request: web.Request) -> web.StreamResponse:
        user = self.mail.user(request.match_info["user"])
        records = self.mail.messages(user, request.match_info["folder"])
        return json_response({"value": [self._control_message(user, r) for r in records]})

    async def _control_deliver(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        user = self.mail.user(request.match_info["user"])
        folder = str(body.pop("folder", None) or "inbox")
        record = self.mail.deliver_json(user, folder, body)
        return json_response(self._control_message(user, record), 201)

    async def _control_update(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        user = self.mail.user(request.match_info["user"])
        record = self.mail.update_message(user, request.match_info["message"], body)
        return json_response(self._control_message(user, record))

    async def _control_delete(self, request: web.Request) -> web.StreamResponse:
        user = self.mail.user(request.match_info["user"])
        self.mail.delete_message(user, request.match_info["message"])
        return web.Response(status=204)

    async def _control_move(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        user = self.mail.user(request.match_info["user"])
        destination = body.get("destination") or body.get("destinationId")
        if not isinstance(destination, str) or not destination:
            raise bad_request("move takes {'destination': well-known name, folder id or path}")
        record = self.mail.move_message(user, request.match_info["message"], destination)
        return json_response(self._control_message(user, record))

    async def _control_outbox(self, request: web.Request) -> web.StreamResponse:
        entries = self.mail.outbox(request.query.get("sender"))
        return json_response({"value": [e.to_json(external_only=True) for e in entries]})

    async def _control_sent(self, request: web.Request) -> web.StreamResponse:
        entries = self.mail.sent_mail(request.query.get("sender"))
        return json_response({"value": [e.to_json() for e in entries]})

    async def _control_clear_sent(self, request: web.Request) -> web.StreamResponse:
        del request
        self.mail.sent_log.clear()
        return web.Response(status=204)


def _select(items: list[dict[str, Any]], request: web.Request, expanded: bool) -> list[dict[str, Any]]:
    """`$select`, keeping the expanded attachments (Graph returns an expanded navigation even
    when `$select` does not name it)."""
    if not expanded or not request.query.get("$select"):
        return select(items, request)
    selected = select(items, request)
    return [{**s, "attachments": i["attachments"]} for s, i in zip(selected, items, strict=True)]
