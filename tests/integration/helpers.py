"""Real servers for integration tests: a server directory under tmp_path, a free port,
`zato-daemon start --fg` as a subprocess, and polling (never fixed sleeps) until it answers.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests import polling
from tests.conftest import REPO_ROOT

SHIPPED_CONFIG = REPO_ROOT / 'etc' / 'zato-daemon'
EXAMPLE_MODULES = 'zato_daemon.examples.echo, zato_daemon.examples.sleep, zato_daemon.examples.fail'
DEFAULT_WAIT = 30.0


def free_port():
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout=DEFAULT_WAIT, interval=0.05, message='condition'):
    """Polls `predicate` until it returns a true value, which is returned."""
    return polling.wait_until(predicate, timeout, interval, message)


def write_server_dir(path, port, workers=1, main='', sections='', pickup_dir=None, poll_interval=0.1,
                     metrics_port=None):
    """A server directory: server.conf with the examples and a channel, pickup.conf polling fast.

    /metrics listens on a free port (`metrics_port` if given), unless `sections` has [metrics]:
    the default port would be shared by every server of a parallel run."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / 'server.conf').write_text('\n'.join([
        '[main]',
        'host = 127.0.0.1',
        f'port = {port}',
        f'workers = {workers}',
        'graceful_timeout = 10',
        'worker_boot_timeout = 30',
        main,
        '[services]',
        f'modules = {EXAMPLE_MODULES}',
        '',
        '[channels]',
        '/echo = demo.echo',
        '',
        sections,
        '' if '[metrics]' in sections else f'[metrics]\nport = {metrics_port or free_port()}\n',
    ]) + '\n')
    pickup = pickup_dir or (path / 'pickup')
    (path / 'pickup.conf').write_text(
        f'[hot_deploy]\npickup_dir = {pickup}\npoll_interval = {poll_interval}\n')
    return path


def zato_daemon(*args, input=None, timeout=60, check=False):
    """Runs the CLI with this interpreter; returns the CompletedProcess."""
    return subprocess.run([sys.executable, '-m', 'zato_daemon', *map(str, args)], input=input,
                          capture_output=True, text=True, timeout=timeout, check=check, cwd=REPO_ROOT,
                          env=_env())


def _env():
    env = dict(os.environ)
    env['PYTHONPATH'] = str(REPO_ROOT) + os.pathsep + env.get('PYTHONPATH', '')
    for name in ('STATE_DIRECTORY', 'LOGS_DIRECTORY', 'RUNTIME_DIRECTORY', 'INVOCATION_ID', 'NOTIFY_SOCKET'):
        env.pop(name, None)
    return env


class ServerProcess:
    """`zato-daemon start DIR --fg` in a subprocess, its output in a file."""

    def __init__(self, server_dir, port):
        self.server_dir = Path(server_dir)
        self.port = port
        self.output_path = self.server_dir / 'stdout.txt'
        self.process = None

    def start(self, wait=True):
        output = open(self.output_path, 'ab')
        self.process = subprocess.Popen(
            [sys.executable, '-m', 'zato_daemon', 'start', str(self.server_dir), '--fg'],
            stdout=output, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=_env(), start_new_session=True)
        output.close()
        if wait:
            self.wait_ready()
        return self

    @property
    def pid(self):
        return self.process.pid

    def output(self):
        return self.output_path.read_text(errors='replace')

    def log(self):
        path = self.server_dir / 'logs' / 'server.log'
        return path.read_text(errors='replace') if path.exists() else ''

    def status(self):
        try:
            return json.loads((self.server_dir / 'run' / 'master.json').read_text())
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout=DEFAULT_WAIT):
        """Until every worker reported ready and /zato/ping answers."""
        def is_ready():
            if self.process.poll() is not None:
                raise AssertionError(f'server exited with {self.process.returncode}:\n{self.output()}')
            status = self.status()
            if not status or not status['workers']:
                return False
            if any(worker['state'] != 'ready' for worker in status['workers']):
                return False
            try:
                return request(self.port, 'GET', '/zato/ping')[0] == 200
            except OSError:
                return False
        wait_until(is_ready, timeout, message='the server to be ready')
        return self

    def worker_pids(self):
        return sorted(worker['pid'] for worker in (self.status() or {}).get('workers', [])
                      if worker['state'] == 'ready')

    def signal(self, signum):
        os.kill(self.process.pid, signum)

    def wait_exit(self, timeout=DEFAULT_WAIT):
        return self.process.wait(timeout)

    def stop(self):
        """Stops the server if it still runs; kills its whole process group if it must."""
        if self.process is None or self.process.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


# What a service call declares, as the server requires (a body of any other type is 415).
JSON_HEADERS = {'Content-Type': 'application/json'}


def request(port, method, path, body=None, headers=None, timeout=10.0):
    """One HTTP request on a new connection; returns (status, headers dict, body bytes).

    A POST declares a JSON body unless `headers` is given.
    """
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    if headers is None:
        headers = JSON_HEADERS if method == 'POST' else {}
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        connection.request(method, path, body, headers)
        response = connection.getresponse()
        return response.status, {key.lower(): value for key, value in response.getheaders()}, response.read()
    finally:
        connection.close()


def call(port, service, payload=None):
    """POSTs a JSON payload to /services/<service>; returns (status, headers, parsed body or None)."""
    status, headers, body = request(port, 'POST', f'/services/{service}', payload if payload is not None else b'')
    return status, headers, (json.loads(body) if body else None)
