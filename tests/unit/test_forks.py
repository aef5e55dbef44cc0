"""The at-fork hook that cuts a service's forked child off from the worker's descriptors.

Unit tests do not fork: the hook is called directly, with the module's state put back after.
"""

import os

import pytest

from zato_daemon import forks


@pytest.fixture
def state(monkeypatch):
    monkeypatch.setitem(forks._state, 'is_child', False)
    monkeypatch.setitem(forks._state, 'sources', [])
    monkeypatch.setitem(forks._state, 'is_registered', True)  # no real at-fork hook in the test process
    return forks._state


def test_the_childs_copies_of_the_workers_descriptors_become_dev_null(state):
    read_fd, write_fd = os.pipe()
    kept_read, kept_write = os.pipe()
    try:
        forks.guard(lambda: [read_fd, write_fd, 10 ** 6])  # a closed or bogus descriptor is skipped
        assert not forks.in_forked_child()
        forks._after_fork_in_child()
        assert forks.in_forked_child()
        os.write(write_fd, b'to nowhere')  # /dev/null takes it: the pipe's reader gets nothing
        os.write(kept_write, b'x')
        assert os.read(read_fd, 10) == b''  # /dev/null reads as end of file
        assert os.read(kept_read, 10) == b'x'  # descriptors nobody named are untouched
    finally:
        for fd in (read_fd, write_fd, kept_read, kept_write):
            os.close(fd)
