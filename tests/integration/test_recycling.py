"""Worker recycling against a real server: a worker past max_requests, or over
max_worker_memory, is replaced under load without a failed request."""

import http.client
import json
import re
import select
import signal
import threading
import time

import pytest

from tests.integration.helpers import request, wait_until
from zato_daemon.master.recycling import read_rss

JSON = {'Content-Type': 'application/json'}
CLIENTS = 4
REQUESTS_PER_CLIENT = 750
LOAD_TIMEOUT = 120.0

GROW_SERVICE = '''\
import os

from zato_daemon import Service

# What the worker holds on to: it only grows, as a leak would.
HELD = []

class Grow(Service):
    """Keeps `bytes` more bytes resident in this worker."""
    name = 'test.memory.grow'

    def handle(self):
        # Filled, not just reserved: every page is touched, so it counts as resident.
        HELD.append(b'\\x01' * self.request.payload['bytes'])
        self.response.payload = {'pid': os.getpid()}
'''


def is_closed_by_server(connection):
    """True when an idle keep-alive connection has something to read: it can only be its end
    (the server closed it between requests, the normal end of keep-alive)."""
    readable, _, _ = select.select([connection.sock], [], [], 0)
    return bool(readable)


class Client(threading.Thread):
    """Sends numbered echo requests on keep-alive connections, reconnecting whenever the server
    ends one; a request sent that gets no answer, or a wrong one, is a failure."""

    def __init__(self, port, count=None):
        super().__init__(daemon=True)
        self.port = port
        self.count = count
        self.stop_event = threading.Event()
        self.results = []

    def run(self):
        connection = None
        number = 0
        deadline = time.monotonic() + LOAD_TIMEOUT
        while not self.stop_event.is_set() and number != self.count and time.monotonic() < deadline:
            number += 1
            if connection is not None and is_closed_by_server(connection):
                connection.close()
                connection = None
            if connection is None:
                connection = http.client.HTTPConnection('127.0.0.1', self.port, timeout=30)
            try:
                connection = self.send(connection, number)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.results.append(('error', repr(exc)))
                connection.close()
                connection = None
        if connection is not None:
            connection.close()

    def send(self, connection, number):
        """One request; returns the connection to use next (None once the server closed it)."""
        connection.request('POST', '/services/demo.echo', json.dumps({'n': number}), JSON)
        response = connection.getresponse()
        body = response.read()
        self.results.append((response.status, json.loads(body) == {'n': number}))
        if response.getheader('connection', '').lower() == 'close':
            connection.close()
            return None
        return connection

    def failures(self):
        return [result for result in self.results if result != (200, True)]


def run_clients(clients):
    for client in clients:
        client.start()


def join_clients(clients):
    for client in clients:
        client.stop_event.set()
        client.join(LOAD_TIMEOUT)
        assert not client.is_alive(), 'a client is still waiting for an answer'
    results = [result for client in clients for result in client.results]
    failures = [result for client in clients for result in client.failures()]
    assert not failures, f'{len(failures)} of {len(results)} requests failed: {failures[:5]}'
    return results


RECYCLED = re.compile(r' INFO master:\d+ .*Worker \d+ \(pid (\d+)\) reached its limit of (\d+) requests '
                      r'\(max_requests 100 plus jitter\); replacing it')
STARTED = re.compile(r'Worker \d+ \(generation \d+\) started, pid (\d+)')


def settled_recycling(server, workers):
    """The (pid, limit) of every recycled worker, once each drained and exited and the target
    count of workers serves; None until then. From one read of the log, since a limit reached
    by the last requests is reported while the clients read their answers."""
    log = server.log()
    recycled = RECYCLED.findall(log)
    states = [worker['state'] for worker in (server.status() or {}).get('workers', [])]
    if states != ['ready'] * workers:
        return None
    if not all(f'(pid {pid}) drained and exited with status 0' in log for pid, _ in recycled):
        return None
    # One worker started for each recycled one: never a second replacement.
    assert len(set(STARTED.findall(log))) == workers + len(recycled), log[-3000:]
    assert 'restarting it' not in log
    return recycled


@pytest.mark.parametrize('workers', [1, 2])
def test_a_worker_past_max_requests_is_replaced_under_load_without_a_failed_request(server_factory, workers):
    server = server_factory(workers=workers, main='max_requests = 100')
    first_pids = set(server.worker_pids())
    clients = [Client(server.port, count=REQUESTS_PER_CLIENT) for _ in range(CLIENTS)]
    run_clients(clients)
    for client in clients:
        client.join(LOAD_TIMEOUT)
    results = join_clients(clients)
    assert len(results) == CLIENTS * REQUESTS_PER_CLIENT
    recycled = wait_until(lambda: settled_recycling(server, workers), message='the recycled workers to drain')
    # Each worker drew its own limit within max_requests plus 10 %.
    assert all(100 <= int(limit) <= 110 for _, limit in recycled)
    # Clients keep their connections until a draining worker closes them, so with two workers
    # the second may not have reached its limit yet; at least one of the first two has.
    assert first_pids & {int(pid) for pid, _ in recycled}
    assert set(server.worker_pids()) != first_pids


def test_a_worker_over_max_worker_memory_is_replaced_with_a_warning_and_requests_are_answered(server_factory):
    server = server_factory(start=False)
    pickup = server.server_dir / 'pickup'
    pickup.mkdir()
    (pickup / 'grow.py').write_text(GROW_SERVICE)
    server.start()
    # The ceiling: just above what a fresh worker holds, set by a reload.
    fresh = read_rss(server.worker_pids()[0])
    ceiling = fresh + 64 * 1024 ** 2
    conf = server.server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace('workers = 1', f'workers = 1\nmax_worker_memory = {ceiling}'))
    server.signal(signal.SIGHUP)
    wait_until(lambda: 'Reload complete' in server.log(), message='the reload')
    server.wait_ready()
    [big] = server.worker_pids()
    assert read_rss(big) < ceiling

    clients = [Client(server.port) for _ in range(2)]
    run_clients(clients)
    try:
        status, _, body = request(server.port, 'POST', '/services/test.memory.grow',
                                  json.dumps({'bytes': 128 * 1024 ** 2}), JSON)
        assert (status, json.loads(body)) == (200, {'pid': big})
        assert read_rss(big) > ceiling
        wait_until(lambda: f'Worker 1 (pid {big}) uses ' in server.log(), timeout=30,
                   message='the memory warning')
        wait_until(lambda: f'(pid {big}) drained and exited' in server.log(), timeout=30,
                   message='the worker over the ceiling to drain')
        count = sum(len(client.results) for client in clients)
        wait_until(lambda: sum(len(client.results) for client in clients) > count + 50,
                   message='requests after the replacement')
    finally:
        join_clients(clients)
    [line] = [line for line in server.log().splitlines() if f'Worker 1 (pid {big}) uses ' in line]
    assert ' WARNING master:' in line
    assert f'of resident memory, over max_worker_memory {ceiling / 1024 ** 2:.1f} MiB ({ceiling} bytes); ' \
           f'replacing it' in line
    server.wait_ready()
    [new] = server.worker_pids()
    assert new != big and read_rss(new) < ceiling
