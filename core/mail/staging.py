"""Document staging: attachments streamed into Blob Storage, handed to the host as a download URL.

The mail importer reads an attachment (up to 150 MB) from Graph chunk by chunk and stages it
here; the host then fetches it with a time-limited, read-only URL that needs no credential.
`AzureDocumentStore` (Blob Storage) and `InMemoryDocumentStore` (the fake) implement the port
and pass one contract suite (tests/contract/test_staging_contract.py).

Streaming. `stage` never holds a whole document: incoming chunks fill one block buffer of at
most `BLOCK_SIZE` bytes, each full buffer goes out as an uncommitted block (Put Block), and only
after the last chunk does one Put Block List commit them, together with the content type and
the SHA-256 in the blob's metadata. Until that commit, readers see the previous version (or
nothing): a stage that fails half-way leaves no partial document, only uncommitted blocks that
the service discards at the next commit of that name, or after a week.

Names. The caller chooses blob names (`validate_name` says which ones Blob Storage and URLs can
carry unambiguously). Error messages never quote a name or a metadata value: names are often
built from attachment file names, which are mail content.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import unicodedata
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, cast
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from core.errors import StoreError, StoreUnavailable
from core.runs import Clock, utc_now

if TYPE_CHECKING:
    # azure-storage-blob costs ~150 ms to import (TARGETS P4): it loads with the first upload
    from azure.storage.blob import UserDelegationKey
    from azure.storage.blob.aio import BlobClient, BlobServiceClient

DEFAULT_CONTAINER = "staged-documents"

# 4 MiB: the most this adapter buffers per upload. Blob Storage takes blocks of up to 4000 MiB,
# but a block is held in memory until it is sent, and 4 MiB keeps a 150 MB attachment at 38
# blocks, far below the 50,000 blocks a blob may have.
BLOCK_SIZE = 4 * 1024 * 1024
MAX_BLOCKS = 50_000

MAX_NAME_LENGTH = 1024
_MAX_SEGMENTS = 254  # Blob Storage's limit on '/'-separated parts of a name
_MAX_METADATA_BYTES = 8 * 1024  # names and values together, the service's limit
_METADATA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a C# identifier, as the service requires
SHA256_METADATA = "sha256"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

# A user delegation key lives at most 7 days by the service's clock. Ours may run ahead of it,
# and the service refuses a key that ends more than 7 days after its "now", so keys (and with
# them every URL, whatever the store) end 5 minutes short of that.
_CLOCK_SKEW = timedelta(minutes=5)
MAX_URL_LIFETIME = timedelta(days=7) - _CLOCK_SKEW


@dataclass(frozen=True, slots=True)
class Staged:
    """A stored document as the store describes it."""

    name: str  # the blob name
    size: int
    sha256: str  # hex digest of the stored bytes
    content_type: str


class DocumentStore(Protocol):
    """Where imported documents wait for the host to fetch them. Every method checks its
    arguments (ValueError) before any I/O, so the fake refuses exactly what Azure would."""

    async def stage(
        self,
        name: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> Staged:
        """Stream `chunks` into document `name`, replacing any earlier version only once the last
        chunk has been stored. If `chunks` raises, nothing is committed (an earlier version stays
        as it was) and the error propagates unchanged. Memory use is bounded by one chunk plus
        one block, whatever the document's size.

        Stages of one name should not overlap: the result is always one whole version, never a
        mix, but in Blob Storage a commit discards the blocks another upload has sent so far,
        and that upload then fails with StoreError and must be staged again."""
        ...

    async def describe(self, name: str) -> Staged | None:
        """The stored document's size, SHA-256 and content type; None if there is none."""
        ...

    async def load(self, name: str, *, max_bytes: int) -> bytes | None:
        """The stored document's bytes, whole; None if there is none. For documents the caller
        keeps small (a booking's uploads): StoreError if it is larger than `max_bytes`, read
        before any of its bytes are."""
        ...

    async def download_url(self, name: str, *, expires_in: timedelta) -> tuple[str, datetime]:
        """A URL that lets anyone holding it read `name`, and nothing else, until the returned
        UTC instant: `expires_in` from now, cut to whole seconds and capped at
        `MAX_URL_LIFETIME` (just under 7 days). The URL names the document, not a version: after
        a restage it returns the new content, after a delete 404. No I/O checks that the
        document exists."""
        ...

    async def delete(self, name: str) -> None:
        """Delete the document; a missing one is not an error."""
        ...

    async def close(self) -> None:
        """Release what the store holds. Idempotent."""
        ...


# --- validation (shared by every implementation) -------------------------------------------


def validate_name(name: object) -> str:
    """Return `name` if it can be a staged document's name, else raise ValueError.

    1-1024 characters; no control characters, backslashes or lone surrogates; no leading or
    trailing '/', no trailing '.', and no empty, '.' or '..' segment. The last rules are about
    URLs: HTTP clients normalise `a/../b` to `b` and `a/./b` to `a/b`, so a download URL for
    such a name would ask for another blob than it was signed for; Blob Storage itself warns
    that names ending in '.' or '/' are trimmed by some tools. The name is never echoed."""
    if not isinstance(name, str):
        raise ValueError(f"document name must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError("document name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"document name is {len(name)} characters long; Blob Storage allows at most {MAX_NAME_LENGTH}"
        )
    for position, char in enumerate(name):
        category = unicodedata.category(char)
        if category == "Cc" or category == "Cs" or char == "\\":
            what = {"Cc": "a control character", "Cs": "a lone surrogate"}.get(category, "a backslash")
            raise ValueError(f"document name has {what} at position {position}")
    if name.startswith("/"):
        raise ValueError("document name must not start with '/'")
    if name.endswith(("/", ".")):
        raise ValueError("document name must not end with '/' or '.'")
    segments = name.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise ValueError("document name has an empty, '.' or '..' segment between slashes")
    if len(segments) > _MAX_SEGMENTS:
        raise ValueError(f"document name has {len(segments)} segments; Blob Storage allows {_MAX_SEGMENTS}")
    return name


def _printable_ascii(value: str) -> bool:
    return all(" " <= char <= "~" for char in value)


def validate_content_type(content_type: object) -> str:
    """A content type goes out as an HTTP header: non-empty printable ASCII, at most 255 chars."""
    if not isinstance(content_type, str) or not content_type.strip():
        raise ValueError("content_type must be a non-empty str")
    if len(content_type) > 255 or not _printable_ascii(content_type):
        raise ValueError("content_type must be at most 255 printable ASCII characters")
    return content_type


def validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Caller metadata as the service stores it: names are C# identifiers, unique regardless of
    case ('sha256' is ours); values are non-empty printable ASCII without surrounding spaces
    (the service would trim them); names and values together at most 8 KiB."""
    if metadata is None:
        return {}
    seen: set[str] = set()
    total = 0
    for key, value in metadata.items():
        if not isinstance(key, str) or not _METADATA_NAME.fullmatch(key):
            raise ValueError("metadata names must be C# identifiers (letters, digits, '_')")
        if key.lower() == SHA256_METADATA:
            raise ValueError(f"metadata name {SHA256_METADATA!r} is reserved for the document's digest")
        if key.lower() in seen:
            raise ValueError(f"metadata name {key!r} is given twice (names are case-insensitive)")
        seen.add(key.lower())
        if not isinstance(value, str) or not value or value != value.strip() or not _printable_ascii(value):
            raise ValueError(
                f"metadata {key!r} must be non-empty printable ASCII without leading or trailing spaces"
            )
        total += len(key) + len(value)
    if total + len(SHA256_METADATA) + 64 > _MAX_METADATA_BYTES:
        raise ValueError(f"metadata is {total} bytes; Blob Storage allows {_MAX_METADATA_BYTES} in all")
    return dict(metadata)


def url_expiry(now: datetime, expires_in: timedelta) -> datetime:
    """When a URL asked for at `now` expires: whole seconds (a SAS carries no fraction, and
    rounding down never promises more than was granted), at most `MAX_URL_LIFETIME` ahead."""
    if not isinstance(expires_in, timedelta) or expires_in < timedelta(seconds=1):
        raise ValueError("expires_in must be a timedelta of at least one second")
    return (now.astimezone(UTC) + min(expires_in, MAX_URL_LIFETIME)).replace(microsecond=0)


async def _close_iterator(iterator: AsyncIterator[bytes]) -> None:
    # Stopping early leaves the caller's generator suspended, and with it a half-read Graph
    # response holding a connection until garbage collection; close it now instead.
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


# --- Azure ---------------------------------------------------------------------------------


def _error_code(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None)  # set by the Storage SDK, absent from the base type
    return str(getattr(code, "value", code) or "")


class AzureDocumentStore:
    """Documents as block blobs in one private container of `service`.

    Download URLs are SAS tokens, read permission on one blob, HTTPS only unless the endpoint
    itself is plain HTTP (Azurite). With a shared-key client (a connection string with an
    account key, Azurite's included) they are signed with the account key. With a token
    credential (the Function App's managed identity) they are user-delegation SAS: signed with a
    user delegation key from `get_user_delegation_key` (the identity needs a role with
    `generateUserDelegationKey`, which Storage Blob Data Contributor and Owner include). A key is
    asked for with the longest lifetime the service grants (7 days; see `MAX_URL_LIFETIME`) and
    reused until a URL would outlive it, so it is renewed shortly before it expires, and a URL
    can never last longer than 7 days whatever `expires_in` asks for.

    The service client is shared (one connection pool for the process) and stays the caller's
    to close. `clock` must return aware datetimes; tests move it to mint URLs in the past.
    """

    def __init__(
        self,
        service: BlobServiceClient,
        container: str = DEFAULT_CONTAINER,
        *,
        clock: Clock = utc_now,
    ) -> None:
        credential: Any = service.credential
        self._account_key: str | None = getattr(credential, "account_key", None)
        if self._account_key is None and not hasattr(credential, "get_token"):
            # A SAS or anonymous client can neither create the container nor sign URLs.
            raise ValueError(
                "AzureDocumentStore needs a service client with an account key or a token credential"
            )
        self._service = service
        self._container = service.get_container_client(container)
        self._clock = clock
        self._https_only = service.scheme.lower() == "https"
        self._container_ready = False
        self._container_lock = asyncio.Lock()
        self._key: UserDelegationKey | None = None
        self._key_expiry: datetime | None = None
        self._key_lock = asyncio.Lock()

    @property
    def container(self) -> str:
        return self._container.container_name

    def _blob(self, name: str) -> BlobClient:
        return self._container.get_blob_client(name)

    def _fail(self, exc: AzureError, operation: str) -> NoReturn:
        """Raise the named error for an SDK failure. The message names the container, the
        operation and the status, never the blob (see the module doc) or the SDK's own text."""
        where = f"blob container {self.container}: {operation}"
        if isinstance(exc, HttpResponseError) and exc.status_code is not None:
            status = exc.status_code
            code = _error_code(exc)
            detail = f"{where} failed with status {status}" + (f" ({code})" if code else "")
            if code == "ContainerNotFound":
                # Deleted behind our back: the next stage creates it again.
                self._container_ready = False
                raise StoreError(f"{where}: the container does not exist") from exc
            if status in (401, 403):
                raise StoreError(
                    f"{detail}: access denied (the identity needs Storage Blob Data Contributor or Owner)"
                ) from exc
            if status >= 500 or status in (408, 429):
                raise StoreUnavailable(detail) from exc
            raise StoreError(detail) from exc
        if isinstance(exc, ServiceRequestError | ServiceResponseError | ClientAuthenticationError):
            # No HTTP answer at all: connection refused, reset, timed out, or no token.
            reason = type(exc).__name__
            raise StoreUnavailable(f"{where} failed: {reason}, the store could not be reached") from exc
        raise StoreError(f"{where} failed: {type(exc).__name__}") from exc

    async def _ensure_container(self) -> None:
        # Checked under the lock only: an uncontended lock costs nothing next to an upload, and
        # concurrent first stages then send one create, not one each.
        async with self._container_lock:
            if self._container_ready:
                return
            try:
                await self._container.create_container()  # no public_access: private
            except HttpResponseError as exc:
                if _error_code(exc) != "ContainerAlreadyExists":
                    self._fail(exc, "create container")
            except AzureError as exc:
                self._fail(exc, "create container")
            self._container_ready = True

    async def stage(
        self,
        name: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> Staged:
        validate_name(name)
        validate_content_type(content_type)
        stored_metadata = validate_metadata(metadata)
        await self._ensure_container()
        blob = self._blob(name)
        # Block ids are per upload, so two overlapping stages of one name never mix each other's
        # blocks: each commit lists only its own (and may make the other fail, see below).
        # They all have the same length, as the service requires of every block of a blob,
        # including a failed upload's leftovers.
        upload = uuid.uuid4().hex
        block_ids: list[str] = []
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray(BLOCK_SIZE)
        filled = 0

        async def flush() -> None:
            if len(block_ids) == MAX_BLOCKS:
                raise StoreError(f"document is larger than {MAX_BLOCKS} blocks of {BLOCK_SIZE} bytes")
            block_id = f"{upload}-{len(block_ids):05d}"  # the SDK base64-encodes it
            # The SDK sends any bytes-like body as it is; its hints say bytes, but bytes() here
            # would copy the block for nothing.
            data = cast(bytes, memoryview(buffer)[:filled])
            try:
                await blob.stage_block(block_id, data, length=filled)
            except AzureError as exc:
                self._fail(exc, "stage block")
            block_ids.append(block_id)

        iterator = aiter(chunks)
        try:
            async for chunk in iterator:
                digest.update(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                # Copy into the one buffer rather than joining chunks: a chunk bigger than a
                # block is split without ever being copied whole.
                while view:
                    take = min(BLOCK_SIZE - filled, len(view))
                    buffer[filled : filled + take] = view[:take]
                    filled += take
                    view = view[take:]
                    if filled == BLOCK_SIZE:
                        await flush()
                        filled = 0
            if filled:
                await flush()
        except BaseException:
            await _close_iterator(iterator)
            raise
        sha256 = digest.hexdigest()
        from azure.storage.blob import BlobBlock, BlockState, ContentSettings

        try:
            # An empty block list commits an empty blob, which is what no chunks means.
            await blob.commit_block_list(
                [BlobBlock(block_id, BlockState.UNCOMMITTED) for block_id in block_ids],
                content_settings=ContentSettings(content_type=content_type),
                metadata={**stored_metadata, SHA256_METADATA: sha256},
            )
        except HttpResponseError as exc:
            if _error_code(exc) == "InvalidBlockList":
                # Another stage of this name committed while we uploaded, and a commit discards
                # every uncommitted block it does not list: ours too. Theirs is whole, so the
                # document is consistent; this upload is lost and must be staged again.
                raise StoreError(
                    f"blob container {self.container}: commit blocks: a concurrent stage of the same "
                    "name committed first and discarded this upload's blocks; stage it again"
                ) from exc
            self._fail(exc, "commit blocks")
        except AzureError as exc:
            # A commit that timed out may still have landed: describe() tells, or stage again.
            self._fail(exc, "commit blocks")
        return Staged(name=name, size=size, sha256=sha256, content_type=content_type)

    async def describe(self, name: str) -> Staged | None:
        validate_name(name)
        try:
            properties = await self._blob(name).get_blob_properties()
        except HttpResponseError as exc:
            if exc.status_code == 404:  # BlobNotFound, or no container yet: nothing staged
                return None
            self._fail(exc, "describe")
        except AzureError as exc:
            self._fail(exc, "describe")
        metadata = {key.lower(): value for key, value in (properties.metadata or {}).items()}
        sha256 = metadata.get(SHA256_METADATA, "")
        if not _SHA256_HEX.fullmatch(sha256):
            # Written by something other than stage(): its digest is unknown, and reading
            # 150 MB to compute one is not what describe() is for.
            raise StoreError(f"blob container {self.container}: a blob without a sha256 digest")
        return Staged(
            name=name,
            size=int(properties.size),
            sha256=sha256,
            content_type=properties.content_settings.content_type or "",
        )

    async def load(self, name: str, *, max_bytes: int) -> bytes | None:
        validate_name(name)
        blob = self._blob(name)
        try:
            properties = await blob.get_blob_properties()
            if int(properties.size) > max_bytes:
                raise StoreError(
                    f"blob container {self.container}: the document is larger than {max_bytes} bytes"
                )
            # The ETag read with the size: a restage in between fails the read instead of
            # returning a bigger document than was checked.
            downloader = await blob.download_blob(
                etag=properties.etag, match_condition=MatchConditions.IfNotModified
            )
            return await downloader.readall()
        except HttpResponseError as exc:
            if exc.status_code == 404:
                return None
            self._fail(exc, "load")
        except AzureError as exc:
            self._fail(exc, "load")

    async def download_url(self, name: str, *, expires_in: timedelta) -> tuple[str, datetime]:
        validate_name(name)
        now = self._clock().astimezone(UTC)
        expires_at = url_expiry(now, expires_in)
        signing: dict[str, Any]
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        if self._account_key is not None:
            signing = {"account_key": self._account_key}
        else:
            signing = {"user_delegation_key": await self._delegation_key(now, expires_at)}
        sas = generate_blob_sas(
            account_name=self._service.account_name or "",
            container_name=self.container,
            blob_name=name,
            permission=BlobSasPermissions(read=True),
            expiry=expires_at,
            # No start time: the URL is valid from the moment the service receives it, so a
            # clock of ours that runs ahead cannot make a fresh URL "not yet valid".
            protocol="https" if self._https_only else "https,http",
            **signing,
        )
        return f"{self._blob(name).url}?{sas}", expires_at

    async def _delegation_key(self, now: datetime, needed_until: datetime) -> UserDelegationKey:
        """A user delegation key valid at least until `needed_until` (a SAS it signs stops
        working when the key expires), fetched once and shared until a URL would outlive it."""
        async with self._key_lock:  # concurrent callers share one fetch
            if self._key is not None and self._key_expiry is not None and self._key_expiry >= needed_until:
                return self._key
            start = now - _CLOCK_SKEW  # valid already for a service whose clock lags ours
            try:
                key = await self._service.get_user_delegation_key(start, now + MAX_URL_LIFETIME)
            except AzureError as exc:
                self._fail(exc, "get user delegation key")
            expiry = datetime.fromisoformat(key.signed_expiry) if key.signed_expiry else None
            if expiry is None or expiry < needed_until:
                raise StoreError("the user delegation key the service granted ends before the URL would")
            self._key, self._key_expiry = key, expiry.astimezone(UTC)
            return key

    async def delete(self, name: str) -> None:
        validate_name(name)
        try:
            await self._blob(name).delete_blob(delete_snapshots="include")
        except HttpResponseError as exc:
            if exc.status_code == 404:
                return
            self._fail(exc, "delete")
        except AzureError as exc:
            self._fail(exc, "delete")

    async def close(self) -> None:
        # The service client is shared and closed by its owner; only the key is ours to drop.
        self._key = self._key_expiry = None

    def __repr__(self) -> str:
        return f"AzureDocumentStore({self.container!r})"


# --- the fake ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Document:
    data: bytes
    content_type: str
    sha256: str


class InMemoryDocumentStore:
    """The fake: documents in a dict, URLs like `memory://staged-documents/<name>?expires=<iso>`.

    `read(url, now)` plays the host downloading a URL: it refuses URLs this store did not hand
    out or that have expired (PermissionError, where Azure answers 403) and documents that are
    gone (FileNotFoundError, Azure's 404). It holds whole documents in memory, as a dict must;
    the bounded-memory promise is the Azure adapter's, and the contract suite measures it there.
    """

    def __init__(self, container: str = DEFAULT_CONTAINER, *, clock: Clock = utc_now) -> None:
        self.container = container
        self._clock = clock
        self._documents: dict[str, _Document] = {}
        self._urls: dict[str, tuple[str, datetime]] = {}

    async def stage(
        self,
        name: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> Staged:
        validate_name(name)
        validate_content_type(content_type)
        validate_metadata(metadata)  # refused as Azure would; nothing here reads it back
        data = bytearray()
        iterator = aiter(chunks)
        try:
            async for chunk in iterator:
                data += chunk
        except BaseException:
            await _close_iterator(iterator)
            raise
        sha256 = hashlib.sha256(data).hexdigest()
        self._documents[name] = _Document(bytes(data), content_type, sha256)
        return Staged(name=name, size=len(data), sha256=sha256, content_type=content_type)

    async def describe(self, name: str) -> Staged | None:
        document = self._documents.get(validate_name(name))
        if document is None:
            return None
        return Staged(name, len(document.data), document.sha256, document.content_type)

    async def load(self, name: str, *, max_bytes: int) -> bytes | None:
        document = self._documents.get(validate_name(name))
        if document is None:
            return None
        if len(document.data) > max_bytes:
            raise StoreError(f"the document is larger than {max_bytes} bytes")
        return document.data

    async def download_url(self, name: str, *, expires_in: timedelta) -> tuple[str, datetime]:
        validate_name(name)
        expires_at = url_expiry(self._clock(), expires_in)
        url = f"memory://{self.container}/{quote(name, safe='/')}?expires={expires_at.isoformat()}"
        self._urls[url] = (name, expires_at)
        return url, expires_at

    def read(self, url: str, now: datetime) -> bytes:
        """The bytes a GET of `url` at `now` returns (see the class doc for the refusals)."""
        issued = self._urls.get(url)
        if issued is None:
            raise PermissionError("this store never issued that URL")
        name, expires_at = issued
        if now >= expires_at:
            raise PermissionError("the URL has expired")
        document = self._documents.get(name)
        if document is None:
            raise FileNotFoundError("the document no longer exists")
        return document.data

    async def delete(self, name: str) -> None:
        self._documents.pop(validate_name(name), None)

    async def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"InMemoryDocumentStore({len(self._documents)} documents)"
