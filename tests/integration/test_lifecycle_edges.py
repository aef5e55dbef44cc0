"""Edge cases of start, stop and reload that once lost signals, ports or requests."""

import http.client
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.helpers import JSON_HEADERS, call, free_port, request, wait_until, write_server_dir, zato_daemon


def test_term_while_workers_boot_is_not_lost(server_factory):
    server = server_factory(workers=2, start=False).start(wait=False)
    wait_until(lambda: 'Worker 2 (generation 1) started' in server.log(), message='the second worker to fork')
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=30) == 0
    assert time.monotonic() - started < 10
    assert 'killing them' not in server.log()


def test_hup_during_start_still_reports_ready(server_factory):
    server = server_factory(workers=2, start=False).start(wait=False)
    wait_until(lambda: 'Worker 1 (generation 1) started' in server.log(), message='the first worker to fork')
    server.signal(signal.SIGHUP)
    server.wait_ready()
    wait_until(lambda: 'Server ready' in server.log(), message='the ready line')


def test_graceful_stop_refuses_new_connections_while_draining(server):
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(call, server.port, 'demo.sleep', {'seconds': 2})
        wait_until(lambda: 'Sleeping for 2.000 s' in server.log(), message='the request to be in flight')
        server.signal(signal.SIGTERM)
        wait_until(lambda: 'Stopping gracefully' in server.log(), message='the stop to begin')

        def refused():
            try:
                request(server.port, 'GET', '/zato/ping', timeout=1)
            except ConnectionRefusedError:
                return True
            except ConnectionResetError:
                # Queued in the backlog the moment the last listening copy closed: the kernel
                # resets it. Not served either; the next attempt is refused.
                return False
            return False
        wait_until(refused, timeout=2, message='new connections to be refused')
        assert in_flight.result(timeout=20)[0] == 200
    assert server.wait_exit() == 0


def test_reload_to_another_port_releases_the_old_one(server):
    old_port, new_port = server.port, free_port()
    conf = server.server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace(f'port = {old_port}', f'port = {new_port}'))
    server.signal(signal.SIGHUP)
    wait_until(lambda: 'Reload complete' in server.log(), message='the reload')
    assert call(new_port, 'demo.echo', {'port': 'new'})[2] == {'port': 'new'}

    def old_port_closed():
        with socket.socket() as probe:
            return probe.connect_ex(('127.0.0.1', old_port)) != 0
    wait_until(old_port_closed, message='the old port to be closed')
    # And it can be taken back.
    conf.write_text(conf.read_text().replace(f'port = {new_port}', f'port = {old_port}'))
    server.signal(signal.SIGHUP)
    wait_until(lambda: server.log().count('Reload complete') == 2, message='the second reload')
    assert call(old_port, 'demo.echo', {'port': 'old'})[2] == {'port': 'old'}


def test_reload_with_a_host_name_keeps_the_socket(server_factory):
    server = server_factory(start=False)
    conf = server.server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace('host = 127.0.0.1', 'host = localhost'))
    server.start()
    server.signal(signal.SIGHUP)
    wait_until(lambda: 'Reload complete' in server.log() or 'Reload refused' in server.log(), message='the reload')
    assert 'Reload refused' not in server.log()


def test_idle_keep_alive_connection_survives_a_reload(server):
    connection = http.client.HTTPConnection('127.0.0.1', server.port, timeout=10)
    connection.request('POST', '/services/demo.echo', '{"n": 1}', JSON_HEADERS)
    assert connection.getresponse().read() == b'{"n":1}'
    server.signal(signal.SIGHUP)
    wait_until(lambda: 'Reload complete' in server.log(), message='the reload')
    time.sleep(1.5)  # idle longer than a stop's idle grace, as clients between requests are
    connection.request('POST', '/services/demo.echo', '{"n": 2}', JSON_HEADERS)
    response = connection.getresponse()
    assert (response.status, response.read()) == (200, b'{"n":2}')
    assert response.getheader('Connection') == 'close'
    connection.close()


def test_unwritable_runtime_directory_is_one_line_and_73(tmp_path):
    server_dir = write_server_dir(tmp_path / 's', free_port())
    (server_dir / 'run').write_text('a file where a directory should be')
    result = zato_daemon('start', server_dir, '--fg')
    assert result.returncode == 73
    assert result.stderr.strip().startswith(f'zato-daemon: {server_dir}/run is not a directory; move what is in '
                                            'the way')
    assert len(result.stderr.strip().splitlines()) == 1


def test_unopenable_server_log_fails_before_binding(tmp_path):
    port = free_port()
    server_dir = write_server_dir(tmp_path / 's', port, sections='[logging]\nserver_log = /proc/nope/server.log\n')
    result = zato_daemon('start', server_dir, '--fg')
    assert result.returncode == 73
    assert 'cannot create /proc/nope/server.log: no such directory /proc/nope' in result.stderr
    assert not (server_dir / 'run' / 'zato-daemon.pid').exists()
    assert not (server_dir / 'run' / 'admin.sock').exists()


@pytest.mark.parametrize('foreground', [True, False])
def test_undeployable_service_reason_reaches_the_terminal(tmp_path, foreground):
    broken = tmp_path / 'broken.py'
    broken.write_text('raise RuntimeError("no database")\n')
    server_dir = write_server_dir(tmp_path / 's', free_port())
    conf = server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace('[services]\n', f'[services]\npaths = {broken}\n'))
    result = zato_daemon('start', server_dir, *(['--fg'] if foreground else []))
    assert result.returncode == 78
    if not foreground:
        assert f"{broken}:1: exception while importing: RuntimeError('no database')" in result.stderr
    assert not (server_dir / 'run' / 'zato-daemon.pid').exists()


def test_service_failures_never_take_the_worker_down(server_factory, tmp_path):
    server = server_factory()
    pickup = server.server_dir / 'pickup'
    pickup.mkdir(exist_ok=True)
    (tmp_path / 'bad.py').write_text(
        'import sys\nfrom zato_daemon import Service\n'
        'class Exit(Service):\n    name = "bad.exit"\n    def handle(self):\n        sys.exit(3)\n'
        'class Status(Service):\n    name = "bad.status"\n    def handle(self):\n        self.response.status_code = "201"\n'
        'class Header(Service):\n    name = "bad.header"\n'
        '    def handle(self):\n        self.response.headers["X-A\\r\\nSet-Cookie"] = "evil=1"\n'
        'class Nested(Service):\n    name = "bad.nested"\n    def handle(self):\n        self.invoke("no.such")\n')
    (tmp_path / 'bad.py').rename(pickup / 'bad.py')
    wait_until(lambda: call(server.port, 'bad.exit')[0] != 404, message='the bad services')
    pids = server.worker_pids()
    for name in ('bad.exit', 'bad.status', 'bad.header', 'bad.nested'):
        status, headers, body = call(server.port, name)
        assert status == 500, name
        assert 'set-cookie' not in headers
        assert body['cid'] == headers['x-zato-cid']
    assert server.worker_pids() == pids
    assert "Service bad.nested failed" in server.log() and "no service named 'no.such'" in server.log()


def test_an_aborted_reload_leaves_the_paths_in_effect_in_the_status(server):
    # The CLI's dump, slow and samples read these paths from master.json.
    in_effect = server.status()['server_log']
    (server.server_dir / 'broken.py').write_text("raise RuntimeError('this module cannot be deployed')\n")
    conf = server.server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace('[services]\n', f'[services]\npaths = {server.server_dir}/broken.py\n')
                    + f'\n[logging]\nserver_log = {server.server_dir}/moved.log\n')
    server.signal(signal.SIGHUP)
    wait_until(lambda: 'still serving the previous configuration' in server.log(), message='the reload to fail')
    wait_until(lambda: len(server.status()['workers']) == 1, message='the new worker to be gone')
    assert server.status()['server_log'] == in_effect
    assert call(server.port, 'demo.echo', {'still': 'serving'})[2] == {'still': 'serving'}
