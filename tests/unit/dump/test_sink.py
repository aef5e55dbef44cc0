"""Where a dump goes, each place on its own: real dumps of this process written by a DumpWriter
to real files; a place that fails is counted, told at most once a minute, and the others and the
report still happen. The journal entries' fields, without sending them."""

import os
import re
import shutil
import stat
import threading
import time

from tests.unit.dump.test_render import made_up_dump
from tests.unit.dump.test_trigger import start_with_threading, wait_for
from zato_daemon.config import load_config
from zato_daemon.dump import sink
from zato_daemon.dump.collect import os_thread_ident
from zato_daemon.dump.record import read_records
from zato_daemon.dump.setup import install_dump
from zato_daemon.dump.sink import DumpWriter, failure_fields, journal_fields, write_text_to_fd
from zato_daemon.logs.levels import DUMP_FAILED
from zato_daemon.paths import ServerDir


class Clock:
    """The writer's monotonic clock, moved by the test: the rate limit without waiting a minute."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Writing:
    """A DumpWriter of this process into tmp_path, with what it reported and counted."""

    def __init__(self, tmp_path, clock=time.monotonic, to_stdout=False, before_dump=None):
        self.server_log = tmp_path / 'logs' / 'server.log'
        self.server_log.parent.mkdir(exist_ok=True)
        self.records = tmp_path / 'run' / 'dumps'
        self.reports, self.failures = [], []
        self.writer = DumpWriter('worker-1', tmp_path, os_thread_ident(), self.records, server_log=self.server_log,
                                 budget_bytes=64 * 1024, to_journal=False, to_stdout=to_stdout,
                                 before_dump=before_dump, after_dump=self.reports.append,
                                 count_failure=lambda: self.failures.append(1), clock=clock)

    def dump(self):
        self.writer()
        return self.reports[-1]

    def log(self):
        return self.server_log.read_text()


def failure_lines(text, part_text):
    return [line for line in text.splitlines() if ' - worker-1 (pid ' in line and part_text in line]


def test_a_server_log_that_cannot_be_written_loses_neither_the_record_nor_the_report(tmp_path, capfd):
    writing = Writing(tmp_path, to_stdout=True)
    writing.server_log.mkdir()  # a directory in its place: every open for writing fails
    dump = writing.dump()
    assert [record['dump_id'] for record in read_records(writing.records)] == [dump.dump_id]
    assert writing.reports == [dump] and writing.failures == [1]
    out = capfd.readouterr().out
    assert f'==== end of zato-daemon dump {dump.dump_id} (worker-1, pid {os.getpid()})' in out
    line = failure_lines(out, 'to server.log')
    assert len(line) == 1 and re.fullmatch(
        rf'\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} WARNING worker-1:{os.getpid()} zato_daemon\.dump:\d+ - '
        rf'worker-1 \(pid {os.getpid()}\) could not write the dump {dump.dump_id} to server\.log: '
        rf"IsADirectoryError: \[Errno 21\] Is a directory: '{re.escape(str(writing.server_log))}'", line[0])


def test_a_record_directory_removed_with_the_runtime_directory_is_made_again(tmp_path):
    writing = Writing(tmp_path)
    first = writing.dump()
    shutil.rmtree(tmp_path / 'run')
    second = writing.dump()
    assert [record['dump_id'] for record in read_records(writing.records)] == [second.dump_id]
    assert stat.S_IMODE(writing.records.stat().st_mode) == 0o750 & ~current_umask()
    assert writing.failures == [] and writing.log().count('==== end of zato-daemon dump') == 2
    assert first.dump_id != second.dump_id


def current_umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_a_record_that_cannot_be_written_is_told_in_server_log_and_the_dump_is_there(tmp_path):
    writing = Writing(tmp_path)
    writing.records.parent.mkdir()
    writing.records.write_text('a file where the directory goes')
    dump = writing.dump()
    log = writing.log()
    assert f'==== end of zato-daemon dump {dump.dump_id}' in log
    lines = failure_lines(log, f'could not write the dump {dump.dump_id} record: ')
    assert len(lines) == 1 and 'FileExistsError' in lines[0] and writing.failures == [1]
    assert writing.reports == [dump]


def test_a_failing_place_is_counted_every_time_and_told_once_a_minute_with_the_count(tmp_path):
    clock = Clock()
    writing = Writing(tmp_path, clock=clock)
    writing.records.parent.mkdir()
    writing.records.write_text('a file where the directory goes')
    for _ in range(5):  # a dump every 10 s for 50 s: one line
        writing.dump()
        clock.now += 10
    assert len(failure_lines(writing.log(), 'record: ')) == 1
    clock.now += 11  # 61 s after the first line
    writing.dump()
    lines = failure_lines(writing.log(), 'record: ')
    assert len(lines) == 2 and lines[1].endswith(' (5 failures of this part since the last report)')
    assert len(writing.failures) == 6 and len(writing.reports) == 6
    assert writing.log().count('==== end of zato-daemon dump') == 6


def test_parts_are_limited_each_on_its_own(tmp_path):
    clock = Clock()
    writing = Writing(tmp_path, clock=clock, before_dump=lambda: 1 / 0)
    writing.records.parent.mkdir()
    writing.records.write_text('a file where the directory goes')
    writing.dump()
    writing.dump()
    log = writing.log()
    assert len(failure_lines(log, 'could not forward the dump request to the workers: ZeroDivisionError')) == 1
    assert len(failure_lines(log, 'record: ')) == 1
    assert len(writing.failures) == 4 and log.count('==== end of zato-daemon dump') == 2


def test_install_dump_gives_the_writer_the_main_thread_and_the_failure_count(tmp_path, monkeypatch):
    for name in ('STATE_DIRECTORY', 'LOGS_DIRECTORY', 'RUNTIME_DIRECTORY'):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / 'server.conf').write_text('[logging]\njournal = no\n')
    config = load_config(tmp_path)
    server_dir = ServerDir(tmp_path).resolve(config)
    server_dir.logs.mkdir()
    server_dir.server_log.mkdir()  # fails: counted through count_failure
    reports, failures = [], []
    trigger = install_dump(config, server_dir, 'worker-1', False, start_with_threading, after_dump=reports.append,
                           count_failure=lambda: failures.append(1))
    try:
        trigger.request()
        assert wait_for(lambda: reports), 'no dump'
    finally:
        assert trigger.uninstall()
    assert failures == [1]
    record, = read_records(server_dir.dump_records)
    main, = [thread for thread in record['threads'] if thread['is_main']]
    assert main['ident'] == threading.get_ident() and record['dump_id'] == reports[0].dump_id


# What render.journal_fields gave for made_up_dump(1, 1, 1) and 'TEXT\n' before entries were
# built by logs.journal.entry(): unchanged, byte for byte and in order.
DUMP_FIELDS_BEFORE = [
    'MESSAGE=zato-daemon worker (pid 4242) wrote dump feedc0de: 1 threads, 1 greenlets\nTEXT\n', 'PRIORITY=6',
    'MESSAGE_ID=66729019367b4defa9a8bcb3610d37a0', 'SYSLOG_IDENTIFIER=zato-daemon', 'ZATO_DUMP_ID=feedc0de',
    'ZATO_ROLE=worker', 'ZATO_DUMP_PID=4242', 'ZATO_SERVER_DIR=/srv/zato']


def test_the_journal_entry_of_a_dump_is_unchanged():
    assert journal_fields(made_up_dump(threads=1, greenlets=1, frames=1), 'TEXT\n') == DUMP_FIELDS_BEFORE


def test_what_blocks_a_hung_worker_ends_the_first_line_and_is_a_field():
    blocking = 'service crm.get cid zdABC at /srv/crm.py:88 in handle'
    fields = journal_fields(made_up_dump(threads=1, greenlets=1, frames=1), 'TEXT\n', blocking)
    assert fields[0] == (f'MESSAGE=zato-daemon worker (pid 4242) wrote dump feedc0de: 1 threads, 1 greenlets; '
                         f'blocking: {blocking}\nTEXT\n')
    assert fields[1:] == [*DUMP_FIELDS_BEFORE[1:], f'ZATO_BLOCKING={blocking}']


def test_the_entry_of_a_failed_part():
    fields = failure_fields('worker-1', '/srv/zato', 4242, 'server.log', 'OSError: [Errno 28] No space left on device',
                            'worker-1 (pid 4242) could not ...', 'feedc0de')
    assert fields == ['MESSAGE=worker-1 (pid 4242) could not ...', 'PRIORITY=4', f'MESSAGE_ID={DUMP_FAILED.message_id}',
                      'SYSLOG_IDENTIFIER=zato-daemon', 'ZATO_DUMP_SINK=server.log',
                      'ZATO_ERROR=OSError: [Errno 28] No space left on device', 'ZATO_DUMP_ID=feedc0de',
                      'ZATO_DUMP_PID=4242', 'ZATO_SERVER_DIR=/srv/zato', 'ZATO_ROLE=worker-1']


def test_write_text_to_fd_goes_on_after_partial_writes(tmp_path, monkeypatch):
    real_write, calls = os.write, []

    def short_write(fd, data):
        calls.append(len(data))
        return real_write(fd, bytes(data[:7]))

    path = tmp_path / 'server.log'
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    monkeypatch.setattr(sink.os, 'write', short_write)
    try:
        write_text_to_fd(fd, 'déjà vu: ' * 20)
    finally:
        monkeypatch.undo()
        os.close(fd)
    assert path.read_text() == 'déjà vu: ' * 20
    assert len(calls) > 20
