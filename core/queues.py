"""Storage queues as the Functions queue trigger reads them: base64 text messages (the Python
SDK does not encode by default; FACTS.md), sent to a queue that is created on first use."""

from __future__ import annotations

import contextlib
import math

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient, QueueServiceClient

MAX_DELAY_SECONDS = 7 * 24 * 3600  # the longest a queue message can stay invisible


def delay_seconds(delay: float) -> int:
    """Queue visibility is whole seconds: round up, so a retry never comes early."""
    return min(MAX_DELAY_SECONDS, max(0, math.ceil(delay)))


class TextQueue:
    """One queue. Its client shares the service client's transport: closing the service
    closes it."""

    def __init__(self, service: QueueServiceClient, name: str) -> None:
        self.name = name
        self._client: QueueClient = service.get_queue_client(
            name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )

    async def send(self, text: str, *, delay: float = 0.0) -> None:
        visibility = delay_seconds(delay) or None
        try:
            await self._client.send_message(text, visibility_timeout=visibility)
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                await self._client.create_queue()
            await self._client.send_message(text, visibility_timeout=visibility)
