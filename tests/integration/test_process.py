"""The process model against a real server: workers, titles, restarts, stop and reload."""

import http.client
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.helpers import JSON_HEADERS, call, request, wait_until


def cmdline(pid):
    return Path(f'/proc/{pid}/cmdline').read_bytes().replace(b'\0', b' ').decode().strip()


def parent_of(pid):
    return int(Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[1])


def test_master_and_workers_have_process_titles(server_factory):
    server = server_factory(workers=2)
    workers = server.worker_pids()
    assert len(workers) == 2
    assert cmdline(server.pid) == f'zato-daemon: master {server.server_dir}'
    titles = sorted(cmdline(pid) for pid in workers)
    assert titles == [f'zato-daemon: worker 1 {server.server_dir}', f'zato-daemon: worker 2 {server.server_dir}']


def test_workers_are_children_of_the_master_and_gevent_stays_out_of_it(server):
    for pid in server.worker_pids():
        assert parent_of(pid) == server.pid
    master_maps = Path(f'/proc/{server.pid}/maps').read_text()
    worker_maps = Path(f'/proc/{server.worker_pids()[0]}/maps').read_text()
    assert 'gevent' not in master_maps
    assert 'gevent' in worker_maps


def test_dead_worker_is_restarted_and_logged(server):
    [old_pid] = server.worker_pids()
    os.kill(old_pid, signal.SIGKILL)
    new_pids = wait_until(lambda: [pid for pid in server.worker_pids() if pid != old_pid], message='a new worker')
    # Replaced by exactly one ready worker under the same number, a child of the same master,
    # and the killed one is gone (reaped), not merely left out of master.json.
    assert server.worker_pids() == new_pids and len(new_pids) == 1
    assert cmdline(new_pids[0]) == f'zato-daemon: worker 1 {server.server_dir}'
    assert parent_of(new_pids[0]) == server.pid
    assert not Path(f'/proc/{old_pid}').exists()
    assert call(server.port, 'demo.echo', {'after': 'restart'})[2] == {'after': 'restart'}
    assert f'Worker 1 (pid {old_pid}) was killed by SIGKILL; restarting it' in server.log()


def test_quick_failures_double_the_respawn_delay(server):
    first = server.worker_pids()[0]
    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: [pid for pid in server.worker_pids() if pid != first], message='a new worker')[0]
    os.kill(second, signal.SIGKILL)
    wait_until(lambda: [pid for pid in server.worker_pids() if pid not in (first, second)], message='a third worker')
    assert 'restarting it in 0.1 s' in server.log()
    assert f'Worker 1 (pid {second}) was killed by SIGKILL; restarting it in 0.2 s' in server.log()


def test_graceful_stop_finishes_the_request_in_flight(server):
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(call, server.port, 'demo.sleep', {'seconds': 1.5})
        wait_until(lambda: 'Sleeping for 1.500 s' in server.log(), message='the request to be in flight')
        server.signal(signal.SIGTERM)
        status, _, body = in_flight.result(timeout=20)
    assert (status, body) == (200, {'slept': 1.5})
    assert server.wait_exit() == 0
    # The socket is closed: nothing accepts connections any more.
    with pytest.raises(OSError):
        request(server.port, 'GET', '/zato/ping', timeout=2)
    assert 'Stopping gracefully: SIGTERM received' in server.log()
    assert not (server.server_dir / 'run' / 'zato-daemon.pid').exists()


def test_sigint_stops_quickly_without_waiting_for_requests(server):
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(call, server.port, 'demo.sleep', {'seconds': 30})
        wait_until(lambda: 'Sleeping for 30.000 s' in server.log(), message='the request to be in flight')
        started = time.monotonic()
        server.signal(signal.SIGINT)
        assert server.wait_exit() == 0
        assert time.monotonic() - started < 10
        with pytest.raises((OSError, http.client.HTTPException)):
            in_flight.result(timeout=20)


def _hammer(port, stop_event, results):
    """Sends requests on keep-alive connections and on new ones until told to stop."""
    connection = None
    number = 0
    while not stop_event.is_set():
        number += 1
        try:
            if connection is None or number % 5 == 0:
                if connection is not None:
                    connection.close()
                connection = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
            connection.request('POST', '/services/demo.echo', json.dumps({'n': number}), JSON_HEADERS)
            response = connection.getresponse()
            body = response.read()
            results.append((response.status, json.loads(body) == {'n': number}))
            if response.getheader('connection', '').lower() == 'close':
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException) as exc:
            results.append(('error', repr(exc)))
            connection = None
    if connection is not None:
        connection.close()


def test_reload_replaces_workers_without_dropping_a_request(server_factory):
    server = server_factory(workers=2)
    old_pids = server.worker_pids()
    stop_event = threading.Event()
    results = []
    clients = [threading.Thread(target=_hammer, args=(server.port, stop_event, results)) for _ in range(4)]
    for client in clients:
        client.start()
    try:
        wait_until(lambda: len(results) > 50, message='requests before the reload')
        for _ in range(2):
            before = set(server.worker_pids())
            server.signal(signal.SIGHUP)
            wait_until(lambda: set(server.worker_pids()).isdisjoint(before) and len(server.worker_pids()) == 2,
                       message='a new generation of workers')
        count = len(results)
        wait_until(lambda: len(results) > count + 50, message='requests after the reload')
    finally:
        stop_event.set()
        for client in clients:
            client.join(30)
    failures = [result for result in results if result != (200, True)]
    assert not failures, f'{len(failures)} of {len(results)} requests failed: {failures[:5]}'
    assert set(server.worker_pids()).isdisjoint(old_pids)
    assert server.log().count('Reload complete') == 2


def test_reload_applies_a_changed_config(server):
    conf = server.server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace('/echo = demo.echo', '/echo = demo.echo\n/echo2 = demo.echo'))
    server.signal(signal.SIGHUP)
    wait_until(lambda: request(server.port, 'POST', '/echo2', b'{}')[0] == 200, message='the new channel')


def test_reload_with_a_broken_config_keeps_serving(server):
    conf = server.server_dir / 'server.conf'
    old_pids = server.worker_pids()
    conf.write_text(conf.read_text().replace('workers = 1', 'workers = many'))
    server.signal(signal.SIGHUP)
    wait_until(lambda: 'Reload refused' in server.log(), message='the refusal in the log')
    assert "workers" in server.log().split('Reload refused')[1].splitlines()[0]
    assert server.worker_pids() == old_pids
    assert call(server.port, 'demo.echo', {'still': 'here'})[2] == {'still': 'here'}
