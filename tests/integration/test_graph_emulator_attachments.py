"""Event attachments through the real msgraph-sdk: a small file by POST (read back, listed, as
raw bytes from $value), the 3 MB limit of that POST, and a large file through an upload session
whose byte ranges go to the pre-authenticated URL without an Authorization header (and no session
for a file under 3 MB)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from msgraph.generated.models.attachment_item import AttachmentItem
from msgraph.generated.models.attachment_type import AttachmentType
from msgraph.generated.models.file_attachment import FileAttachment
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.item.events.item.attachments.create_upload_session.create_upload_session_post_request_body import (  # noqa: E501
    CreateUploadSessionPostRequestBody,
)

from tests.integration.graph_clients import Seed, event, get_bytes, seeded

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
async def seed(tmp_path: Path) -> AsyncIterator[Seed]:
    async with seeded(tmp_path / "graph") as s:
        yield s


async def _event_id(seed: Seed) -> str:
    created = await seed.user_client(seed.adele.id).events.post(
        event("Booked", "2024-06-03T10:00:00", "2024-06-03T11:00:00")
    )
    assert created is not None
    assert created.id
    return created.id


async def test_small_file_attachment_round_trip(seed: Seed) -> None:
    event_id = await _event_id(seed)
    item = seed.user_client(seed.adele.id).events.by_event_id(event_id)
    before = await item.get()
    data = os.urandom(50_000)
    posted = await item.attachments.post(
        FileAttachment(name="summary.pdf", content_type="application/pdf", content_bytes=data)
    )
    assert isinstance(posted, FileAttachment)
    assert posted.id
    assert posted.size == len(data)

    listed = await item.attachments.get()
    assert listed is not None
    assert [a.name for a in listed.value or []] == ["summary.pdf"]
    one = await item.attachments.by_attachment_id(posted.id).get()
    assert isinstance(one, FileAttachment)
    assert one.content_bytes == data
    raw = await get_bytes(
        seed.client,
        f"{seed.graph.graph_url}/users/{seed.adele.id}/events/{event_id}/attachments/{posted.id}/$value",
    )
    assert raw == data

    after = await item.get()
    assert before is not None
    assert after is not None
    assert after.has_attachments is True
    assert after.change_key != before.change_key


async def test_a_post_over_3_mb_is_refused(seed: Seed) -> None:
    item = seed.user_client(seed.adele.id).events.by_event_id(await _event_id(seed))
    with pytest.raises(ODataError) as too_big:
        await item.attachments.post(
            FileAttachment(name="big.bin", content_bytes=os.urandom(3 * 1024 * 1024 + 1))
        )
    assert too_big.value.response_status_code == 413


async def test_upload_session_takes_chunks_without_authorization_and_creates_the_attachment(
    seed: Seed,
) -> None:
    """GIVEN an upload session for a 5 MB file WHEN its bytes are PUT in 2 MB ranges to the
    uploadUrl THEN each partial PUT answers 200 with the next expected range, the last 201 with a
    Location; a PUT that carries an Authorization header is refused; the attachment then reads
    back byte for byte through Graph."""
    event_id = await _event_id(seed)
    item = seed.user_client(seed.adele.id).events.by_event_id(event_id)
    data = os.urandom(5 * 1024 * 1024)
    session = await item.attachments.create_upload_session.post(
        CreateUploadSessionPostRequestBody(
            attachment_item=AttachmentItem(
                attachment_type=AttachmentType.File, name="scan.tiff", size=len(data)
            )
        )
    )
    assert session is not None
    assert session.upload_url
    assert session.next_expected_ranges == ["0-"]
    assert session.expiration_date_time is not None

    chunk = 2 * 1024 * 1024
    async with httpx.AsyncClient(verify=seed.graph.tls.client_context()) as upload:
        leaked = await upload.put(
            session.upload_url,
            content=data[:chunk],
            headers={"Content-Range": f"bytes 0-{chunk - 1}/{len(data)}", "Authorization": "Bearer x"},
        )
        assert leaked.status_code == 401
        for start in range(0, len(data), chunk):
            end = min(start + chunk, len(data)) - 1
            response = await upload.put(
                session.upload_url,
                content=data[start : end + 1],
                headers={
                    "Content-Range": f"bytes {start}-{end}/{len(data)}",
                    "Content-Type": "application/octet-stream",
                },
            )
            if end + 1 < len(data):
                assert response.status_code == 200
                assert response.json()["nextExpectedRanges"] == [str(end + 1)]
            else:
                assert response.status_code == 201
                assert "/Attachments('" in response.headers["Location"]

    listed = await item.attachments.get()
    assert listed is not None
    assert [(a.name, a.size) for a in listed.value or []] == [("scan.tiff", len(data))]
    attachment_id = listed.value[0].id if listed.value else None
    raw = await get_bytes(
        seed.client,
        f"{seed.graph.graph_url}/users/{seed.adele.id}/events/{event_id}/attachments/{attachment_id}/$value",
    )
    assert raw == data
    counters = seed.graph.counters(seed.adele.id)
    assert counters.bytes_in >= len(data)
    assert counters.bytes_out >= len(data)
    assert counters.upload_sessions == 1


async def test_an_upload_session_for_a_file_under_3_mb_is_refused(seed: Seed) -> None:
    """GIVEN an event WHEN an upload session is asked for a 1 MB file THEN 400
    ErrorAttachmentSizeShouldNotBeLessThanMinimumSize (the docs' error: such a file is one POST)
    and no session is counted; exactly 3 MB, the largest POST, may also be a session."""
    item = seed.user_client(seed.adele.id).events.by_event_id(await _event_id(seed))

    def body(size: int) -> CreateUploadSessionPostRequestBody:
        return CreateUploadSessionPostRequestBody(
            attachment_item=AttachmentItem(attachment_type=AttachmentType.File, name="small.pdf", size=size)
        )

    with pytest.raises(ODataError) as small:
        await item.attachments.create_upload_session.post(body(1024 * 1024))
    assert small.value.response_status_code == 400
    assert small.value.error is not None
    assert small.value.error.code == "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"
    assert seed.graph.counters(seed.adele.id).upload_sessions == 0
    session = await item.attachments.create_upload_session.post(body(3 * 1024 * 1024))
    assert session is not None
    assert session.upload_url
    assert seed.graph.counters(seed.adele.id).upload_sessions == 1
