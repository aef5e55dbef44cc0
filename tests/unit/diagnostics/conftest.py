"""What the diagnostics store tests share: a clock the tests move, and the database's path."""

import pytest

from zato_daemon.diagnostics.store import DATABASE_NAME


class Clock:
    """Seconds that only move when a test says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def db(tmp_path):
    return tmp_path / 'state' / DATABASE_NAME
