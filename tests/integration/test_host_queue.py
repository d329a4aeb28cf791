"""The delivery queue adapter on Azurite: what the Functions queue trigger will read."""

from __future__ import annotations

import base64
import json

import pytest
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from core.host.queues import AzureDeliveryQueue, parse_nudge

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_nudges_and_dead_letters_are_base64_text_in_queues_created_on_first_use(
    storage_connection_string: str, unique_name: str
) -> None:
    """GIVEN queues that do not exist yet WHEN a nudge, a delayed nudge and a dead letter are sent
    THEN the queues exist, messages are base64 of the JSON text (the trigger's encoding), the
    delayed one is invisible for now, and the dead letter is the envelope byte for byte."""
    service = QueueServiceClient.from_connection_string(storage_connection_string)
    queue = AzureDeliveryQueue(service, queue=f"{unique_name}-d", poison=f"{unique_name}-p")
    envelope = '{"id":"e1","type":"test.happened","tenantId":"acme","data":{"x":"æ"}}'.encode()
    async with service:
        await queue.nudge("acme")
        await queue.nudge("acme", delay=30)
        await queue.dead_letter(envelope)
        raw = QueueClient.from_connection_string(storage_connection_string, f"{unique_name}-d")
        poison = QueueClient.from_connection_string(storage_connection_string, f"{unique_name}-p")
        async with raw, poison:
            visible = [m async for m in raw.receive_messages(max_messages=32)]
            props = await raw.get_queue_properties()
            (dead,) = [m async for m in poison.receive_messages(max_messages=32)]
    assert props.approximate_message_count == 2
    (message,) = visible
    text = base64.b64decode(message.content).decode("utf-8")
    assert json.loads(text) == {"tenantId": "acme"}
    assert parse_nudge(text) == "acme"
    assert base64.b64decode(dead.content) == envelope
    # an operator replaying a dead letter onto the delivery queue nudges its tenant
    assert parse_nudge(envelope.decode()) == "acme"
