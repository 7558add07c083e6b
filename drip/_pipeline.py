"""The delivery worker's sender thread: sends batches while the worker encodes the next ones.

The worker hands over attempts (``Call``) in recording order, at most two at a time: the one in
flight and the next. The thread sends the next as soon as the one before it is answered — but
only if that one succeeded: after a failure every later call is skipped (``Call.wait`` returns
False), and the worker, which owns retries, sends them itself, in order. So there is never more
than one request in flight and the server applies batches in recording order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from .models import IngestResult

__all__ = ["Call", "Sender", "SenderThread"]

#: one attempt at ``POST /v1/ingest``: the body in, the parsed answer out
Sender = Callable[[bytes], IngestResult]


class Call:
    """One attempt at sending a body on the sender thread, made only if ``after`` (the call
    handed over before it, if any) succeeded."""

    __slots__ = ("after", "body", "done", "error", "send", "skipped", "value")

    def __init__(self, send: Sender, body: bytes, after: Call | None) -> None:
        self.send = send
        self.body = body
        self.after = after
        self.done = threading.Event()
        self.value: IngestResult | None = None
        self.error: BaseException | None = None
        self.skipped = False

    def failed(self) -> bool:
        """Known to have failed or been skipped (False while in flight)."""
        return self.done.is_set() and (self.skipped or self.error is not None)

    def run(self) -> None:
        try:
            if self.after is not None and (self.after.skipped or self.after.error is not None):
                self.skipped = True
            else:
                self.value = self.send(self.body)
        except BaseException as exc:  # handed to the worker, which decides
            self.error = exc
        finally:
            self.after = None
            self.done.set()

    def wait(self) -> bool:
        """Wait for the call; False when it was skipped (nothing was sent)."""
        self.done.wait()
        return not self.skipped

    def result(self) -> IngestResult:
        """The answer, or the attempt's exception raised here (after ``wait``)."""
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


class SenderThread:
    """A daemon thread that runs the calls handed to it, in order, until stopped."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="drip-delivery-sender", daemon=True)
        self._thread.start()

    def submit(self, send: Sender, body: bytes, after: Call | None) -> Call:
        call = Call(send, body, after)
        self._calls.put(call)
        return call

    def stop(self) -> None:
        """End the thread once the calls already handed over have run."""
        self._calls.put(None)

    def _run(self) -> None:
        while (call := self._calls.get()) is not None:
            call.run()
