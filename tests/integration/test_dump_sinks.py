"""Each place a dump goes fails on its own, in real servers: server.log replaced by a directory,
the dump records' directory replaced by a file or removed. A real systemd-journald, in a mount
namespace of the test's own, receives the dump entries and the DUMP_FAILED ones; /metrics
counts the failures of the master and of the workers."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.helpers import ServerProcess, _env, call, free_port, wait_until, write_server_dir, zato_daemon
from tests.integration.test_dump import HOSTILE
from tests.integration.test_metrics import scrape, value
from zato_daemon.dump.record import read_records
from zato_daemon.dump.trigger import DEFAULT_QUIET_PERIOD
from zato_daemon.logs.levels import DUMP_FAILED, DUMP_WRITTEN

JOURNALD = '/lib/systemd/systemd-journald'
TOOLS = (JOURNALD, shutil.which('journalctl'), shutil.which('unshare'), shutil.which('nsenter'))
needs_journald = pytest.mark.skipif(
    not all(tool and os.path.exists(tool) for tool in TOOLS) or os.geteuid() != 0,
    reason='a journald of its own needs root, systemd-journald, journalctl (systemd) and unshare, nsenter (util-linux)')


class PrivateJournald:
    """systemd-journald in a mount namespace where /run is a tmpfs of its own: a process started
    with command() sends to it at the usual socket path, the machine's journal sees nothing, and
    the journal files are in `directory` (bound to /run/log/journal) for journalctl -D."""

    def __init__(self, directory):
        self.directory = directory
        directory.mkdir()
        script = (f'mount -t tmpfs tmpfs /run && mkdir -p /run/log/journal && '
                  f'mount --bind "$1" /run/log/journal && exec {JOURNALD}')
        # unshare and sh exec: the pid is journald's, and the namespace goes with it.
        self.process = subprocess.Popen(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh',
                                         str(directory)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        socket = f'/proc/{self.process.pid}/root/run/systemd/journal/socket'
        wait_until(lambda: self.process.poll() is None and os.path.exists(socket), timeout=10,
                   message='systemd-journald to listen')

    def command(self, *args):
        return ['nsenter', '-t', str(self.process.pid), '-m', '--', *map(str, args)]

    def entries(self, *filters):
        """The entries matching `filters`, as dicts (-o json, --all for long fields)."""
        output = subprocess.run(['journalctl', '-D', str(self.directory), '-o', 'json', '--all', *filters],
                                capture_output=True, text=True, timeout=30).stdout
        return [json.loads(line) for line in output.splitlines() if line.strip()]

    def stop(self):
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def journald(tmp_path):
    journald = PrivateJournald(tmp_path / 'journal')
    yield journald
    journald.stop()


@pytest.fixture
def start_in_journald(tmp_path, journald):
    """Starts servers (journal = yes) whose every process sends to the private journald."""
    servers = []

    def start(name='server', workers=1, main='', pickup=()):
        port = free_port()
        server = ServerProcess(write_server_dir(tmp_path / name, port, workers, main=main,
                                                sections='[logging]\njournal = yes\n'), port)
        servers.append(server)
        # In the pickup directory before the start: every worker has these when it is ready.
        (server.server_dir / 'pickup').mkdir()
        for file_name, source in pickup:
            (server.server_dir / 'pickup' / file_name).write_text(source)
        # What ServerProcess.start does, inside the namespace: nsenter execs, the pid is the master's.
        with open(server.output_path, 'ab') as output:
            server.process = subprocess.Popen(
                journald.command(sys.executable, '-m', 'zato_daemon', 'start', server.server_dir, '--fg'),
                stdout=output, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=_env(), start_new_session=True)
        return server.wait_ready()

    yield start
    for server in servers:  # before the journald fixture's teardown
        server.stop()


def dump_pids(entries):
    return sorted(int(entry['ZATO_DUMP_PID']) for entry in entries)


def failures(server, process):
    return value(scrape(server), 'zato_dump_failures_total', process=process)


@needs_journald
def test_a_server_log_that_cannot_be_written_still_gives_the_journal_entries_records_and_reports(
        start_in_journald, journald):
    server = start_in_journald()
    pids = sorted([server.pid, *server.worker_pids()])
    log = server.server_dir / 'logs' / 'server.log'
    log.rename(log.with_name('server.log.moved'))
    log.mkdir()
    assert zato_daemon('dump', server.server_dir).returncode == 0
    written = wait_until(lambda: len(journald.entries(f'MESSAGE_ID={DUMP_WRITTEN.message_id}')) == 2
                         and journald.entries(f'MESSAGE_ID={DUMP_WRITTEN.message_id}'), message='both dump entries')
    assert dump_pids(written) == pids
    failed = wait_until(lambda: len(journald.entries(f'MESSAGE_ID={DUMP_FAILED.message_id}')) == 2
                        and journald.entries(f'MESSAGE_ID={DUMP_FAILED.message_id}'), message='both DUMP_FAILED')
    assert dump_pids(failed) == pids
    for entry in failed:
        assert (entry['ZATO_DUMP_SINK'], entry['PRIORITY'], entry['SYSLOG_IDENTIFIER'], entry['ZATO_SERVER_DIR']) == (
            'server.log', '4', 'zato-daemon', str(server.server_dir))
        assert entry['ZATO_ERROR'] == f"IsADirectoryError: [Errno 21] Is a directory: '{log}'"
        assert entry['MESSAGE'] == (f"{entry['ZATO_ROLE']} (pid {entry['ZATO_DUMP_PID']}) could not write the dump "
                                    f"{entry['ZATO_DUMP_ID']} to server.log: {entry['ZATO_ERROR']}")
    # The records, and the report to the master: the worker's dump reached it (zato_dumps_total).
    records = read_records(server.server_dir / 'run' / 'dumps')
    assert sorted((record['pid'], record['dump_id']) for record in records) == sorted(
        (int(entry['ZATO_DUMP_PID']), entry['ZATO_DUMP_ID']) for entry in written)
    wait_until(lambda: value(scrape(server), 'zato_dumps_total') == 2, message="the master's count of dumps")
    wait_until(lambda: failures(server, 'worker') == 1, message="the worker's failure in its report")
    assert failures(server, 'master') == 1
    # --fg: the failure lines are on stdout too, as the records that go there.
    assert len(re.findall(r' WARNING (master|worker-1):\d+ zato_daemon\.dump:\d+ - .* could not write the dump \w+ '
                          r'to server\.log: IsADirectoryError', server.output())) == 2


@needs_journald
def test_a_hung_workers_journal_entry_says_what_blocks_its_hub(start_in_journald, journald):
    server = start_in_journald(workers=2, main='hang_timeout = 2', pickup=[('hostile.py', HOSTILE)])
    with ThreadPoolExecutor(1) as pool:
        spinning = pool.submit(call, server.port, 'demo.spin', {'seconds': 30})
        entries = wait_until(lambda: [entry for entry in journald.entries(f'MESSAGE_ID={DUMP_WRITTEN.message_id}')
                                      if entry['ZATO_ROLE'].startswith('worker')], timeout=30,
                             message="the hung worker's dump")
        spinning.cancel()
    entry, = entries
    blocking = entry['ZATO_BLOCKING']
    # The main thread's innermost frame: the spinning handle(), never the SIGURG handler.
    assert re.fullmatch(r'service demo\.spin cid zd\w+ at /\S+/hostile\.py:\d+ in \S*handle', blocking), blocking
    first_line = entry['MESSAGE'].split('\n', 1)[0]
    assert first_line.startswith(f"zato-daemon {entry['ZATO_ROLE']} (pid {entry['ZATO_DUMP_PID']}) wrote dump ")
    assert first_line.endswith(f'; blocking: {blocking}')


def test_a_record_directory_that_is_a_file_is_counted_and_one_removed_is_made_again(server):
    records = server.server_dir / 'run' / 'dumps'
    records.write_text('a file where the directory goes')
    assert zato_daemon('dump', server.server_dir).returncode == 0
    started = time.monotonic()
    wait_until(lambda: server.log().count('==== end of zato-daemon dump') == 2, message='both dumps in server.log')
    wait_until(lambda: failures(server, 'worker') == 1, message="the worker's failure in its report")
    assert failures(server, 'master') == 1
    lines = re.findall(r'^.* WARNING (\S+):\d+ zato_daemon\.dump:\d+ - .* could not write the dump \w+ record: '
                       r'(\w+)', server.log(), re.M)
    assert sorted(lines) == [('master', 'FileExistsError'), ('worker-1', 'FileExistsError')]
    records.unlink()  # no directory now: the next dumps make it
    # A dump requested within the quiet period of the last would be folded into it.
    time.sleep(max(0.0, DEFAULT_QUIET_PERIOD - (time.monotonic() - started)) + 0.2)
    assert zato_daemon('dump', server.server_dir).returncode == 0
    made = wait_until(lambda: len(read_records(records)) == 2 and read_records(records), message='the records')
    assert sorted(record['pid'] for record in made) == sorted([server.pid, *server.worker_pids()])
    assert failures(server, 'master') == 1 and failures(server, 'worker') == 1
