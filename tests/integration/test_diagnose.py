"""`zato-daemon diagnose` against real servers running probe services that deadlock, read from a
silent peer, spin the CPU, leak a greenlet per call and hold a semaphore with others queued.

Each probe writes its cid to a file in the test's directory once it is where it will stay, so
the test knows what diagnose must name and when to start it; `probe.release` (or a flag file,
for the spinner, whose hub serves nothing) lets them go at the end.
"""

import http.client
import json
import re
import socket
import threading
import time

import pytest

from tests.integration.helpers import call, request, wait_until, zato_daemon
from zato_daemon.dump.record import read_records

PROBES = '''\
import os
import socket
import time

import gevent
import gevent.lock

from zato_daemon import Service

LOCK_A = gevent.lock.RLock()
LOCK_B = gevent.lock.RLock()
TAKEN = set()  # which of the two is taken (gevent 22.10's RLock has no locked())
GATE = gevent.lock.Semaphore(1)
KEPT = []      # greenlets probe.release kills


def note(service, state):
    """Tells the test where `service` is (services without a name of their own are refused)."""
    with open(service.request.payload['notes'], 'a') as notes:
        notes.write(f'{service.name} {service.cid} {state}\\n')


class DeadlockA(Service):
    name = 'probe.deadlock-a'

    def handle(self):
        KEPT.append(gevent.getcurrent())
        lock_a, lock_b = LOCK_A, LOCK_B
        with lock_a:
            TAKEN.add('a')
            while 'b' not in TAKEN:
                gevent.sleep(0.01)
            note(self, 'waiting')
            with lock_b:  # deadlock-a waits here
                pass


class DeadlockB(Service):
    name = 'probe.deadlock-b'

    def handle(self):
        KEPT.append(gevent.getcurrent())
        lock_a, lock_b = LOCK_A, LOCK_B
        with lock_b:
            TAKEN.add('b')
            while 'a' not in TAKEN:
                gevent.sleep(0.01)
            note(self, 'waiting')
            with lock_a:  # deadlock-b waits here
                pass


class SilentPeer(Service):
    name = 'probe.silent-peer'

    def handle(self):
        KEPT.append(gevent.getcurrent())
        peer = socket.create_connection(('127.0.0.1', self.request.payload['port']))
        note(self, 'waiting')
        data = peer.recv(10)  # silent-peer waits here
        self.response.payload = {'received': len(data)}


class Spin(Service):
    name = 'probe.spin'

    def handle(self):
        flag = self.request.payload['flag']
        deadline = time.monotonic() + 60
        note(self, 'spinning')
        while not os.path.exists(flag) and time.monotonic() < deadline:  # spin loops here
            pass


def forever():
    gevent.sleep(3600)  # a leaked greenlet sleeps here


class Leak(Service):
    name = 'probe.leak'

    def handle(self):
        KEPT.append(gevent.spawn(forever))  # leak spawns here


class Hold(Service):
    name = 'probe.hold'

    def handle(self):
        KEPT.append(gevent.getcurrent())
        gate = GATE
        with gate:
            note(self, 'holding')
            while True:
                gevent.sleep(0.1)  # hold sleeps here


class Queue(Service):
    name = 'probe.queue'

    def handle(self):
        KEPT.append(gevent.getcurrent())
        gate = GATE
        note(self, 'waiting')
        with gate:  # queue waits here
            pass


class Release(Service):
    name = 'probe.release'

    def handle(self):
        gevent.killall(list(KEPT), block=False)
        del KEPT[:]
'''


def line_of(marker):
    """The line of the probes module that carries `# <marker>`."""
    for number, line in enumerate(PROBES.splitlines(), 1):
        if line.rstrip().endswith(f'# {marker}'):
            return number
    raise AssertionError(f'no line marked {marker!r}')


class Probes:
    """A server with the probes deployed, the notes file they write, and calls left running."""

    def __init__(self, server, tmp_path, module=PROBES, release='probe.release'):
        self.server = server
        self.release_service = release
        self.notes = tmp_path / 'notes.txt'
        self.notes.touch()
        self.calls = []
        pickup = server.server_dir / 'pickup'
        pickup.mkdir(exist_ok=True)
        (server.server_dir / 'probes.tmp').write_text(module)
        (server.server_dir / 'probes.tmp').rename(pickup / 'probes.py')
        wait_until(lambda: call(server.port, release, {})[0] == 200, message='the probes to deploy')

    def start(self, service, **payload):
        """Calls `service` in a thread of its own; the answer comes when the probe is released."""
        def run():
            try:
                request(self.server.port, 'POST', f'/services/{service}', {'notes': str(self.notes), **payload},
                        timeout=90)
            except OSError:
                pass
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.calls.append(thread)

    def noted(self, service, state, count=1):
        """The cids of `service` in `state`, once `count` of them are noted."""
        def cids():
            found = [line.split()[1] for line in self.notes.read_text().splitlines()
                     if line.split()[0] == service and line.split()[2] == state]
            return found if len(found) >= count else None
        return wait_until(cids, message=f'{count} {service} {state}')

    def release(self):
        call(self.server.port, self.release_service, {})
        for thread in self.calls:
            thread.join(30)


def diagnose(server, *options):
    result = zato_daemon('diagnose', server.server_dir, '--dumps', 3, '--interval', 1, *options, timeout=90)
    return result


def finding_lines(output, label):
    return [line for line in output.splitlines() if line.startswith(label)]


@pytest.fixture
def probes(server_factory, tmp_path):
    # hang_timeout high: the spinning worker must live through the dumps.
    made = Probes(server_factory(main='hang_timeout = 300'), tmp_path)
    yield made
    made.release()


def test_an_idle_server_has_nothing_to_report(server):
    # A keep-alive client between two requests: its connection's greenlet waits, idle.
    client = http.client.HTTPConnection('127.0.0.1', server.port, timeout=10)
    client.request('POST', '/services/demo.echo', '{}', {'Content-Type': 'application/json'})
    assert client.getresponse().read()
    try:
        result = diagnose(server)
    finally:
        client.close()
    assert result.returncode == 0, result.stdout + result.stderr
    worker = [record for record in read_records(server.server_dir / 'run' / 'dumps') if record['role'] != 'master']
    assert any(frame['function'] == 'HttpServer._exchange' for greenlet in worker[-1]['greenlets']
               for frame in worker[-1]['stacks'][greenlet['stack']]), 'the keep-alive connection was in the dumps'
    assert result.stdout.startswith('zato-daemon: nothing found, 0 calls in flight; 2 processes of ')
    assert 'STUCK' not in result.stdout and 'journalctl -o cat MESSAGE_ID=' in result.stdout
    report = json.loads(diagnose(server, '--json').stdout)
    assert (report['problems'], report['findings']) == (0, [])
    assert sorted(process['role'] for process in report['processes']) == ['master', 'worker-1']
    assert all(process['dumps'] == 3 for process in report['processes'])


def test_two_greenlets_deadlocked_on_two_locks(probes):
    probes.start('probe.deadlock-a')
    probes.start('probe.deadlock-b')
    cid_a, = probes.noted('probe.deadlock-a', 'waiting')
    cid_b, = probes.noted('probe.deadlock-b', 'waiting')
    result = diagnose(probes.server)
    assert result.returncode == 1, result.stdout + result.stderr
    deadlock, = finding_lines(result.stdout, 'DEADLOCK')
    for text in (cid_a, cid_b, 'lock_a', 'lock_b', f'probes.py:{line_of("deadlock-a waits here")}',
                 f'probes.py:{line_of("deadlock-b waits here")}'):
        assert text in deadlock, (text, result.stdout)
    # Each waiter is named once, under the deadlock.
    assert not finding_lines(result.stdout, 'STUCK') and not finding_lines(result.stdout, 'LOCK WAIT')


def test_a_read_from_a_silent_peer(probes):
    with socket.create_server(('127.0.0.1', 0)) as silent:
        probes.start('probe.silent-peer', port=silent.getsockname()[1])
        cid, = probes.noted('probe.silent-peer', 'waiting')
        peer, _ = silent.accept()
        with peer:
            result = diagnose(probes.server)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = finding_lines(result.stdout, 'STUCK')
    assert len(lines) == 1, result.stdout
    stuck = lines[0]
    assert f'serving probe.silent-peer, cid {cid}' in stuck
    assert re.search(rf'in \S*recv\S* at probes\.py:{line_of("silent-peer waits here")} for at least', stuck), stuck


def test_a_greenlet_spinning_the_cpu_blocks_the_hub(probes, tmp_path):
    flag = tmp_path / 'stop-spinning'
    probes.start('probe.spin', flag=str(flag))
    cid, = probes.noted('probe.spin', 'spinning')
    try:
        result = diagnose(probes.server)
    finally:
        flag.touch()
    assert result.returncode == 1, result.stdout + result.stderr
    blocked, = finding_lines(result.stdout, 'HUB BLOCKED')
    assert f'serving probe.spin, cid {cid}' in blocked
    assert f'probes.py:{line_of("spin loops here")}' in blocked


def test_a_greenlet_spawned_per_call_that_never_ends(probes):
    stop = threading.Event()
    calls = []

    def drive():
        # Bounded in count and time whatever happens to diagnose.
        deadline = time.monotonic() + 30
        while not stop.is_set() and len(calls) < 300 and time.monotonic() < deadline:
            calls.append(call(probes.server.port, 'probe.leak', {'notes': str(probes.notes)})[0])
            stop.wait(0.05)
    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        wait_until(lambda: len(calls) >= 3, message='the first leaks')
        result = diagnose(probes.server)
    finally:
        stop.set()
        driver.join(30)
    assert set(calls) == {200}
    assert result.returncode == 1, result.stdout + result.stderr
    growth, = finding_lines(result.stdout, 'GROWTH')
    assert f'probes.py:{line_of("leak spawns here")} in Leak.handle' in growth
    counts = [int(number) for number in re.search(r': ([\d →]+) in ', growth).group(1).split(' → ')]
    assert len(counts) == 3 and counts == sorted(set(counts)), growth


def test_a_semaphore_held_while_sleeping_with_others_queued(probes):
    probes.start('probe.hold')
    holder, = probes.noted('probe.hold', 'holding')
    probes.start('probe.queue')
    probes.start('probe.queue')
    waiters = probes.noted('probe.queue', 'waiting', count=2)
    result = diagnose(probes.server)
    assert result.returncode == 1, result.stdout + result.stderr
    waits, = finding_lines(result.stdout, 'LOCK WAIT')
    assert re.search(r'on gate \(gevent\.\S*Semaphore at 0x', waits), waits  # compiled or not
    assert 'by greenlet 0x' in waits and f'serving probe.hold, cid {holder}' in waits
    assert all(f'probe.queue cid {cid}' in waits for cid in waiters), waits
    lines = finding_lines(result.stdout, 'STUCK')
    assert len(lines) == 1, result.stdout
    stuck = lines[0]
    assert f'cid {holder}' in stuck and f'probes.py:{line_of("hold sleeps here")}' in stuck
    # The details show the waiters' own line.
    assert f'probes.py:{line_of("queue waits here")}' in result.stdout


def test_a_bad_count_of_dumps_is_a_usage_error(server):
    result = zato_daemon('diagnose', server.server_dir, '--dumps', 1)
    assert result.returncode == 64
    assert "'1' is not a whole number from 2 to 20" in result.stderr


def test_nothing_running_is_69(server_factory):
    stopped = server_factory(start=False)
    result = zato_daemon('diagnose', stopped.server_dir)
    assert result.returncode == 69 and 'no server is running' in result.stderr
