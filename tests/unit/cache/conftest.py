"""Fixtures of the cache unit tests: a clock tests move by hand, shared by every registry."""

import pytest


class Clock:
    """Wall-clock seconds that only move when a test says so."""

    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds
        return self.now


@pytest.fixture
def clock():
    return Clock()
