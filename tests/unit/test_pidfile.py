"""The pidfile is the one-server-per-directory lock."""

import os

import pytest

from zato_daemon.errors import AlreadyRunning
from zato_daemon.pidfile import PidFile, read_pid, running_pid


def test_second_acquire_is_refused_with_the_pid(tmp_path):
    path = tmp_path / 'x.pid'
    first = PidFile(path).acquire()
    first.write_pid(4242)
    with pytest.raises(AlreadyRunning, match='master pid 4242'):
        PidFile(path).acquire()
    assert running_pid(path) == 4242
    first.release()
    assert not path.exists()
    assert running_pid(path) is None


def test_a_stale_file_does_not_block(tmp_path):
    path = tmp_path / 'x.pid'
    path.write_text('99999999\n')
    assert running_pid(path) is None
    pidfile = PidFile(path).acquire()
    pidfile.write_pid()
    assert read_pid(path) == os.getpid()
    pidfile.release()


def test_no_pidfile_or_no_directory_means_nobody_runs(tmp_path):
    assert running_pid(tmp_path / 'x.pid') is None
    assert running_pid(tmp_path / 'no-such-dir' / 'x.pid') is None
    (tmp_path / 'file').write_text('')
    assert running_pid(tmp_path / 'file' / 'x.pid') is None
