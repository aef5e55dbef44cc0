"""Keep-alive connections spread across two workers sharing the listening socket
(http/balance.py), against a real server: evenly even when one worker's hub is busy, and
never held back by a worker that is dead, stopped or listening on another socket."""

import collections
import http.client
import json
import os
import signal
import threading
import time

import pytest

from tests.integration.helpers import call, free_port, wait_until
from zato_daemon.http.balance import SLACK

JSON_HEADERS = {'Content-Type': 'application/json'}
# Long enough for a loaded test machine; a connection left in the backlog for good fails it.
ANSWER_TIMEOUT = 10.0

SERVICES = '''\
import os
import time
from pathlib import Path

from gevent.monkey import get_original

from zato_daemon import Service

# While this file exists, a worker importing this module (booting) waits: it accepts nothing.
HOLD = Path({hold!r})
_deadline = time.monotonic() + 60
while HOLD.exists() and time.monotonic() < _deadline:
    time.sleep(0.05)


class Pid(Service):
    name = 'test.balance.pid'

    def handle(self):
        self.response.payload = {{'pid': os.getpid()}}


class Block(Service):
    """Blocks the worker's hub, as code that computes without yielding does."""

    name = 'test.balance.block'

    def handle(self):
        get_original('time', 'sleep')(self.request.payload['seconds'])
        self.response.payload = {{'pid': os.getpid()}}
'''

# AFTER_STARTED runs once a worker serves: while this file exists, a booting worker
# accepts on its socket but does not report ready, so a reload stays half done.
HOLD_AFTER_STARTED = '''\
import time
from pathlib import Path

from zato_daemon.common import SERVER_STARTUP

HOLD = Path({hold!r})


def wait(ctx):
    if ctx.phase == SERVER_STARTUP.PHASE.AFTER_STARTED:
        deadline = time.monotonic() + 60
        while HOLD.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
'''


class Holds:
    """The files the test creates to hold a booting worker back."""

    def __init__(self, tmp_path):
        self.boot = tmp_path / 'hold-boot'
        self.after_started = tmp_path / 'hold-after-started'

    def release(self):
        self.boot.unlink(missing_ok=True)
        self.after_started.unlink(missing_ok=True)


@pytest.fixture
def holds(tmp_path):
    holds = Holds(tmp_path)
    yield holds
    holds.release()  # before the server stops: a held worker would delay the stop


@pytest.fixture
def server(server_factory, tmp_path, holds):
    """Two workers with the services above and the AFTER_STARTED hold."""
    services = tmp_path / 'balance_services.py'
    services.write_text(SERVICES.format(hold=str(holds.boot)))
    server = server_factory(workers=2, start=False, sections='[misc]\nstartup_callable = balance_hold.wait\n')
    (server.server_dir / 'extlib').mkdir()
    (server.server_dir / 'extlib' / 'balance_hold.py').write_text(
        HOLD_AFTER_STARTED.format(hold=str(holds.after_started)))
    conf = server.server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace('[services]\n', f'[services]\npaths = {services}\n'))
    return server.start()


class Connections:
    """Keep-alive connections opened one after another, each asked which worker holds it."""

    def __init__(self):
        self.open = []

    def connect(self, port, count):
        """Opens `count` connections; returns the pid that answered on each."""
        pids = []
        for _ in range(count):
            connection = http.client.HTTPConnection('127.0.0.1', port, timeout=ANSWER_TIMEOUT)
            self.open.append(connection)
            pids.append(ask(connection, 'test.balance.pid'))
        return pids

    def close(self):
        for connection in self.open:
            connection.close()


@pytest.fixture
def connections():
    connections = Connections()
    yield connections
    connections.close()


def ask(connection, service, payload=None):
    connection.request('POST', f'/services/{service}', json.dumps(payload or {}), JSON_HEADERS)
    response = connection.getresponse()
    body = json.loads(response.read())
    assert response.status == 200, body
    return body['pid']


def test_connections_split_evenly_even_while_one_worker_is_busy(server, connections):
    busy = http.client.HTTPConnection('127.0.0.1', server.port, timeout=ANSWER_TIMEOUT)
    busy_pid = ask(busy, 'test.balance.pid')
    stop = threading.Event()
    busy_calls = []

    def keep_busy():
        # The busy worker's hub runs only between these calls: the kernel wakes both workers
        # for each connection, and the idle one would take nearly all of them.
        while not stop.is_set():
            # Shorter than LONGEST_REFUSAL: the idle worker leaves each new connection to it.
            busy_calls.append(ask(busy, 'test.balance.block', {'seconds': 0.01}))

    thread = threading.Thread(target=keep_busy, daemon=True)
    thread.start()
    try:
        pids = connections.connect(server.port, 40)
    finally:
        stop.set()
        thread.join(ANSWER_TIMEOUT)
        busy.close()
    assert busy_calls and set(busy_calls) == {busy_pid}
    held = collections.Counter(pids)
    held[busy_pid] += 1
    assert set(held) == set(server.worker_pids())
    assert max(held.values()) - min(held.values()) <= SLACK + 1, held


def test_new_connections_do_not_wait_for_the_least_loaded_worker_busy_in_long_calls(server, connections):
    """Load is counted in connections: the worker holding fewer may be the one busy. Refused
    by the counts for LONGEST_REFUSAL, the idle worker takes the connection anyway."""
    busy = http.client.HTTPConnection('127.0.0.1', server.port, timeout=ANSWER_TIMEOUT)
    busy_pid = ask(busy, 'test.balance.pid')
    pids = connections.connect(server.port, 12)
    [idle_pid] = set(server.worker_pids()) - {busy_pid}
    # Make the busy worker the least loaded: close what it holds but `busy`.
    for connection, pid in zip(connections.open, pids):
        if pid == busy_pid:
            connection.close()
    assert pids.count(idle_pid) > 1 + SLACK
    time.sleep(0.2)  # for the busy worker to see those connections end
    stop = threading.Event()

    def keep_busy():
        # Blocks of 0.3 s: its stamp stays fresh (renewed between calls), so only the
        # refusal limit lets the idle worker take what arrives meanwhile.
        while not stop.is_set():
            ask(busy, 'test.balance.block', {'seconds': 0.3})

    thread = threading.Thread(target=keep_busy, daemon=True)
    thread.start()
    try:
        pids = [ask(connection, 'test.balance.pid') for connection in _new_connections(server.port, 10)]
    finally:
        stop.set()
        thread.join(ANSWER_TIMEOUT)
        busy.close()
    # Before the limit every one went to the busy worker, between its calls.
    assert pids.count(idle_pid) >= 6, pids


def _new_connections(port, count):
    for _ in range(count):
        connection = http.client.HTTPConnection('127.0.0.1', port, timeout=ANSWER_TIMEOUT)
        try:
            yield connection
        finally:
            connection.close()


def test_a_killed_workers_connections_do_not_hold_the_survivor_back(server, connections, holds):
    before = connections.connect(server.port, 20)
    counts = collections.Counter(before)
    killed, survivor = sorted(counts, key=counts.get)
    # Its replacement stays in its boot, accepting nothing: only the survivor serves.
    holds.boot.touch()
    os.kill(killed, signal.SIGKILL)

    def states():
        return sorted((worker['state'], worker['pid'] == killed) for worker in server.status()['workers'])
    wait_until(lambda: states() == [('booting', False), ('ready', False)],
               message='the killed worker to be reaped and its replacement to be booting')
    # Far past the killed worker's count plus the slack: it must not count any more.
    after = connections.connect(server.port, counts[killed] + SLACK + 10)
    assert set(after) == {survivor}
    assert states() == [('booting', False), ('ready', False)], 'the replacement must still be held in its boot'
    holds.release()
    server.wait_ready()
    [replacement] = set(server.worker_pids()) - {survivor}
    # The replacement, with no connection, takes the next ones.
    assert set(connections.connect(server.port, 5)) == {replacement}


def test_a_stopped_worker_does_not_hold_the_other_back(server, connections):
    before = collections.Counter(connections.connect(server.port, 10))
    stopped, running = sorted(before)
    os.kill(stopped, signal.SIGSTOP)
    try:
        # A hub that runs nothing renews no stamp: after STALE_AFTER it counts no more.
        after = connections.connect(server.port, before[stopped] + SLACK + 10)
    finally:
        os.kill(stopped, signal.SIGCONT)
    assert set(after) == {running}


def test_during_a_reload_to_another_port_the_old_workers_still_accept_on_theirs(server, connections, holds):
    old_pids = set(server.worker_pids())
    before = connections.connect(server.port, 10)
    assert set(before) == old_pids
    new_port = free_port()
    conf = server.server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace(f'port = {server.port}', f'port = {new_port}'))
    holds.after_started.touch()
    server.signal(signal.SIGHUP)

    def new_workers_accept():
        try:
            return call(new_port, 'test.balance.pid')[0] == 200
        except OSError:
            return False
    wait_until(new_workers_accept, message='the new workers to accept on the new port')
    # The new workers hold fewer connections, but on another socket: the old ones must not
    # leave connections to their own socket in its backlog for them.
    after = connections.connect(server.port, 10)
    assert set(after) <= old_pids
    holds.release()
    wait_until(lambda: 'Reload complete' in server.log(), message='the reload to complete')
