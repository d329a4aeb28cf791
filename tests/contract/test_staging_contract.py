"""One contract for the document staging port, run against the in-memory fake and against
Blob Storage in Azurite; then what only the Azure adapter promises (bounded memory, read-only
SAS, error mapping), and its managed-identity path (user-delegation SAS) against a second
Azurite with OAuth over HTTPS.

"Downloading" a URL means what the host does: a plain GET with no credential (aiohttp) for
Azure, `InMemoryDocumentStore.read` for the fake; both answer (status, body).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import random
import re
import signal
import ssl
import subprocess
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest
from azure.core.credentials import AzureSasCredential
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import UserDelegationKey
from azure.storage.blob.aio import BlobServiceClient

from core.errors import StoreError, StoreUnavailable
from core.mail.staging import (
    BLOCK_SIZE,
    MAX_URL_LIFETIME,
    AzureDocumentStore,
    DocumentStore,
    InMemoryDocumentStore,
    Staged,
)
from core.settings import AZURITE_ACCOUNT, azurite_connection_string
from devtools.azurite import Azurite
from devtools.keyvault_emulator import StaticTokenCredential
from devtools.tls import generate_tls
from tests.webhook_receiver import free_port

PDF = "application/pdf"


class SkewedClock:
    """The store's clock: real time plus `skew`, so a test can mint URLs "in the past"."""

    def __init__(self) -> None:
        self.skew = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.skew


@dataclass
class Harness:
    store: DocumentStore
    clock: SkewedClock
    # GET a URL as the host would: (status, body).
    fetch: Callable[[str], Awaitable[tuple[int, bytes]]]
    # Return once a download would happen after `instant` (Azure: real time passes).
    wait_past: Callable[[datetime], Awaitable[None]]


async def http_get(url: str, ssl_context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, ssl=ssl_context or True) as response:
        return response.status, await response.read()


@contextlib.asynccontextmanager
async def _memory(_: pytest.FixtureRequest, clock: SkewedClock) -> AsyncIterator[Harness]:
    store = InMemoryDocumentStore(clock=clock)
    ahead = [timedelta(0)]  # how far the downloader's time runs ahead of real time

    async def fetch(url: str) -> tuple[int, bytes]:
        try:
            return 200, store.read(url, datetime.now(UTC) + ahead[0])
        except PermissionError:
            return 403, b""
        except FileNotFoundError:
            return 404, b""

    async def wait_past(instant: datetime) -> None:
        ahead[0] = max(ahead[0], instant - datetime.now(UTC) + timedelta(seconds=1))

    yield Harness(store, clock, fetch, wait_past)


@contextlib.asynccontextmanager
async def _azurite(request: pytest.FixtureRequest, clock: SkewedClock) -> AsyncIterator[Harness]:
    connection_string = request.getfixturevalue("storage_connection_string")
    container = request.getfixturevalue("unique_name")
    async with BlobServiceClient.from_connection_string(connection_string) as service:
        store = AzureDocumentStore(service, container, clock=clock)

        async def wait_past(instant: datetime) -> None:
            # Azurite checks expiry against the same machine clock; a second of margin.
            delay = (instant - datetime.now(UTC)).total_seconds() + 1.0
            if delay > 0:
                await asyncio.sleep(delay)

        yield Harness(store, clock, http_get, wait_past)
        await store.close()
        with contextlib.suppress(ResourceNotFoundError):
            await service.delete_container(container)


VARIANTS = {"memory": _memory, "azurite": _azurite}


@pytest.fixture(params=["memory", pytest.param("azurite", marks=pytest.mark.integration)])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async with VARIANTS[request.param](request, SkewedClock()) as h:
        yield h


@pytest.fixture
def store(harness: Harness) -> DocumentStore:
    return harness.store


async def chunks_of(data: bytes, sizes: Sequence[int]) -> AsyncIterator[bytes]:
    """`data` cut into chunks of `sizes` (which sum to its length), yielded with a pause each,
    as a network stream would."""
    position = 0
    for size in sizes:
        await asyncio.sleep(0)
        yield data[position : position + size]
        position += size
    assert position == len(data)


def random_sizes(total: int, largest: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(min(rng.randint(0, largest), total - sum(sizes)))  # zero-length chunks too
    return sizes


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


class Boom(Exception):
    """What a failing Graph stream raises in these tests."""


async def failing_after(data: bytes, closed: list[bool] | None = None) -> AsyncIterator[bytes]:
    try:
        for start in range(0, len(data), 1024 * 1024):
            yield data[start : start + 1024 * 1024]
        raise Boom("the mail server hung up")
    finally:
        if closed is not None:
            closed.append(True)


# --- staging -------------------------------------------------------------------------------

PLANS = {
    "many-small-chunks": random_sizes(5 * 1024 * 1024 + 123, 20_000, seed=3),
    "one-chunk-over-two-blocks": [2 * BLOCK_SIZE + 7],
    "exactly-two-blocks": [BLOCK_SIZE, BLOCK_SIZE],
    "chunks-straddling-blocks": [BLOCK_SIZE - 1, 2, BLOCK_SIZE - 1],
    "no-chunks": [],
    "only-empty-chunks": [0, 0, 0],
}


@pytest.mark.parametrize("sizes", list(PLANS.values()), ids=list(PLANS))
async def test_given_chunks_when_staged_then_size_digest_and_downloaded_bytes_are_exact(
    harness: Harness, sizes: list[int]
) -> None:
    store = harness.store
    data = payload(sum(sizes))
    name = "tenant-a/2024/06/msg-1/invoice.pdf"
    staged = await store.stage(name, chunks_of(data, sizes), content_type=PDF)
    assert staged == Staged(name=name, size=len(data), sha256=sha256(data), content_type=PDF)
    assert await store.describe(name) == staged
    url, _ = await store.download_url(name, expires_in=timedelta(minutes=5))
    assert await harness.fetch(url) == (200, data)


async def test_given_a_staged_document_when_loaded_then_its_bytes_come_back_whole_within_the_limit(
    store: DocumentStore,
) -> None:
    data = payload(BLOCK_SIZE + 17)
    await store.stage("bookings/t/r-1/0", chunks_of(data, [BLOCK_SIZE, 17]), content_type=PDF)
    assert await store.load("bookings/t/r-1/0", max_bytes=len(data)) == data
    with pytest.raises(StoreError):
        await store.load("bookings/t/r-1/0", max_bytes=len(data) - 1)
    assert await store.load("bookings/t/r-1/missing", max_bytes=10) is None
    with pytest.raises(ValueError, match="name"):
        await store.load("", max_bytes=10)


async def test_given_no_document_when_described_then_none(store: DocumentStore) -> None:
    assert await store.describe("never/staged.pdf") is None  # Azure: no container yet
    await store.stage("other.pdf", chunks_of(b"x", [1]), content_type=PDF)
    assert await store.describe("never/staged.pdf") is None  # Azure: the container exists


async def test_given_a_staged_document_when_staged_again_then_the_new_version_replaces_it(
    harness: Harness,
) -> None:
    store = harness.store
    old, new = payload(BLOCK_SIZE + 10, seed=1), payload(1000, seed=2)
    await store.stage("doc", chunks_of(old, [len(old)]), content_type=PDF)
    url, _ = await store.download_url("doc", expires_in=timedelta(minutes=5))
    staged = await store.stage("doc", chunks_of(new, [500, 500]), content_type="image/png")
    assert await store.describe("doc") == staged == Staged("doc", 1000, sha256(new), "image/png")
    # The URL names the document, not a version: it now returns the new bytes.
    assert await harness.fetch(url) == (200, new)


async def test_given_a_failing_stream_when_staged_then_its_error_propagates_and_nothing_is_stored(
    harness: Harness,
) -> None:
    """GIVEN a stream that fails after more than a block was sent WHEN staged THEN the stream's
    own exception comes out, unwrapped, and no document (not even a partial one) exists."""
    store = harness.store
    closed: list[bool] = []
    with pytest.raises(Boom, match="hung up"):
        await store.stage("doc", failing_after(payload(BLOCK_SIZE + 5), closed), content_type=PDF)
    assert closed == [True]
    assert await store.describe("doc") is None
    url, _ = await store.download_url("doc", expires_in=timedelta(minutes=5))
    assert (await harness.fetch(url))[0] == 404


async def test_given_an_existing_document_when_a_restage_fails_then_the_previous_version_is_intact(
    harness: Harness,
) -> None:
    store = harness.store
    old = payload(3000)
    before = await store.stage("doc", chunks_of(old, [3000]), content_type=PDF)
    with pytest.raises(Boom):
        await store.stage("doc", failing_after(payload(2 * BLOCK_SIZE)), content_type="text/xml")
    assert await store.describe("doc") == before
    url, _ = await store.download_url("doc", expires_in=timedelta(minutes=5))
    assert await harness.fetch(url) == (200, old)
    # ...and the failed attempt's leftovers do not get in the way of the next one.
    new = payload(BLOCK_SIZE + 1, seed=9)
    after = await store.stage("doc", chunks_of(new, [1, BLOCK_SIZE]), content_type="text/xml")
    assert after == Staged("doc", len(new), sha256(new), "text/xml")
    assert await harness.fetch(url) == (200, new)


async def test_given_two_concurrent_stages_of_one_name_then_one_whole_version_wins(harness: Harness) -> None:
    """Overlapping stages of one name are a caller's mistake, but never a mixed document: in Blob
    Storage the first commit discards the other upload's blocks, and that stage fails."""
    store = harness.store
    first, second = payload(BLOCK_SIZE + 99, seed=5), payload(BLOCK_SIZE + 77, seed=6)
    sizes = [64 * 1024] * (len(first) // (64 * 1024)) + [len(first) % (64 * 1024)]
    results = await asyncio.gather(
        store.stage("doc", chunks_of(first, sizes), content_type=PDF),
        store.stage("doc", chunks_of(second, random_sizes(len(second), 100_000, seed=7)), content_type=PDF),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, Staged)]
    assert won, results
    assert all(isinstance(r, Staged | StoreError) for r in results), results
    described = await store.describe("doc")
    assert described in won
    assert described is not None
    url, _ = await store.download_url("doc", expires_in=timedelta(minutes=5))
    status, body = await harness.fetch(url)
    assert status == 200
    assert sha256(body) == described.sha256
    assert sha256(body) in (sha256(first), sha256(second))


# --- download URLs -------------------------------------------------------------------------


async def test_given_a_lifetime_then_the_expiry_is_utc_in_whole_seconds_and_never_beyond_the_cap(
    store: DocumentStore,
) -> None:
    before = datetime.now(UTC)
    _, expires_at = await store.download_url("doc", expires_in=timedelta(minutes=10))
    after = datetime.now(UTC)
    assert expires_at.tzinfo == UTC
    assert expires_at.microsecond == 0
    assert (
        before + timedelta(minutes=10) - timedelta(seconds=1) <= expires_at <= after + timedelta(minutes=10)
    )
    _, capped = await store.download_url("doc", expires_in=timedelta(days=30))
    assert capped <= datetime.now(UTC) + MAX_URL_LIFETIME
    assert capped >= before + MAX_URL_LIFETIME - timedelta(seconds=1)
    for bad in (timedelta(0), timedelta(seconds=-5), timedelta(milliseconds=500)):
        with pytest.raises(ValueError, match="expires_in"):
            await store.download_url("doc", expires_in=bad)


async def test_given_a_url_whose_expiry_has_passed_then_it_is_refused_with_403(harness: Harness) -> None:
    """The store's clock runs an hour behind, so the URL it mints expired 50 minutes ago."""
    store = harness.store
    await store.stage("doc", chunks_of(b"secret", [6]), content_type=PDF)
    harness.clock.skew = -timedelta(hours=1)
    url, expires_at = await store.download_url("doc", expires_in=timedelta(minutes=10))
    assert expires_at < datetime.now(UTC)
    assert (await harness.fetch(url))[0] == 403


async def test_given_a_two_second_url_then_it_works_at_once_and_is_refused_after_it_expires(
    harness: Harness,
) -> None:
    store = harness.store
    await store.stage("doc", chunks_of(b"content", [7]), content_type=PDF)
    url, expires_at = await store.download_url("doc", expires_in=timedelta(seconds=2))
    assert await harness.fetch(url) == (200, b"content")
    await harness.wait_past(expires_at)
    assert (await harness.fetch(url))[0] == 403


async def test_given_a_url_for_one_document_then_it_opens_no_other(harness: Harness) -> None:
    store = harness.store
    await store.stage("tenant-a/doc.pdf", chunks_of(b"mine", [4]), content_type=PDF)
    await store.stage("tenant-b/doc.pdf", chunks_of(b"theirs", [6]), content_type=PDF)
    url, _ = await store.download_url("tenant-a/doc.pdf", expires_in=timedelta(minutes=5))
    forged = url.replace("tenant-a", "tenant-b")
    assert forged != url
    assert (await harness.fetch(forged))[0] == 403
    assert await harness.fetch(url) == (200, b"mine")


# --- delete --------------------------------------------------------------------------------


async def test_given_a_document_when_deleted_then_it_is_gone_and_its_url_answers_404(
    harness: Harness,
) -> None:
    store = harness.store
    await store.stage("doc", chunks_of(b"bye", [3]), content_type=PDF)
    url, _ = await store.download_url("doc", expires_in=timedelta(minutes=5))
    await store.delete("doc")
    assert await store.describe("doc") is None
    assert (await harness.fetch(url))[0] == 404
    await store.delete("doc")  # again: absent is fine
    await store.delete("never/there")


# --- names and arguments -------------------------------------------------------------------

ODD_BUT_VALID = [
    "mail/ü é/faktura #1 (kopi)?.pdf",
    "100%+real&more=yes;x=1,2'3\".pdf",
    "日本語/請求書.pdf",
    "x" * 1024,
    "a/" * 253 + "b",  # 254 segments, the service's limit
    "..hidden/a..b/...pdf",  # dots inside a segment are fine
]


@pytest.mark.parametrize("name", ODD_BUT_VALID, ids=lambda n: repr(n[:20]))
async def test_given_an_unusual_valid_name_then_it_round_trips_through_stage_describe_and_url(
    harness: Harness, name: str
) -> None:
    store = harness.store
    staged = await store.stage(name, chunks_of(b"odd", [3]), content_type=PDF)
    assert await store.describe(name) == staged
    url, _ = await store.download_url(name, expires_in=timedelta(minutes=5))
    assert await harness.fetch(url) == (200, b"odd")
    await store.delete(name)
    assert await store.describe(name) is None


BAD_NAMES: list[Any] = [
    "",
    "/leading-slash",
    "trailing-slash/",
    "trailing-dot.",
    "a//b",
    "a/./b",
    "a/../b",
    "..",
    "../escape",
    "tab\there",
    "new\nline",
    "nul\x00",
    "del\x7f",
    "c1\x85",
    "back\\slash",
    "lone \ud800 surrogate",
    "x" * 1025,
    "a/" * 254 + "b",  # 255 segments
    42,
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n)[:24])
async def test_given_an_invalid_name_then_every_operation_raises_value_error_before_reading_anything(
    store: DocumentStore, name: Any
) -> None:
    started: list[bool] = []

    async def stream() -> AsyncIterator[bytes]:
        started.append(True)
        yield b"x"

    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.stage(name, stream(), content_type=PDF),
        lambda: store.describe(name),
        lambda: store.download_url(name, expires_in=timedelta(minutes=5)),
        lambda: store.delete(name),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="document name") as err:
            await call()
        if isinstance(name, str) and len(name) > 3:
            assert name not in str(err.value)  # names may be attachment file names: never echoed
    assert started == []


@pytest.mark.parametrize(
    ("content_type", "metadata", "match"),
    [
        ("", None, "content_type"),
        ("text/plain\r\nX-Injected: 1", None, "content_type"),
        ("tekst/ø", None, "content_type"),
        (PDF, {"sha256": "0" * 64}, "reserved"),
        (PDF, {"SHA256": "0" * 64}, "reserved"),
        (PDF, {"bad-name": "v"}, "C# identifier"),
        (PDF, {"1st": "v"}, "C# identifier"),
        (PDF, {"Tenant": "a", "tenant": "b"}, "twice"),
        (PDF, {"subject": "Fakturå"}, "printable ASCII"),
        (PDF, {"subject": " padded"}, "printable ASCII"),
        (PDF, {"subject": ""}, "printable ASCII"),
        (PDF, {f"k{i}": "v" * 1000 for i in range(9)}, "8192"),
    ],
    ids=lambda v: repr(v)[:20],
)
async def test_given_an_unstorable_content_type_or_metadata_then_value_error_and_nothing_is_read(
    store: DocumentStore, content_type: str, metadata: dict[str, str] | None, match: str
) -> None:
    started: list[bool] = []

    async def stream() -> AsyncIterator[bytes]:
        started.append(True)
        yield b"x"

    with pytest.raises(ValueError, match=match):
        await store.stage("doc", stream(), content_type=content_type, metadata=metadata)
    assert started == []
    assert await store.describe("doc") is None


async def test_given_valid_metadata_then_the_document_stages(store: DocumentStore) -> None:
    metadata = {"tenant": "t-1", "messageId": "AAMkAD=", "attachment_no": "2"}
    staged = await store.stage("doc", chunks_of(b"m", [1]), content_type=PDF, metadata=metadata)
    assert staged.size == 1


# --- Azure only: what the fake cannot show -------------------------------------------------


@pytest.fixture
async def azure(storage_connection_string: str, unique_name: str) -> AsyncIterator[AzureDocumentStore]:
    async with BlobServiceClient.from_connection_string(storage_connection_string) as service:
        yield AzureDocumentStore(service, unique_name)
        with contextlib.suppress(ResourceNotFoundError):
            await service.delete_container(unique_name)


@pytest.mark.integration
async def test_given_20_mb_streamed_in_small_chunks_then_peak_memory_stays_far_below_the_size(
    azure: AzureDocumentStore,
) -> None:
    """The whole document never exists in this process: not in the test (a generator makes
    it), not in the adapter. tracemalloc counts every Python allocation from start to end."""
    await azure.stage("warm-up", chunks_of(b"w", [1]), content_type=PDF)  # container, connection
    total, chunk = 20 * 1024 * 1024, 64 * 1024
    expected = hashlib.sha256()

    async def twenty_megabytes() -> AsyncIterator[bytes]:
        rng = random.Random(20)
        for _ in range(total // chunk):
            piece = rng.randbytes(chunk)
            expected.update(piece)
            yield piece

    tracemalloc.start()
    try:
        staged = await azure.stage("big.pdf", twenty_megabytes(), content_type=PDF)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert staged.size == total
    assert staged.sha256 == expected.hexdigest()
    assert await azure.describe("big.pdf") == staged
    assert peak < 12 * 1000 * 1000, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.integration
async def test_given_a_download_url_then_it_only_reads(azure: AzureDocumentStore) -> None:
    await azure.stage("doc", chunks_of(b"original", [8]), content_type=PDF)
    url, expires_at = await azure.download_url("doc", expires_in=timedelta(minutes=5))
    query = parse_qs(urlsplit(url).query)
    assert query["sp"] == ["r"]
    assert query["sr"] == ["b"]  # this blob, not the container
    assert query["spr"] == ["https,http"]  # Azurite speaks http; an https endpoint gets "https"
    assert query["se"] == [expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")]
    container_listing = url.replace("/doc?", "?restype=container&comp=list&")
    async with aiohttp.ClientSession() as session:
        attempts = [
            session.put(url, data=b"replaced", headers={"x-ms-blob-type": "BlockBlob"}),
            session.delete(url),
            session.get(container_listing),
        ]
        statuses = []
        for attempt in attempts:
            async with attempt as response:
                statuses.append(response.status)
    assert statuses == [403, 403, 403]
    assert await http_get(url) == (200, b"original")


@pytest.mark.integration
async def test_given_metadata_then_it_is_stored_on_the_blob_beside_the_digest_in_a_private_container(
    storage_connection_string: str, unique_name: str, azure: AzureDocumentStore
) -> None:
    staged = await azure.stage("doc", chunks_of(b"m", [1]), content_type=PDF, metadata={"tenant": "t-1"})
    async with BlobServiceClient.from_connection_string(storage_connection_string) as service:
        container = service.get_container_client(unique_name)
        assert (await container.get_container_properties()).public_access is None
        properties = await container.get_blob_client("doc").get_blob_properties()
    assert properties.metadata == {"tenant": "t-1", "sha256": staged.sha256}
    assert properties.content_settings.content_type == PDF


@pytest.mark.integration
async def test_given_a_blob_not_written_by_stage_then_describe_says_so(
    storage_connection_string: str, unique_name: str, azure: AzureDocumentStore
) -> None:
    await azure.stage("doc", chunks_of(b"m", [1]), content_type=PDF)  # creates the container
    async with BlobServiceClient.from_connection_string(storage_connection_string) as service:
        await service.get_blob_client(unique_name, "foreign").upload_blob(b"no digest")
    with pytest.raises(StoreError, match="sha256"):
        await azure.describe("foreign")


async def test_given_unreachable_storage_then_every_operation_raises_store_unavailable() -> None:
    dead = azurite_connection_string(ports={"Blob": free_port()})
    async with BlobServiceClient.from_connection_string(dead, retry_total=0) as service:
        store = AzureDocumentStore(service)
        with pytest.raises(StoreUnavailable, match="could not be reached"):
            await store.stage("doc", chunks_of(b"x", [1]), content_type=PDF)
        with pytest.raises(StoreUnavailable):
            await store.describe("doc")
        with pytest.raises(StoreUnavailable):
            await store.delete("doc")


@pytest.mark.integration
async def test_given_the_container_vanishes_mid_stage_then_store_error_the_stream_is_closed_and_it_comes_back(
    storage_connection_string: str, unique_name: str, azure: AzureDocumentStore
) -> None:
    """GIVEN an upload whose container an operator deletes after its first block WHEN the next
    block fails THEN StoreError, the caller's stream is closed (not left holding a Graph
    connection), and the next stage creates the container again."""
    await azure.stage("first", chunks_of(b"x", [1]), content_type=PDF)
    closed: list[bool] = []

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield payload(BLOCK_SIZE)  # a full block: sent at once
            async with BlobServiceClient.from_connection_string(storage_connection_string) as other:
                await other.delete_container(unique_name)
            yield payload(BLOCK_SIZE)
            yield b"never read"
        finally:
            closed.append(True)

    with pytest.raises(StoreError, match="container does not exist"):
        await azure.stage("doc", stream(), content_type=PDF)
    assert closed == [True]
    staged = await azure.stage("doc", chunks_of(b"again", [5]), content_type=PDF)
    assert await azure.describe("doc") == staged


async def test_given_a_client_that_cannot_sign_urls_then_the_store_refuses_it() -> None:
    url = f"https://{AZURITE_ACCOUNT}.blob.core.windows.net"
    async with BlobServiceClient(url, credential=AzureSasCredential("sv=2024-01-01&sig=x")) as service:
        with pytest.raises(ValueError, match="account key or a token credential"):
            AzureDocumentStore(service)
    async with BlobServiceClient(url) as anonymous:
        with pytest.raises(ValueError, match="account key or a token credential"):
            AzureDocumentStore(anonymous)


# --- Azure with a managed identity: user-delegation SAS --------------------------------------
#
# Azurite grants user delegation keys only to bearer tokens, and accepts bearer tokens only over
# HTTPS with `--oauth basic`; it checks a token's issuer, audience and lifetime, not its
# signature. So: a second, blob-only Azurite with the stack's throwaway TLS, and an unsigned JWT
# standing in for the managed identity's token.

_TENANT = "8a3f2c1e-5b7d-4e9a-9c0b-1d2e3f4a5b6c"
_OBJECT = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def _fake_identity_token() -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "aud": "https://storage.azure.com",
        "iss": f"https://sts.windows.net/{_TENANT}/",
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 3600,
        "oid": _OBJECT,
        "tid": _TENANT,
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.unsigned"


@dataclass(frozen=True)
class OAuthAzurite:
    account_url: str
    ca_cert: Path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))


_LISTENS = re.compile(
    r"Blob service (?:successfully listens on|is successfully listening at) https://[^:]+:(\d+)"
)


@pytest.fixture(scope="module")
def oauth_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthAzurite]:
    work = tmp_path_factory.mktemp("azurite-oauth")
    tls = generate_tls(work / "tls")
    binary = Azurite.binary().with_name("azurite-blob")
    process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        [
            str(binary),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--loose",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "0",
            "--oauth",
            "basic",
            "--cert",
            str(tls.server_cert),
            "--key",
            str(tls.server_key),
        ],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            match = _LISTENS.search(line)
            port = int(match.group(1)) if match else None
        assert port is not None, "Azurite (blob, OAuth) did not start"
        yield OAuthAzurite(f"https://127.0.0.1:{port}/{AZURITE_ACCOUNT}", tls.ca_cert)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


@dataclass
class Delegated:
    store: AzureDocumentStore
    clock: SkewedClock
    keys: list[UserDelegationKey]  # every key the store fetched
    azurite: OAuthAzurite


@pytest.fixture
async def delegated(
    oauth_azurite: OAuthAzurite, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Delegated]:
    credential = StaticTokenCredential(_fake_identity_token())
    async with BlobServiceClient(
        oauth_azurite.account_url, credential=credential, connection_verify=str(oauth_azurite.ca_cert)
    ) as service:
        keys: list[UserDelegationKey] = []
        fetch_key = service.get_user_delegation_key

        async def counting(*args: Any, **kwargs: Any) -> UserDelegationKey:
            key = await fetch_key(*args, **kwargs)
            keys.append(key)
            return key

        monkeypatch.setattr(service, "get_user_delegation_key", counting)
        clock = SkewedClock()
        yield Delegated(AzureDocumentStore(service, unique_name, clock=clock), clock, keys, oauth_azurite)


def signed_as_azurite_expects(url: str, key: UserDelegationKey) -> str:
    """`url` re-signed in the string-to-sign format of service version 2025-07-05.

    azure-storage-blob 12.31 signs user-delegation SAS for version 2026-10-06, whose
    string-to-sign has two more fields (signed request headers and query parameters) than
    Azurite 3.35, which implements service version 2025-11-05, knows; so Azurite refuses every
    user-delegation URL the SDK makes. Every other field is taken from the URL as the adapter
    built it, and the key must be the one the service granted (its value is derived from the
    oid, tid, start and expiry in the URL), so a wrong field still fails."""
    parts = urlsplit(url)
    q = dict(parse_qsl(parts.query, keep_blank_values=True))
    account, container, blob = unquote(parts.path).lstrip("/").split("/", 2)
    fields = [
        q.get("sp", ""),
        q.get("st", ""),
        q["se"],
        f"/blob/{account}/{container}/{blob}",
        q["skoid"],
        q["sktid"],
        q["skt"],
        q["ske"],
        q["sks"],
        q["skv"],
        *[""] * 5,  # authorized/unauthorized oid, correlation id, delegated user tid and oid
        q.get("sip", ""),
        q.get("spr", ""),
        q["sv"],
        q["sr"],
        "",  # snapshot time
        q.get("ses", ""),
        *[""] * 5,  # response header overrides
    ]
    assert key.value is not None
    digest = hmac.new(base64.b64decode(key.value), "\n".join(fields).encode(), hashlib.sha256).digest()
    q["sig"] = base64.b64encode(digest).decode()
    return urlunsplit(parts._replace(query=urlencode(q, quote_via=quote)))


@pytest.mark.integration
async def test_given_a_managed_identity_then_urls_are_https_only_read_only_user_delegation_sas(
    delegated: Delegated,
) -> None:
    store, tls = delegated.store, delegated.azurite.ssl_context()
    data = payload(BLOCK_SIZE + 3)
    await store.stage("doc.pdf", chunks_of(data, [len(data)]), content_type=PDF)
    url, expires_at = await store.download_url("doc.pdf", expires_in=timedelta(minutes=10))
    assert len(delegated.keys) == 1
    key = delegated.keys[0]
    query = parse_qs(urlsplit(url).query)
    assert (query["sp"], query["sr"], query["spr"]) == (["r"], ["b"], ["https"])
    assert (query["skoid"], query["sktid"]) == ([_OBJECT], [_TENANT])
    assert query["ske"] == [key.signed_expiry]
    assert datetime.fromisoformat(query["se"][0]) == expires_at

    status, _ = await http_get(url, tls)
    assert status == 403, "Azurite now verifies the SDK's user-delegation SAS: drop the re-signing below"
    assert await http_get(signed_as_azurite_expects(url, key), tls) == (200, data)

    delegated.clock.skew = -timedelta(hours=1)
    expired, _ = await store.download_url("doc.pdf", expires_in=timedelta(minutes=10))
    assert (await http_get(signed_as_azurite_expects(expired, delegated.keys[-1]), tls))[0] == 403


@pytest.mark.integration
async def test_given_a_delegation_key_then_it_is_reused_until_a_url_would_outlive_it(
    delegated: Delegated,
) -> None:
    store, keys, clock = delegated.store, delegated.keys, delegated.clock
    for _ in range(3):
        await store.download_url("doc", expires_in=timedelta(minutes=10))
    assert len(keys) == 1
    # Nearly a key's lifetime later, a short URL still fits inside it...
    clock.skew = MAX_URL_LIFETIME - timedelta(hours=1)
    await store.download_url("doc", expires_in=timedelta(minutes=10))
    assert len(keys) == 1
    # ...a longer one does not: a fresh key, with which it is signed.
    url, expires_at = await store.download_url("doc", expires_in=timedelta(hours=2))
    assert len(keys) == 2
    assert parse_qs(urlsplit(url).query)["ske"] == [keys[1].signed_expiry]
    assert datetime.fromisoformat(keys[1].signed_expiry or "") >= expires_at
    # A month is more than any key lasts: the URL is capped, and still inside its key.
    url, capped = await store.download_url("doc", expires_in=timedelta(days=30))
    assert capped <= clock() + MAX_URL_LIFETIME
    assert datetime.fromisoformat(parse_qs(urlsplit(url).query)["ske"][0]) >= capped
