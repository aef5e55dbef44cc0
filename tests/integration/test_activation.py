"""Socket activation against a real server: systemd-socket-activate holds the listening socket
and passes it as systemd does (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES); the master serves on it,
says so, warns when server.conf names another address, and keeps it across a reload.

Queueing across a restart needs systemd itself holding the socket: tests/system/test_activation.py."""

import shutil
import signal
import socket
import subprocess
import sys
import threading

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.helpers import ServerProcess, _env, call, free_port, wait_until, write_server_dir

pytestmark = pytest.mark.skipif(shutil.which('systemd-socket-activate') is None,
                                reason='systemd-socket-activate (package systemd) is not installed')


class ActivatedServer(ServerProcess):
    """`zato-daemon start DIR --fg` exec'd by systemd-socket-activate on the first connection."""

    def __init__(self, server_dir, port, names='http'):
        super().__init__(server_dir, port)
        self.names = names

    def start(self, wait=True):
        output = open(self.output_path, 'ab')
        self.process = subprocess.Popen(
            ['systemd-socket-activate', '-l', f'127.0.0.1:{self.port}', f'--fdname={self.names}',
             sys.executable, '-m', 'zato_daemon', 'start', str(self.server_dir), '--fg'],
            stdout=output, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=_env(), start_new_session=True)
        output.close()
        wait_until(lambda: 'Listening on' in self.output(), message='systemd-socket-activate to listen')
        return self


@pytest.fixture
def activated(tmp_path):
    servers = []

    def make(configured_port=None, **options):
        port = free_port()
        server_dir = write_server_dir(tmp_path / f's{len(servers)}', configured_port or port, workers=2, **options)
        server = ActivatedServer(server_dir, port)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


def test_the_passed_socket_is_served_and_the_first_connection_waits_for_the_start(activated):
    server = activated()
    # This call is the connection that makes systemd-socket-activate exec the server: it waits
    # in the backlog while the master starts, and is answered.
    assert call(server.port, 'demo.echo', {'first': True})[2] == {'first': True}
    server.wait_ready()
    log = server.log()
    assert f'Listening on 127.0.0.1:{server.port}, the socket systemd passed (http)' in log
    assert 'server.conf names' not in log



def test_server_conf_naming_another_port_is_a_warning_and_nothing_is_bound_there(activated):
    configured = free_port()
    server = activated(configured_port=configured)
    assert call(server.port, 'demo.echo', {'n': 1})[2] == {'n': 1}
    server.wait_ready()
    assert (f'server.conf names 127.0.0.1:{configured} but systemd passed 127.0.0.1:{server.port}'
            in server.log())
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(('127.0.0.1', configured), timeout=2).close()


def test_a_reload_keeps_the_passed_socket_even_when_server_conf_moves(activated):
    server = activated()
    assert call(server.port, 'demo.echo', {'n': 1})[2] == {'n': 1}
    server.wait_ready()
    before = set(server.worker_pids())
    conf = server.server_dir / 'server.conf'
    moved = free_port()
    conf.write_text(conf.read_text().replace(f'port = {server.port}', f'port = {moved}'))
    answers = []
    stop = threading.Event()

    def keep_calling():
        while not stop.is_set() and len(answers) < 5000:
            answers.append(call(server.port, 'demo.echo', {'n': len(answers)})[0])
    caller = threading.Thread(target=keep_calling, daemon=True)
    caller.start()
    server.signal(signal.SIGHUP)
    wait_until(lambda: 'Reload complete' in server.log(), timeout=30, message='the reload')
    wait_until(lambda: not before & set(server.worker_pids()), message='the old workers to go')
    stop.set()
    caller.join(30)
    assert answers and set(answers) == {200}
    assert 'the socket systemd passed (127.0.0.1:' in server.log() and 'is kept' in server.log()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(('127.0.0.1', moved), timeout=2).close()


def test_a_passed_socket_that_is_not_tcp_is_one_configuration_error(tmp_path):
    port = free_port()
    server_dir = write_server_dir(tmp_path / 's', port)
    output_path = tmp_path / 'output.txt'
    with open(output_path, 'wb') as output:
        process = subprocess.Popen(
            ['systemd-socket-activate', '--datagram', '-l', f'127.0.0.1:{port}', '--fdname=http',
             sys.executable, '-m', 'zato_daemon', 'start', str(server_dir), '--fg'],
            stdout=output, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=_env(), start_new_session=True)
    try:
        wait_until(lambda: 'Listening on' in output_path.read_text(), message='systemd-socket-activate to listen')
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b'x', ('127.0.0.1', port))
        assert process.wait(timeout=60) == 78, output_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    assert 'none a listening TCP stream socket; fix ListenStream= in the socket unit' in output_path.read_text()
