"""Dumps and hangs under the real systemd: systemctl kill -s SIGURG, a hung worker, the watchdog."""

import contextlib
import json
import time

import pytest

from tests.system.container import poll
from tests.system.helpers import (CONFIG_DIR, PORT, UNIT, assert_active, kill_unit, main_pid, post, restart, systemctl,
                                  zato_processes)
from zato_daemon.logs import levels

pytestmark = pytest.mark.xdist_group('system')

LOG = '/var/log/zato-daemon/server.log'
PICKUP = '/var/lib/zato-daemon/pickup'
SPIN = b'''\
import time
from zato_daemon import Service

class Spin(Service):
    name = 'demo.spin'

    def handle(self):
        deadline = time.monotonic() + self.request.payload['seconds']
        spins = 0
        while time.monotonic() < deadline:
            spins += 1
        self.response.payload = {'spins': spins}
'''
LOG_WARNING = b'''\
from zato_daemon import Service

class LogWarning(Service):
    name = 'demo.log-warning'

    def handle(self):
        self.logger.warning('demo.log-warning was called')
        self.response.payload = {'logged': True}
'''

# Sends small entries to journald's native socket until its queue is full: a send on a
# fresh socket would block. One socket's own send buffer fills first, hence several.
# Prints how many entries went in.
FILL_JOURNAL_QUEUE = """
import socket
queued, sockets = 0, []
while True:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.connect('/run/systemd/journal/socket')
    sock.setblocking(False)
    sockets.append(sock)
    sent = 0
    try:
        while True:
            sock.send(b'MESSAGE=queue filler\\nSYSLOG_IDENTIFIER=zato-daemon-tests\\n')
            sent += 1
    except BlockingIOError:
        queued += sent
    if not sent:
        break
print(queued)
"""


def dump_entries(container, since):
    output = container.journal('-u', UNIT, '-o', 'json', '--all', f'MESSAGE_ID={levels.DUMP_WRITTEN.message_id}',
                               '--since', since)
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def now(container):
    return container.run(['date', '+%Y-%m-%d %H:%M:%S']).stdout.strip()


def unit_pids(container):
    """The pids of the main server's processes (master and workers), by process title."""
    return {pid for _, pid, title in zato_processes(container) if title.endswith(f' {CONFIG_DIR}')}


def restart_serving(container):
    """Restarts the unit until it serves; returns its pids and a --since time before anything new."""
    restart(container)
    poll(lambda: post(container, PORT, '/services/demo.echo', {})[0] == 200, 10, message='the server')
    since = now(container)
    time.sleep(1)  # --since has one-second resolution
    return unit_pids(container), since


def test_systemctl_kill_sigurg_gives_one_dump_per_process(container, installed):
    pids, since = restart_serving(container)
    kill_unit(container, 'SIGURG')
    poll(lambda: {int(entry['_PID']) for entry in dump_entries(container, since)} == pids, 15,
         message='one dump entry from every process of the unit')
    time.sleep(1.5)
    entries = dump_entries(container, since)
    assert len(entries) == len(pids), [entry['ZATO_ROLE'] for entry in entries]
    assert sorted(entry['ZATO_ROLE'] for entry in entries)[0] == 'master'
    log = container.get(LOG).decode()
    for entry in entries:
        assert f'==== end of zato-daemon dump {entry["ZATO_DUMP_ID"]}' in log
    # The dump-id field finds one entry.
    one = entries[0]['ZATO_DUMP_ID']
    assert len([line for line in container.journal('-u', UNIT, '-o', 'json', f'ZATO_DUMP_ID={one}').splitlines()
                if line.strip()]) == 1


@contextlib.contextmanager
def journald_frozen(container):
    """journald stopped with its socket's queue full: journald at its slowest, a sender blocks."""
    systemctl(container, 'kill', '-s', 'SIGSTOP', 'systemd-journald')
    try:
        queued = int(container.run(['python3', '-c', FILL_JOURNAL_QUEUE]).stdout)
        assert queued > 0
        # The precondition: a client of journald now waits (timeout's 124) instead of logging.
        probe = ['timeout', '1', 'python3', '-c', 'from systemd import journal; journal.send("probe")']
        assert container.run(probe, check=False).returncode == 124
        yield
    finally:
        systemctl(container, 'kill', '-s', 'SIGCONT', 'systemd-journald')


def test_dumps_reach_server_log_while_journald_is_frozen_and_the_journal_after(container, installed):
    # The dumps are written to server.log and requests served; the journal entries
    # arrive when journald wakes up. The request is what a GIL held during the journal
    # send broke (server.log came first before too).
    pids, since = restart_serving(container)
    log_size = len(container.get(LOG))
    with journald_frozen(container):
        kill_unit(container, 'SIGURG')
        poll(lambda: container.get(LOG)[log_size:].count(b'==== end of zato-daemon dump') == len(pids), 15,
             message='a dump from every process in server.log while journald is frozen')
        assert post(container, PORT, '/services/demo.echo', {'journald': 'frozen'})[0] == 200
    poll(lambda: {int(entry['_PID']) for entry in dump_entries(container, since)} == pids, 30,
         message='the dump entries once journald runs again')
    assert_active(container)


@pytest.fixture
def logging_service(container, installed):
    container.put(f'{PICKUP}/log_warning.py', LOG_WARNING)
    container.run(['chown', 'zato:zato', f'{PICKUP}/log_warning.py'])
    restart(container)
    poll(lambda: post(container, PORT, '/services/demo.log-warning', {})[0] == 200, 15, message='demo.log-warning')
    yield
    container.run(['rm', '-f', f'{PICKUP}/log_warning.py'])
    restart(container)


def test_a_worker_stuck_logging_to_a_frozen_journald_still_dumps(container, logging_service):
    # The hang an operator meets when journald falls behind: a worker waits in a journal
    # send. Its dump thread still runs and shows where it waits.
    log_size = len(container.get(LOG))
    with journald_frozen(container):
        stuck = container.popen(['curl', '-s', '--max-time', '60', 
                                 f'http://127.0.0.1:{PORT}/services/demo.log-warning', '--json', '{}'])
        try:
            time.sleep(1)
            assert stuck.poll() is None, 'the call returned while journald was frozen'
            kill_unit(container, 'SIGURG')
            dumps = poll(lambda: [part for part in container.get(LOG)[log_size:].split(b'==== end of zato-daemon dump')
                                  if b'in LogWarning.handle' in part], 15,
                         message='a dump showing the worker waiting on the journal')
            stack = dumps[0].partition(b'in LogWarning.handle')[2].decode(errors='replace')
            assert 'in JournalHandler.emit' in stack and 'in sendv' in stack, stack
        finally:
            systemctl(container, 'kill', '-s', 'SIGCONT', 'systemd-journald')
            stdout, _ = stuck.communicate(timeout=60)
    assert json.loads(stdout) == {'logged': True}


@pytest.fixture
def quick_hang_timeout(container, installed):
    conf = f'{CONFIG_DIR}/server.conf'
    original = container.get(conf)
    container.put(conf, original.replace(b'hang_timeout = 30', b'hang_timeout = 2'))
    container.put(f'{PICKUP}/spin.py', SPIN)
    container.run(['chown', 'zato:zato', f'{PICKUP}/spin.py'])
    restart(container)
    poll(lambda: post(container, PORT, '/services/demo.spin', {'seconds': 0})[0] == 200, 15, message='demo.spin')
    yield
    container.put(conf, original)
    container.run(['rm', '-f', f'{PICKUP}/spin.py'])
    restart(container)


def test_a_hung_worker_is_dumped_to_the_journal_and_replaced(container, quick_hang_timeout):
    since = now(container)
    master = main_pid(container)
    spin = container.popen(['curl', '-s', '--max-time', '40', f'http://127.0.0.1:{PORT}/services/demo.spin',
                            '--json', '{"seconds": 30}'])
    try:
        def hung_entry():
            output = container.journal('-u', UNIT, '-o', 'json', f'MESSAGE_ID={levels.WORKER_HUNG.message_id}',
                                       '--since', since)
            return [json.loads(line) for line in output.splitlines() if line.strip()]
        entries = poll(hung_entry, 20, message='the WORKER_HUNG entry')
        assert entries[0]['PRIORITY'] == '3'
        hung_pid = int(entries[0]['MESSAGE'].split('(pid ')[1].split(')')[0])
        dump = poll(lambda: [entry for entry in dump_entries(container, since) if int(entry['_PID']) == hung_pid],
                    20, message="the hung worker's dump")[0]
        assert 'in Spin.handle' in dump['MESSAGE'] and 'spins=' in dump['MESSAGE']
        poll(lambda: hung_pid not in unit_pids(container) and len(unit_pids(container)) >= 2, 20,
             message='the hung worker to be replaced')
        assert main_pid(container) == master
        assert post(container, PORT, '/services/demo.echo', {'after': 'hang'})[0] == 200
    finally:
        spin.kill()


def test_the_master_keeps_the_watchdog_fed(container, installed):
    container.run(['mkdir', '-p', '/etc/systemd/system/zato-daemon.service.d'])
    container.put('/etc/systemd/system/zato-daemon.service.d/watchdog.conf', b'[Service]\nWatchdogSec=2\n')
    try:
        systemctl(container, 'daemon-reload')
        restart(container)
        master = main_pid(container)
        time.sleep(5)  # more than twice WatchdogSec
        assert_active(container)
        assert main_pid(container) == master
        assert container.show(UNIT, 'NRestarts', 'WatchdogUSec') == {'NRestarts': '0', 'WatchdogUSec': '2s'}
    finally:
        container.run(['rm', '-rf', '/etc/systemd/system/zato-daemon.service.d'])
        systemctl(container, 'daemon-reload')
        restart(container)
