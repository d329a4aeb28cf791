"""Emitting events: sequence order, idempotency by event id, and the race between a slow writer
and a reader closing its sequence. In-memory tables, which interleave like the real service."""

from __future__ import annotations

import asyncio
import json

import pytest

from core.errors import StoreUnavailable
from core.host import Emission, envelope, envelope_bytes
from core.host.records import EventIdIndex, OutboxEntry, OutboxGap
from core.store import next_sequence
from core.store.sequences import OUTBOX
from tests.unit.host_world import T0, World


async def rows(world: World, tenant: str = "acme") -> list[OutboxEntry | OutboxGap]:
    return [r async for r in world.store.rows_after(tenant, 0)]


async def test_given_events_when_emitted_then_they_get_increasing_sequences_and_a_nudge_each() -> None:
    world = World()
    emitted = [await world.outbox.emit("acme", "test.happened", {"n": n}) for n in range(3)]
    assert [e.sequence for e in emitted] == [1, 2, 3]
    assert [r.payload for r in await rows(world)] == [{"n": 0}, {"n": 1}, {"n": 2}]  # type: ignore[union-attr]
    assert world.queue.nudges == [("acme", 0.0)] * 3
    # other tenants have their own sequence
    assert (await world.outbox.emit("other", "test.happened", {})).sequence == 1


async def test_the_envelope_has_exactly_the_contract_fields() -> None:
    world = World()
    event = await world.outbox.emit("acme", "appointment.upserted", {"subject": "Æ"}, occurred_at=T0)
    assert envelope(event) == {
        "id": event.event_id,
        "type": "appointment.upserted",
        "tenantId": "acme",
        "occurredAt": "2026-05-04T09:00:00.000000Z",
        "data": {"subject": "Æ"},
    }
    assert json.loads(envelope_bytes(event)) == envelope(event)


async def test_given_the_same_event_id_when_emitted_again_then_the_first_event_is_returned() -> None:
    world = World()
    first = await world.outbox.emit("acme", "mail.sent", {"try": 1}, event_id="mail-42")
    again = await world.outbox.emit("acme", "mail.sent", {"try": 2}, event_id="mail-42")
    assert (again.sequence, again.event_id, again.payload) == (first.sequence, "mail-42", {"try": 1})
    assert [r.sequence for r in await rows(world)] == [1]
    # the same id at another tenant is another event
    assert (await world.outbox.emit("other", "mail.sent", {}, event_id="mail-42")).tenant_id == "other"


async def test_given_concurrent_emits_of_one_id_then_exactly_one_event_exists() -> None:
    world = World()
    results = await asyncio.gather(
        *(world.outbox.emit("acme", "mail.sent", {"n": n}, event_id="same") for n in range(10))
    )
    events = [r for r in await rows(world) if isinstance(r, OutboxEntry)]
    assert len(events) == 1
    assert {r.sequence for r in results} == {events[0].sequence}
    # the losers' reserved sequences are closed as gaps at once, not left for readers to wait on
    assert all(isinstance(r, OutboxGap) for r in await rows(world) if r.sequence != events[0].sequence)


async def test_given_concurrent_emits_of_distinct_events_then_every_one_gets_its_own_sequence() -> None:
    world = World()
    results = await asyncio.gather(*(world.outbox.emit("acme", "test.happened", {"n": n}) for n in range(40)))
    assert sorted(r.sequence for r in results) == list(range(1, 41))


async def test_given_200_concurrent_batches_then_their_reservations_share_few_counter_writes() -> None:
    """Without grouping, 200 workers each reading and writing the one counter row lose most
    races (20 attempts each were not enough for 200 at once); grouped, a few writes serve all
    of them with consecutive, distinct ranges."""
    world = World()
    store = world.tables.counters().store
    real = store.update
    writes = 0

    async def counting(*args: object, **kwargs: object) -> object:
        nonlocal writes
        writes += 1
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    await world.outbox.emit("acme", "test.happened", {"first": True})
    store.update = counting  # type: ignore[method-assign,assignment]
    batches = [
        [Emission("test.happened", {"w": w, "n": n}, f"w{w}-{n}") for n in range(3)] for w in range(200)
    ]
    written = await asyncio.gather(*(world.outbox.emit_many("acme", batch) for batch in batches))
    sequences = [e.sequence for batch in written for e in batch]
    assert sorted(sequences) == list(range(2, 602))
    for batch in written:  # each batch's events are consecutive, in order
        assert [e.sequence for e in batch] == list(range(batch[0].sequence, batch[0].sequence + 3))
    assert writes <= 10


async def test_a_failed_grouped_reservation_fails_every_waiter_and_the_next_one_works() -> None:
    world = World()
    store = world.tables.counters().store
    real = store.update

    async def broken(*args: object, **kwargs: object) -> object:
        raise StoreUnavailable("table counters: update failed with status 503")

    await world.outbox.emit("acme", "test.happened", {"first": True})
    store.update = broken  # type: ignore[method-assign,assignment]
    results = await asyncio.gather(
        *(world.outbox.emit("acme", "test.happened", {"n": n}) for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, StoreUnavailable) for r in results)
    store.update = real  # type: ignore[method-assign]
    assert (await world.outbox.emit("acme", "test.happened", {"n": 9})).sequence == 2


async def test_given_a_reader_closed_the_reserved_sequence_when_the_writer_inserts_then_it_moves_on() -> None:
    """GIVEN a writer that reserved sequence 1 and stalled past the grace, so a reader closed 1
    WHEN the writer inserts THEN it meets the gap, reserves 2 and writes there: 1 stays a gap,
    so a reader that passed 1 has not skipped the event."""
    world = World()
    outbox = world.outbox
    reserve = outbox._reserve

    async def stalled_reserve(tenant_id: str, count: int = 1) -> int:
        sequence = await reserve(tenant_id, count)
        if sequence == 1:
            await world.store.close_gap(tenant_id, sequence, T0)
        return sequence

    outbox._reserve = stalled_reserve  # type: ignore[method-assign]
    event = await outbox.emit("acme", "test.happened", {}, event_id="slow")
    assert event.sequence == 2
    assert [type(r).__name__ for r in await rows(world)] == ["OutboxGap", "OutboxEntry"]
    index = await world.store.index.get(*EventIdIndex.key("acme", "slow"))
    assert index is not None
    assert index.sequence == 2


async def test_given_an_emit_that_died_after_its_index_row_when_retried_then_it_completes_once() -> None:
    """GIVEN a first attempt that reserved a sequence and wrote the index row, then died
    WHEN the capability retries with the same event id THEN the event is written there, once."""
    world = World()
    sequence = await next_sequence(world.tables.counters(), OUTBOX, "acme")
    await world.store.index.insert(EventIdIndex(tenant_id="acme", event_id="e-9", sequence=sequence))
    event = await world.outbox.emit("acme", "test.happened", {"ok": True}, event_id="e-9")
    assert event.sequence == sequence
    again = await world.outbox.emit("acme", "test.happened", {"ok": True}, event_id="e-9")
    assert again.sequence == sequence
    assert len(await rows(world)) == 1


async def test_given_a_write_that_failed_when_retried_with_its_id_then_one_event_lands() -> None:
    world = World()
    outbox = world.outbox
    insert = outbox._store.events.insert
    calls = 0

    async def flaky_insert(record: OutboxEntry) -> OutboxEntry:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionResetError("storage hiccup")
        return await insert(record)

    outbox._store.events.insert = flaky_insert  # type: ignore[method-assign]
    with pytest.raises(ConnectionResetError):
        await outbox.emit("acme", "test.happened", {}, event_id="retry-me")
    # the failed write's sequence was closed at once: readers do not wait on it
    assert [type(r).__name__ for r in await rows(world)] == ["OutboxGap"]
    event = await outbox.emit("acme", "test.happened", {}, event_id="retry-me")
    assert event.sequence == 2
    assert [r.sequence for r in await rows(world) if isinstance(r, OutboxEntry)] == [2]


@pytest.mark.parametrize(
    ("type_", "data", "event_id", "says"),
    [
        ("Appointment", {}, None, "dotted lower-case"),
        ("appointment.upserted", ["not", "a", "dict"], None, "JSON object"),
        ("appointment.upserted", {"when": object()}, None, "not JSON-serialisable"),
        ("appointment.upserted", {}, "", "event id"),
        ("appointment.upserted", {}, "x" * 201, "event id"),
        ("appointment.upserted", {}, "naïve", "ASCII"),
        ("appointment.upserted", {"blob": "x" * 40_000}, None, "32768"),
    ],
)
async def test_given_an_invalid_event_then_nothing_is_written_or_reserved(
    type_: str, data: object, event_id: str | None, says: str
) -> None:
    world = World()
    with pytest.raises(ValueError, match=says):
        await world.outbox.emit("acme", type_, data, event_id=event_id)  # type: ignore[arg-type]
    assert await rows(world) == []
    assert await world.store.sequence_reserved("acme") == 0


async def test_given_the_queue_is_down_when_emitting_then_the_event_is_still_appended() -> None:
    world = World()

    async def down(tenant_id: str, *, delay: float = 0.0) -> None:
        raise ConnectionRefusedError("queue down")

    world.queue.nudge = down  # type: ignore[method-assign]
    event = await world.outbox.emit("acme", "test.happened", {})
    assert [r.sequence for r in await rows(world)] == [event.sequence]


async def test_given_an_envelope_too_big_for_a_queue_message_then_its_dead_letter_omits_the_data() -> None:
    from core.host.envelope import MAX_QUEUE_BYTES, dead_letter_bytes

    world = World()
    small = await world.outbox.emit("acme", "test.happened", {"x": "y"})
    assert dead_letter_bytes(small) == envelope_bytes(small)
    big = await world.outbox.emit("acme", "test.happened", {"text": "æøå" * 10_000})
    assert len(envelope_bytes(big)) > MAX_QUEUE_BYTES
    stub = json.loads(dead_letter_bytes(big))
    assert stub == {**envelope(big), "data": {}, "dataOmitted": True, "sequence": big.sequence}


async def test_given_a_batch_then_its_events_take_consecutive_sequences_with_one_counter_write() -> None:
    world = World()
    counter_writes = 0
    real = world.tables.counters().store.update

    batch = [Emission("test.happened", {"n": n}, f"batch-{n}") for n in range(4)]
    await world.outbox.emit("acme", "test.happened", {"first": True}, event_id="before")
    table = world.tables.counters().store

    async def counting(*args: object, **kwargs: object) -> object:
        nonlocal counter_writes
        counter_writes += 1
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    table.update = counting  # type: ignore[method-assign,assignment]
    written = await world.outbox.emit_many("acme", batch)
    assert [e.sequence for e in written] == [2, 3, 4, 5]
    assert counter_writes == 1
    assert [r.payload for r in await rows(world)][1:] == [{"n": n} for n in range(4)]  # type: ignore[union-attr]
    assert world.queue.nudges == [("acme", 0.0)] * 2  # one for the single emit, one for the batch


async def test_given_a_batch_emitted_again_then_nothing_is_appended_and_no_sequence_is_left_open() -> None:
    world = World()
    first = [Emission("test.happened", {"n": n}, f"e-{n}") for n in range(3)]
    await world.outbox.emit_many("acme", first)
    # a retry of the same page, with one new event at the end
    again = await world.outbox.emit_many("acme", [*first, Emission("test.happened", {"n": 3}, "e-3")])
    assert [e.sequence for e in again] == [1, 2, 3, 7]
    stored = await rows(world)
    assert [type(r).__name__ for r in stored] == ["OutboxEntry"] * 3 + ["OutboxGap"] * 3 + ["OutboxEntry"]
    assert await world.outbox.emit_many("acme", []) == []
    with pytest.raises(ValueError, match="event type"):
        await world.outbox.emit_many("acme", [Emission("Not A Type", {}, "x")])
    assert len(await rows(world)) == 7  # the invalid batch wrote nothing
