"""Waiting for a condition in tests: poll it, never sleep a fixed time."""

import time


def wait_until(predicate, timeout, interval=0.05, message='condition'):
    """Calls `predicate` until it returns a true value, which is returned; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout} s waiting for {message}')
        time.sleep(interval)
