"""Keeping in-flight SQS messages invisible while their work is still going on.

A work unit normally finishes well within the queue's visibility timeout, but a slow imagery
server or a long batch can exceed it, and then SQS hands the same message to another worker.
The heartbeat extends every held message's visibility once half the timeout has passed.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)


class VisibilityHeartbeat:
    """A daemon thread that extends the visibility of the held messages of ``queue_url`` (by
    ``timeout_s`` seconds) once half of it has passed, checking every ``check_every_s`` seconds
    (default ``timeout_s / 6``, at least 0.25 s)."""

    def __init__(self, sqs, queue_url: str, timeout_s: int, check_every_s: float | None = None):
        self.sqs = sqs
        self.queue_url = queue_url
        self.timeout_s = timeout_s
        self.check_every_s = check_every_s or max(0.25, timeout_s / 6)
        self._held: dict[str, float] = {}  # receipt handle -> when its visibility last started
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="heartbeat")

    def start(self) -> "VisibilityHeartbeat":
        """Start the thread; returns the heartbeat."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (waits up to 5 s for it); held messages are no longer extended."""
        self._stop.set()
        self._thread.join(timeout=5)

    def hold(self, receipt_handle: str) -> None:
        """Start extending the message just received with ``receipt_handle``."""
        with self._lock:
            self._held[receipt_handle] = time.monotonic()

    def release(self, receipt_handle: str, visible_in_s: int | None = None) -> None:
        """Stop extending a message. With ``visible_in_s`` the message (not deleted, so to be
        redelivered) becomes visible again after that many seconds instead of at the end of its
        current visibility timeout (up to 10 minutes)."""
        with self._lock:
            self._held.pop(receipt_handle, None)
        if visible_in_s is not None:
            try:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=visible_in_s
                )
            except Exception as exc:  # noqa: BLE001 - it then returns when its timeout ends
                log.warning("could not hand a message back to the queue early: %s", exc)

    def release_all(self, visible_in_s: int = 0) -> int:
        """Hand back every message still held (a worker stopping: what it has not finished goes
        back to the queue now, visible after ``visible_in_s``, not when its timeout ends); how
        many."""
        with self._lock:
            held = list(self._held)
        for handle in held:
            self.release(handle, visible_in_s=visible_in_s)
        return len(held)

    def extend_due(self) -> int:
        """Extend every message held for more than half the timeout; returns how many."""
        now = time.monotonic()
        with self._lock:
            due = [h for h, since in self._held.items() if now - since >= self.timeout_s / 2]
        for handle in due:
            try:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=self.timeout_s
                )
            except Exception as exc:  # noqa: BLE001 - a lost message is redelivered; log and go on
                log.warning("could not extend a message's visibility: %s", exc)
                continue
            with self._lock:
                if handle in self._held:
                    self._held[handle] = now
        return len(due)

    def _loop(self) -> None:
        while not self._stop.wait(self.check_every_s):
            self.extend_due()
