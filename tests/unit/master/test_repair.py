"""Runtime files deleted under the master: what to recreate (case by case), and recreating it
for real in a temporary runtime directory."""

import json
import os
import socket

import pytest

from zato_daemon.master.repair import REPAIRS, RuntimeFiles, needed_repairs
from zato_daemon.paths import ServerDir
from zato_daemon.pidfile import PidFile, running_pid
from zato_daemon.sockets import bind_unix


@pytest.mark.parametrize('observed, repairs', [
    ((True, True, True, True), ()),
    ((True, False, True, True), ('pidfile',)),
    ((True, True, False, True), ('status file',)),
    ((True, True, True, False), ('admin socket',)),
    ((True, False, False, False), ('pidfile', 'status file', 'admin socket')),
    # Nothing to compare with: no pidfile held, no socket identity known.
    ((True, None, True, None), ()),
    ((True, None, False, None), ('status file',)),
    # The directory gone: everything in it is gone too, in order.
    ((False, True, True, True), REPAIRS),
    ((False, False, False, False), REPAIRS),
    ((False, None, True, None), ('runtime directory', 'status file')),
])
def test_needed_repairs(observed, repairs):
    assert needed_repairs(*observed) == repairs


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    for name in ('STATE_DIRECTORY', 'LOGS_DIRECTORY', 'RUNTIME_DIRECTORY'):
        monkeypatch.delenv(name, raising=False)
    paths = ServerDir(tmp_path)
    paths.runtime.mkdir()
    pidfile = PidFile(paths.pidfile).acquire()
    pidfile.write_pid()
    listener = bind_unix(paths.admin_socket)
    files = RuntimeFiles(pidfile, paths.admin_socket)
    yield paths, pidfile, files
    listener.close()
    if files.admin_listener is not None:
        files.admin_listener.close()
    pidfile.release()


def write_status(paths):
    paths.status_file.write_text(json.dumps({'master_proc_pid': os.getpid()}))


def test_nothing_deleted_nothing_done(runtime):
    paths, _, files = runtime
    write_status(paths)
    assert files.repair(paths, lambda: write_status(paths), now=0.0) == []


def test_a_deleted_runtime_directory_is_recreated_with_a_locked_pidfile_and_a_new_socket(runtime):
    paths, pidfile, files = runtime
    write_status(paths)
    for child in paths.runtime.iterdir():
        child.unlink()
    paths.runtime.rmdir()
    reports = files.repair(paths, lambda: write_status(paths), now=0.0)
    assert [report.split(' ')[1] for report in reports] == ['runtime', 'pidfile', 'status', 'admin']
    assert all('was deleted while the server ran; recreated it' in report for report in reports)
    # The new pidfile is locked by this process and names it: `stop` and `start` see a running server.
    assert running_pid(paths.pidfile) == os.getpid()
    assert pidfile.fd in files.private_fds()
    listener = files.take_admin_listener()
    assert listener is not None and files.take_admin_listener() is None
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(paths.admin_socket))
    listener.close()
    assert files.repair(paths, lambda: write_status(paths), now=1.0) == []


def test_a_repair_that_keeps_failing_is_reported_once_a_minute(runtime):
    paths, _, files = runtime
    for child in paths.runtime.iterdir():
        child.unlink()
    paths.runtime.rmdir()
    paths.runtime.write_text('a file where the directory must be')
    first = files.repair(paths, lambda: None, now=0.0)
    assert len(first) == 4 and all('cannot be recreated' in report for report in first)
    assert files.repair(paths, lambda: None, now=1.0) == []
    again = files.repair(paths, lambda: None, now=61.0)
    assert again and '(2 attempts since the last report)' in again[0]
