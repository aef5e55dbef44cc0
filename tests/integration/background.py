"""Calls made in a background thread while a test does something to the server: every one
must get its answer. Bounded in count and time."""

import threading
import time

from tests.integration.helpers import call


class CallsInBackground(threading.Thread):
    """Calls demo.echo over new connections, one after the other, until stopped, at most
    `limit` calls and `max_seconds`; `failures` holds what was not a 200 with the echo."""

    def __init__(self, port, limit=20000, max_seconds=120.0, pause=0.01):
        super().__init__(daemon=True)
        self.port = port
        self.limit = limit
        self.max_seconds = max_seconds
        self.pause = pause
        self.stop_event = threading.Event()
        self.answered = 0
        self.failures = []

    def run(self):
        deadline = time.monotonic() + self.max_seconds
        for number in range(self.limit):
            if self.stop_event.is_set() or time.monotonic() > deadline:
                return
            try:
                status, _, body = call(self.port, 'demo.echo', {'n': number})
                if (status, body) != (200, {'n': number}):
                    self.failures.append((number, status, body))
                else:
                    self.answered += 1
            except OSError as exc:
                self.failures.append((number, 'error', repr(exc)))
            self.stop_event.wait(self.pause)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop_event.set()
        self.join(30)
        assert not self.is_alive(), 'a call is still waiting for its answer'
