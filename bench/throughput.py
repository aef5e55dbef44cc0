"""HTTP throughput and latency: zato-daemon against gunicorn+gevent and gevent.pywsgi.

    .venv/bin/python bench/throughput.py                 # 1 and 2 workers, 5 rounds of 10 s
    .venv/bin/python bench/throughput.py --workers 1 --rounds 3 --seconds 5
    .venv/bin/python bench/throughput.py --only operability --rounds 7   # features on and off only
    .venv/bin/python bench/throughput.py --only metrics --rounds 7       # [metrics] on and off only
    git worktree add /tmp/zd-old HEAD~3 && \
    .venv/bin/python bench/throughput.py --only versions --against /tmp/zd-old   # this tree vs an older one

Each server runs on 127.0.0.1 with the same number of worker processes and echoes a
50-byte JSON POST back as JSON: zato-daemon's demo.echo on its /echo channel, the same
as a WSGI app under gunicorn's gevent worker, and under bare gevent.pywsgi (TCP_NODELAY
on accepted sockets, one pre-forked process per worker). wrk (Debian's) drives them in
alternation, round after round, with one thread and 50 connections; the table gives the
median req/s and the median of the rounds' p50 and p99 latencies, and the ratios to
gunicorn. Needs wrk (`apt-get install wrk`) and gunicorn in the venv (`pip install
gunicorn`).
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BODY = '{"customer": "c-0001", "amount": 12.5, "ok": true}'  # 50 bytes
CONNECTIONS = 50

WSGI_APP = '''\
import json

def app(environ, start_response):
    length = int(environ.get('CONTENT_LENGTH') or 0)
    payload = json.loads(environ['wsgi.input'].read(length)) if length else None
    body = json.dumps(payload).encode()
    start_response('200 OK', [('Content-Type', 'application/json'), ('Content-Length', str(len(body)))])
    return [body]
'''

PYWSGI_SERVER = '''\
import os, socket, sys
from gevent import monkey
workers, port = int(sys.argv[1]), int(sys.argv[2])
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(('127.0.0.1', port))
listener.listen(2048)
for _ in range(workers - 1):
    if os.fork() == 0:
        break
monkey.patch_all()
from gevent import pywsgi
from gevent.socket import socket as gsocket
from wsgi_app import app

class NoDelayServer(pywsgi.WSGIServer):
    def handle(self, client_socket, address):
        client_socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return super().handle(client_socket, address)

NoDelayServer(gsocket(fileno=listener.detach()), app, log=None).serve_forever()
'''

WRK_SCRIPT = f'''\
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
'''


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def wait_for_port(port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(('127.0.0.1', port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f'nothing listens on {port} after {timeout} s')


class Server:
    """One server under test, started in its own process group."""

    def __init__(self, name, command, port, cwd, env=None):
        self.name, self.command, self.port, self.cwd, self.env = name, command, port, cwd, env
        self.process = None

    def __enter__(self):
        self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.port)
        return self

    def __exit__(self, *exc_info):
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


# What "operability features on" means: INFO logging with the call context, sample
# requests/responses (one call in ten, the default) and slow-response tracking; "off"
# turns each of them off. The comparison table of servers runs with them on.
OPERABILITY = {
    'on': '[logging]\nlevel = INFO\n[component_enabled]\nsamples = true\nslow_responses = true\n',
    'off': '[logging]\nlevel = WARNING\n[component_enabled]\nsamples = false\nslow_responses = false\n',
}


def zato_server_dir(workdir, port, workers, operability='on', services_dir=None, metrics=True):
    """A server directory for zato-daemon with the example services on /echo; /metrics (on by
    default, as shipped) on a free port of its own."""
    server_dir = Path(tempfile.mkdtemp(prefix=f'zato-{workers}-{operability}-', dir=workdir))
    paths = f'paths = {services_dir}\n' if services_dir else ''
    (server_dir / 'server.conf').write_text(textwrap.dedent(f'''\
        [main]
        port = {port}
        workers = {workers}
        [services]
        modules = zato_daemon.examples.echo
        ''') + paths + textwrap.dedent('''\
        [channels]
        /echo = demo.echo
        ''') + OPERABILITY[operability] + f'[metrics]\nenabled = {str(metrics).lower()}\nport = {free_port()}\n')
    return server_dir


def servers(workdir, workers, python):
    """name -> factory of a Server, for each contender."""
    zato_port, gunicorn_port, pywsgi_port = free_port(), free_port(), free_port()
    zato_dir = zato_server_dir(workdir, zato_port, workers)
    env = dict(os.environ, PYTHONPATH=f'{REPO}:{workdir}')
    gunicorn = str(Path(python).with_name('gunicorn'))
    return {
        'zato-daemon': lambda: Server('zato-daemon', [python, '-m', 'zato_daemon', 'start', str(zato_dir), '--fg'],
                                      zato_port, REPO, env),
        'gunicorn+gevent': lambda: Server('gunicorn+gevent', [
            gunicorn, '-k', 'gevent', '-w', str(workers), '-b', f'127.0.0.1:{gunicorn_port}', '--log-level',
            'warning', 'wsgi_app:app'], gunicorn_port, workdir, env),
        'gevent.pywsgi': lambda: Server('gevent.pywsgi', [python, str(workdir / 'pywsgi_server.py'), str(workers),
                                                          str(pywsgi_port)], pywsgi_port, workdir, env),
    }, {'zato-daemon': '/echo', 'gunicorn+gevent': '/', 'gevent.pywsgi': '/'}


def run_wrk(port, path, seconds, script):
    """One wrk run; returns (req/s, p50 ms, p99 ms, errors)."""
    output = subprocess.run(['wrk', '-t1', f'-c{CONNECTIONS}', f'-d{seconds}s', '--latency', '-s', str(script),
                             f'http://127.0.0.1:{port}{path}'], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r'Requests/sec:\s+([\d.]+)', output).group(1))
    p50 = _latency_ms(re.search(r'50%\s+([\d.]+\w+)', output).group(1))
    p99 = _latency_ms(re.search(r'99%\s+([\d.]+\w+)', output).group(1))
    errors = re.search(r'Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)', output)
    return rate, p50, p99, errors.group(0) if errors else ''


def _latency_ms(text):
    value, unit = re.fullmatch(r'([\d.]+)(\w+)', text).groups()
    return float(value) * {'us': 0.001, 'ms': 1.0, 's': 1000.0}[unit]


def rss_per_worker_mb(master_pid):
    """RSS of each child of the master, in MB."""
    children = Path(f'/proc/{master_pid}/task/{master_pid}/children').read_text().split()
    sizes = []
    for child in children:
        status = Path(f'/proc/{child}/status').read_text()
        sizes.append(int(re.search(r'VmRSS:\s+(\d+) kB', status).group(1)) / 1024)
    return sizes


def compare(workers, rounds, seconds, python, workdir):
    """Rounds of wrk against each server in turn; returns name -> list of (rate, p50, p99, errors)."""
    factories, paths = servers(workdir, workers, python)
    results = {name: [] for name in factories}
    script = workdir / 'post.lua'
    for _ in range(rounds):
        for name, factory in factories.items():
            with factory() as server:
                run_wrk(server.port, paths[name], 1, script)  # warm-up
                results[name].append(run_wrk(server.port, paths[name], seconds, script))
    return results


def compare_zato(variants, workers, rounds, seconds, python, workdir):
    """zato-daemon variants in alternation: label -> (source tree, operability[, metrics on]);
    returns label -> median req/s."""
    script = workdir / 'post.lua'
    results = {label: [] for label in variants}
    for _ in range(rounds):
        for label, (tree, operability, *metrics) in variants.items():
            port = free_port()
            server_dir = zato_server_dir(workdir, port, workers, operability, metrics=metrics[0] if metrics else True)
            command = [python, '-m', 'zato_daemon', 'start', str(server_dir), '--fg']
            with Server(label, command, port, tree, dict(os.environ, PYTHONPATH=str(tree))):
                run_wrk(port, '/echo', 1, script)
                results[label].append(run_wrk(port, '/echo', seconds, script))
    return {label: statistics.median(r[0] for r in runs) for label, runs in results.items()}


def compare_operability(workers, rounds, seconds, python, workdir):
    """zato-daemon alone, operability features on and off, in alternation."""
    rates = compare_zato({'features on': (REPO, 'on'), 'features off': (REPO, 'off')}, workers, rounds, seconds,
                         python, workdir)
    print(f'\nzato-daemon, {workers} worker(s): operability features on {rates["features on"]:,.0f} req/s, '
          f'off {rates["features off"]:,.0f} req/s ({rates["features on"] / rates["features off"] - 1:+.1%})')


def compare_metrics(workers, rounds, seconds, python, workdir):
    """zato-daemon alone, features on, [metrics] on and off, in alternation."""
    rates = compare_zato({'metrics on': (REPO, 'on', True), 'metrics off': (REPO, 'on', False)}, workers, rounds,
                         seconds, python, workdir)
    print(f'\nzato-daemon, {workers} worker(s): metrics on {rates["metrics on"]:,.0f} req/s, '
          f'off {rates["metrics off"]:,.0f} req/s ({rates["metrics on"] / rates["metrics off"] - 1:+.1%})')


def compare_versions(workers, rounds, seconds, python, workdir, against):
    """This tree against another checkout of zato-daemon (`--against`), features on, in alternation."""
    rates = compare_zato({'this tree': (REPO, 'on'), 'other tree': (Path(against).resolve(), 'on')}, workers,
                         rounds, seconds, python, workdir)
    print(f'\nzato-daemon, {workers} worker(s), features on: this tree {rates["this tree"]:,.0f} req/s, '
          f'{against} {rates["other tree"]:,.0f} req/s ({rates["this tree"] / rates["other tree"] - 1:+.1%})')


SERVICE_MODULE = '''\
from zato_daemon import Service

class Service{number}(Service):
    name = 'bench.service-{number}'

    def handle(self):
        self.response.payload = {{'number': {number}, 'input': self.request.payload}}
'''


def start_to_ready(workers, python, workdir, services=200, runs=5):
    """Seconds from `start --fg` to every worker serving, with `services` deployed; and RSS."""
    services_dir = workdir / f'services-{services}'
    if not services_dir.exists():
        services_dir.mkdir()
        for number in range(services):
            (services_dir / f'service_{number}.py').write_text(SERVICE_MODULE.format(number=number))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    times, rss = [], []
    for _ in range(runs):
        port = free_port()
        server_dir = zato_server_dir(workdir, port, workers, services_dir=services_dir)
        started = time.monotonic()
        process = subprocess.Popen([python, '-m', 'zato_daemon', 'start', str(server_dir), '--fg'], cwd=REPO, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        for line in process.stdout:
            if 'Server ready' in line:
                times.append(time.monotonic() - started)
                break
        rss.extend(rss_per_worker_mb(process.pid))
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    print(f'\nstart to READY with {services} services, {workers} worker(s): median {statistics.median(times):.2f} s '
          f'(min {min(times):.2f}, max {max(times):.2f}, {runs} runs); RSS per worker: median '
          f'{statistics.median(rss):.1f} MB, max {max(rss):.1f} MB')


def print_table(workers, results):
    medians = {name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs),
                      statistics.median(r[2] for r in runs)) for name, runs in results.items()}
    base = medians['gunicorn+gevent']
    print(f'\n{workers} worker(s), wrk -t1 -c{CONNECTIONS}, {len(next(iter(results.values())))} rounds\n')
    print('| server | req/s | p50 ms | p99 ms | req/s vs gunicorn | p99 vs gunicorn | errors |')
    print('| --- | --- | --- | --- | --- | --- | --- |')
    for name, (rate, p50, p99) in medians.items():
        errors = '; '.join(sorted({r[3] for r in results[name] if r[3]})) or '-'
        print(f'| {name} | {rate:,.0f} | {p50:.2f} | {p99:.2f} | {rate / base[0]:.2f}x | {p99 / base[2]:.2f}x | {errors} |')


PARTS = ('compare', 'operability', 'ready', 'versions', 'metrics')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--seconds', type=int, default=10)
    parser.add_argument('--python', default=sys.executable)
    parser.add_argument('--only', nargs='+', choices=PARTS, default=PARTS[:3],
                        help='run these parts only: the three servers compared, features on and off, start to '
                             'READY, this tree against --against')
    parser.add_argument('--against', help='another checkout of zato-daemon (e.g. a git worktree of an older '
                                          'commit), for --only versions')
    args = parser.parse_args()
    if not shutil.which('wrk'):
        sys.exit('wrk is missing: apt-get install wrk')
    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(temporary)
        (workdir / 'wsgi_app.py').write_text(WSGI_APP)
        (workdir / 'pywsgi_server.py').write_text(PYWSGI_SERVER)
        (workdir / 'post.lua').write_text(WRK_SCRIPT)
        for workers in args.workers:
            if 'compare' in args.only:
                print_table(workers, compare(workers, args.rounds, args.seconds, args.python, workdir))
            if 'operability' in args.only:
                compare_operability(workers, args.rounds, args.seconds, args.python, workdir)
            if 'metrics' in args.only:
                compare_metrics(workers, args.rounds, args.seconds, args.python, workdir)
            if 'ready' in args.only:
                start_to_ready(workers, args.python, workdir)
            if 'versions' in args.only:
                if not args.against:
                    sys.exit('--only versions needs --against DIR')
                compare_versions(workers, args.rounds, args.seconds, args.python, workdir, args.against)


if __name__ == '__main__':
    main()
