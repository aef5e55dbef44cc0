"""Time of `zato-daemon diagnose` on a worker holding 10,000 greenlets (issue 19).

    .venv/bin/python bench/diagnose_greenlets.py [--greenlets 10000] [--rounds 3]
    /usr/bin/python3 bench/diagnose_greenlets.py      # Debian 12's gevent and greenlet

A real server with one worker; a probe service parks the greenlets, half in gevent.sleep()
and half in Event.wait(), three frames deep, as many keep-alive connections would be. Then,
ROUNDS times: `zato-daemon diagnose DIR --dumps 3 --interval 1 --json` end to end (a new
process: its start, three SIGURG rounds, waiting for and reading every record, the analysis,
the output), and the parts measured in this process on the records that run wrote: reading
them (read_records) and the analysis alone (analysis.analyse). Medians; the record's size too.
The end to end time is mostly the two intervals (2 s): the rest is what diagnose adds.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'bench'))

import gevent  # noqa: E402
import greenlet  # noqa: E402
from throughput import Server, free_port, zato_server_dir  # noqa: E402

from zato_daemon.dump import analysis  # noqa: E402
from zato_daemon.dump.record import read_records  # noqa: E402
from zato_daemon.paths import ServerDir  # noqa: E402

PROBE = '''\
import gevent
import gevent.event

from zato_daemon import Service

KEPT = []
EVENT = gevent.event.Event()


def handle_connection(number):
    request = {'id': number, 'path': '/api/orders'}
    return read_request(request)


def read_request(request):
    buffer = bytearray(4096)
    return wait_for_data(request, buffer)


def wait_for_data(request, buffer):
    if request['id'] % 2:
        gevent.sleep(3600)
    else:
        EVENT.wait(3600)
    return buffer


class Park(Service):
    name = 'bench.park'

    def handle(self):
        count = self.request.payload['count']
        KEPT.extend(gevent.spawn(handle_connection, number) for number in range(count))
        gevent.sleep(0)
        self.response.payload = {'parked': len(KEPT)}
'''


def call(port, service, payload):
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
    try:
        connection.request('POST', f'/services/{service}', json.dumps(payload), {'Content-Type': 'application/json'})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_ready(server_dir, port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = json.loads((server_dir / 'run' / 'master.json').read_text())
            if status['workers'] and all(worker['state'] == 'ready' for worker in status['workers']):
                if call(port, 'bench.park', {'count': 0})[0] == 200:
                    return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise SystemExit('the server did not get ready')


def one_diagnose(python, server_dir):
    started = time.perf_counter()
    result = subprocess.run([python, '-m', 'zato_daemon', 'diagnose', str(server_dir), '--dumps', '3', '--interval',
                             '1', '--json'], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    elapsed = time.perf_counter() - started
    if result.returncode not in (0, 1):
        raise SystemExit(f'diagnose exited {result.returncode}: {result.stderr}')
    return elapsed, json.loads(result.stdout)


def measure_parts(directory, since):
    started = time.perf_counter()
    records = read_records(directory, since=since)
    read = time.perf_counter() - started
    started = time.perf_counter()
    analysis.analyse(records)
    analysed = time.perf_counter() - started
    return read, analysed, len(records)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--greenlets', type=int, default=10_000)
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix='zato-diagnose-bench-') as workdir:
        services = Path(workdir) / 'services'
        services.mkdir()
        (services / 'bench_park.py').write_text(PROBE)
        port = free_port()
        server_dir = zato_server_dir(Path(workdir), port, 1, services_dir=services)
        command = [python, '-m', 'zato_daemon', 'start', str(server_dir), '--fg']
        with Server('zato-daemon', command, port, REPO, dict(os.environ, PYTHONPATH=str(REPO))):
            wait_ready(server_dir, port)
            status, body = call(port, 'bench.park', {'count': args.greenlets})
            assert status == 200, body
            rows = []
            for _ in range(args.rounds):
                since = time.time()
                elapsed, report = one_diagnose(python, server_dir)
                read, analysed, records = measure_parts(ServerDir(server_dir).dump_records, since)
                worker = [process for process in report['processes'] if process['role'] != 'master'][0]
                rows.append((elapsed, read, analysed, records, worker['greenlets'], len(report['findings'])))
            sizes = [path.stat().st_size for path in ServerDir(server_dir).dump_records.glob('*.json')]
    print(f'Python {sys.version.split()[0]}, gevent {gevent.__version__}, greenlet {greenlet.__version__}; '
          f'median of {args.rounds} runs of diagnose --dumps 3 --interval 1')
    print('| greenlets in the worker | end to end s | of which intervals s | records | reading them ms | '
          'analysis ms | findings | largest record bytes |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- |')
    elapsed, read, analysed, records, greenlets, findings = (statistics.median(column) for column in zip(*rows))
    print(f'| {greenlets:,.0f} | {elapsed:.2f} | 2.00 | {records:.0f} | {read * 1000:.0f} | {analysed * 1000:.0f} | '
          f'{findings:.0f} | {max(sizes):,} |')


if __name__ == '__main__':
    main()
