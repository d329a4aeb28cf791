"""Attachments stream from `/$value` in bounded chunks through the real adapter, never whole."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import aclosing

import httpx
import pytest

from core.graph import GraphUnavailable, NotFound
from core.graph.limits import MailboxLimiter
from tests.unit.graph_http import GraphScript, LazyBody, SleepRecorder, gateway_for, graph_error

MAILBOX = "kari@contoso.example"
MiB = 1024 * 1024


def _expected_digest(size: int, piece: int = 64 * 1024) -> str:
    digest = hashlib.sha256()
    for offset in range(0, size, piece):
        digest.update(LazyBody.pattern(offset, min(piece, size - offset)))
    return digest.hexdigest()


async def test_a_20_mb_attachment_streams_in_chunks_of_at_most_1_mib_without_being_held_whole() -> None:
    size = 20 * MiB
    script = GraphScript(
        lambda r: httpx.Response(200, stream=LazyBody(size), headers={"content-type": "application/pdf"})
    )
    gateway = gateway_for(script)
    digest = hashlib.sha256()
    sizes: list[int] = []
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        async for chunk in gateway.stream_attachment(MAILBOX, "m1", "a1", chunk_size=MiB):
            sizes.append(len(chunk))
            digest.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    await gateway.close()
    assert sum(sizes) == size
    assert max(sizes) <= MiB
    assert len(sizes) >= 20
    assert digest.hexdigest() == _expected_digest(size)
    print(f"peak traced memory while streaming 20 MiB: {peak / MiB:.2f} MiB")
    assert peak < 4 * MiB, f"peak traced memory {peak / MiB:.1f} MiB for a 20 MiB body"
    (request,) = script.requests
    assert (
        request.url.raw_path.decode()
        == "/v1.0/users/kari%40contoso.example/messages/m1/attachments/a1/$value"
    )


async def test_a_throttled_stream_is_retried_before_the_first_byte() -> None:
    answers = iter(
        [
            graph_error(429, "ApplicationThrottled", headers={"Retry-After": "3"}),
            httpx.Response(200, stream=LazyBody(100_000)),
        ]
    )
    sleep = SleepRecorder()
    gateway = gateway_for(GraphScript(lambda r: next(answers)), sleep=sleep)
    body = b"".join([c async for c in gateway.stream_attachment(MAILBOX, "m1", "a1")])
    assert len(body) == 100_000
    assert sleep.waits == [3.0]


async def test_a_missing_attachment_is_not_found() -> None:
    gateway = gateway_for(GraphScript(lambda r: graph_error(404, "ErrorItemNotFound")))
    with pytest.raises(NotFound, match="stream_attachment"):
        async for _ in gateway.stream_attachment(MAILBOX, "m1", "gone"):
            pass


async def test_closing_a_stream_early_closes_the_response_and_frees_the_slot() -> None:
    body = LazyBody(50 * MiB)
    limiter = MailboxLimiter()
    gateway = gateway_for(GraphScript(lambda r: httpx.Response(200, stream=body)), limiter=limiter)
    async with aclosing(gateway.stream_attachment(MAILBOX, "m1", "a1", chunk_size=MiB)) as stream:
        async for _ in stream:
            assert limiter.in_flight(MAILBOX) == 1
            break
    assert limiter.idle
    assert body.produced < 5 * MiB  # the rest was never read


async def _drain(stream: AsyncIterator[bytes], into: list[bytes]) -> None:
    async for chunk in stream:
        into.append(chunk)


class _Dropping(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"x" * 1000
        raise httpx.ReadError("connection reset by peer")


async def test_a_connection_dropped_mid_stream_is_graph_unavailable_and_not_retried() -> None:
    script = GraphScript(lambda r: httpx.Response(200, stream=_Dropping()))
    gateway = gateway_for(script)
    received: list[bytes] = []
    with pytest.raises(GraphUnavailable, match="dropped"):
        await _drain(gateway.stream_attachment(MAILBOX, "m1", "a1", chunk_size=500), received)
    assert b"".join(received) == b"x" * 1000
    assert len(script.requests) == 1  # bytes were handed out: the caller restarts, not us
