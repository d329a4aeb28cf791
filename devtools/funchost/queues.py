"""A queue-trigger listener with the real host's polling, retry and poison-queue behaviour.

- Poll; after a poll that finds messages, look again after 100 ms; after an empty poll, wait
  twice as long as last time, up to `maxPollingInterval` (the documented queue back-off, minus
  its jitter: one instance has nobody to desynchronise from).
- Receive up to `batchSize` messages, invisible for 10 minutes, and run them concurrently; fetch
  the next batch once the number in flight has dropped to `newBatchThreshold`. While a function
  runs, its message is kept invisible (renewed at half time) so a slow invocation is not handed
  out a second time.
- Success deletes the message. A failure makes it visible again after `visibilityTimeout`, until
  its dequeue count reaches `maxDequeueCount`: then its text is copied to `<queue>-poison` and
  it is deleted. Messages are read and copied as raw text (no SDK encode/decode policy), so the
  poison copy is byte-for-byte what was sent, as with the real host.
- A missing queue is an empty queue: the host does not create it and keeps polling. Other
  storage errors are logged and retried with the same back-off: a local emulator restarting
  must not kill the listener.

Message bodies are never logged; ids and dequeue counts are.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as FuncQueueMessage
from azure.storage.queue import QueueMessage as StorageQueueMessage
from azure.storage.queue.aio import QueueClient

from devtools.funchost.indexing import IndexedFunction
from devtools.funchost.invoker import Invoker
from devtools.funchost.settings import FunctionHostError, QueuesConfig

log = logging.getLogger("devtools.funchost.queues")

MIN_POLLING_INTERVAL = 0.1  # seconds; the real host's minimum
RECEIVE_VISIBILITY_TIMEOUT = 600  # seconds a received message stays invisible (real host: 10 min)
_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]$")


def validate_queue_name(name: str, *, what: str) -> str:
    """Lower-case and check a queue name as the host does (3-63 of a-z, 0-9, single hyphens)."""
    normalized = name.strip().lower()
    if not _QUEUE_NAME.match(normalized):
        raise FunctionHostError(
            f"{what}: '{name}' is not a valid queue name (3-63 lowercase letters, digits and single hyphens)"
        )
    return normalized


def next_poll_delay(previous: float, *, found: bool, maximum: float) -> float:
    """How long to wait before the next poll.

    After messages: the minimum, to drain a busy queue quickly. After an empty poll: double the
    previous wait, capped at `maximum`, so an idle queue costs few storage transactions.
    """
    if found:
        return min(MIN_POLLING_INTERVAL, maximum)
    return min(max(previous, MIN_POLLING_INTERVAL) * 2, maximum)


class MessageDecodeError(ValueError):
    """The message text is not what host.json's messageEncoding says; counts as a failed attempt."""


def decode_body(content: str | None, encoding: str) -> bytes:
    """The message body the function sees; raises MessageDecodeError for invalid base64."""
    text = content or ""
    if encoding == "none":
        return text.encode("utf-8")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as err:
        raise MessageDecodeError(
            "the message is not valid base64 (host.json messageEncoding is 'base64')"
        ) from err


def make_trigger_message(
    message: StorageQueueMessage, body: bytes, *, pop_receipt: str | None = None
) -> FuncQueueMessage:
    """The `func.QueueMessage` for a received storage message."""
    # azure-functions leaves QueueMessage.__init__ unannotated
    return FuncQueueMessage(  # type: ignore[no-untyped-call]
        id=message.id,
        body=body,
        dequeue_count=message.dequeue_count,
        expiration_time=message.expires_on,
        insertion_time=message.inserted_on,
        time_next_visible=message.next_visible_on,
        pop_receipt=pop_receipt or message.pop_receipt,
    )


def admin_message(text: str) -> FuncQueueMessage:
    """The message an admin-API invocation passes: the input as body, never stored in a queue."""
    now = datetime.now(UTC)
    # azure-functions leaves QueueMessage.__init__ unannotated
    return FuncQueueMessage(  # type: ignore[no-untyped-call]
        id=str(uuid.uuid4()),
        body=text.encode("utf-8"),
        dequeue_count=1,
        expiration_time=now + timedelta(days=7),
        insertion_time=now,
        time_next_visible=now,
        pop_receipt=None,
    )


class QueueListener:
    """Feeds one queue-triggered function. `start()`, later `stop_polling()`, drain, `close()`."""

    def __init__(
        self,
        function: IndexedFunction,
        queue_name: str,
        connection_string: str,
        config: QueuesConfig,
        invoker: Invoker,
        *,
        receive_visibility_timeout: int = RECEIVE_VISIBILITY_TIMEOUT,
        client_factory: Callable[[str, str], QueueClient] | None = None,
    ) -> None:
        self.function = function
        self.queue_name = queue_name
        self.poison_queue_name = f"{queue_name}-poison"
        self._config = config
        self._invoker = invoker
        self._receive_visibility = receive_visibility_timeout
        factory = client_factory or (lambda conn, name: QueueClient.from_connection_string(conn, name))
        self._client = factory(connection_string, queue_name)
        self._poison = factory(connection_string, self.poison_queue_name)
        self._task: asyncio.Task[None] | None = None
        self._messages: set[asyncio.Task[None]] = set()
        self._missing_logged = False

    @property
    def message_tasks(self) -> set[asyncio.Task[None]]:
        """Messages being handled (invocation plus delete/retry/poison), for the shutdown drain."""
        return set(self._messages)

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll_loop(), name=f"funchost-queue-{self.queue_name}")

    def stop_polling(self) -> None:
        """Fetch no more messages; those already received are finished by their own tasks."""
        if self._task is not None:
            self._task.cancel()

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        for task in self._messages:
            task.cancel()
        await asyncio.gather(*self._messages, return_exceptions=True)
        await self._client.close()
        await self._poison.close()

    async def _poll_loop(self) -> None:
        delay = MIN_POLLING_INTERVAL
        threshold = self._config.new_batch_threshold
        while True:
            if len(self._messages) > threshold:
                # enough work in flight: wait for some of it rather than polling
                await asyncio.wait(self._messages, return_when=asyncio.FIRST_COMPLETED)
                continue
            messages = await self._receive()
            for message in messages:
                task = asyncio.create_task(self._handle(message), name=f"funchost-message-{message.id}")
                self._messages.add(task)
                task.add_done_callback(self._messages.discard)
            delay = next_poll_delay(delay, found=bool(messages), maximum=self._config.max_polling_interval)
            await asyncio.sleep(delay)

    async def _receive(self) -> list[StorageQueueMessage]:
        try:
            pager = self._client.receive_messages(
                messages_per_page=self._config.batch_size,
                max_messages=self._config.batch_size,
                visibility_timeout=self._receive_visibility,
            )
            messages = [m async for m in pager]
        except ResourceNotFoundError:
            if not self._missing_logged:
                log.info("Queue '%s' does not exist (yet); polling it until it does", self.queue_name)
                self._missing_logged = True
            return []
        except (AzureError, OSError) as err:
            log.warning("Polling queue '%s' failed: %s", self.queue_name, err)
            return []
        self._missing_logged = False
        return messages

    async def _handle(self, message: StorageQueueMessage) -> None:
        max_dequeue = self._config.max_dequeue_count
        details = {"Queue": self.queue_name, "MessageId": message.id, "DequeueCount": message.dequeue_count}
        receipt = _Receipt(message.pop_receipt)
        if message.dequeue_count is not None and message.dequeue_count > max_dequeue:
            # already past the limit (e.g. the host crashed mid-run): never run it again
            log.warning(
                "Message %s on '%s' has dequeue count %d > MaxDequeueCount %d; "
                "moving it to '%s' without running",
                message.id,
                self.queue_name,
                message.dequeue_count,
                max_dequeue,
                self.poison_queue_name,
            )
            await self._move_to_poison(message, receipt.value)
            return
        try:
            body = decode_body(message.content, self._config.message_encoding)
        except MessageDecodeError as err:
            log.error("Message %s on '%s' could not be decoded: %s", message.id, self.queue_name, err)
            await self._after_failure(message, receipt.value)
            return
        done = asyncio.Event()
        keeper = asyncio.create_task(self._keep_invisible(message.id, receipt, done))
        try:
            await self._invoker.invoke(
                self.function,
                make_trigger_message(message, body),
                reason=f"New queue message detected on '{self.queue_name}'.",
                details=details,
            )
        except Exception:  # already logged with its traceback by the invoker
            succeeded = False
        else:
            succeeded = True
        finally:
            # let a renewal in progress finish so the receipt used below is the current one
            done.set()
            await keeper
        if not succeeded:
            await self._after_failure(message, receipt.value)
            return
        try:
            await self._client.delete_message(message.id, receipt.value)
        except (AzureError, OSError) as err:
            log.warning("Deleting message %s from '%s' failed: %s", message.id, self.queue_name, err)

    async def _after_failure(self, message: StorageQueueMessage, pop_receipt: str | None) -> None:
        count = message.dequeue_count or 0
        if count >= self._config.max_dequeue_count:
            await self._move_to_poison(message, pop_receipt)
            return
        try:
            await self._client.update_message(
                message.id, pop_receipt, visibility_timeout=round(self._config.visibility_timeout)
            )
        except (AzureError, OSError) as err:
            # it becomes visible anyway when the 10-minute receive timeout runs out
            log.warning("Releasing message %s on '%s' failed: %s", message.id, self.queue_name, err)

    async def _move_to_poison(self, message: StorageQueueMessage, pop_receipt: str | None) -> None:
        log.warning(
            "Message %s has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
            message.id,
            self._config.max_dequeue_count,
            self.poison_queue_name,
        )
        try:
            try:
                await self._poison.send_message(message.content or "")
            except ResourceNotFoundError:
                # another message's move may have created it meanwhile
                with contextlib.suppress(ResourceExistsError):
                    await self._poison.create_queue()
                await self._poison.send_message(message.content or "")
            await self._client.delete_message(message.id, pop_receipt)
        except (AzureError, OSError) as err:
            # left in the source queue: it comes back after the receive timeout and is moved then
            log.error("Moving message %s to '%s' failed: %s", message.id, self.poison_queue_name, err)

    async def _keep_invisible(self, message_id: str, receipt: _Receipt, done: asyncio.Event) -> None:
        """Renew the message's invisibility at half time until `done` is set."""
        interval = self._receive_visibility / 2
        while True:
            try:
                await asyncio.wait_for(done.wait(), timeout=interval)
                return
            except TimeoutError:
                pass
            try:
                updated = await self._client.update_message(
                    message_id, receipt.value, visibility_timeout=self._receive_visibility
                )
            except (AzureError, OSError) as err:
                log.warning("Renewing the visibility of message %s failed: %s", message_id, err)
                continue
            receipt.value = updated.pop_receipt


class _Receipt:
    """The message's current pop receipt; each visibility update hands out a new one."""

    def __init__(self, value: str | None) -> None:
        self.value = value
