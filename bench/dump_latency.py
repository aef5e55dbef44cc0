"""Latency of requests while the server writes dumps: wrk against zato-daemon, with and
without a SIGURG to the master every second (each one makes every process dump).

    .venv/bin/python bench/dump_latency.py [--workers 2] [--seconds 10] [--rounds 3]
"""

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import REPO, WRK_SCRIPT, Server, free_port, run_wrk, zato_server_dir  # noqa: E402


def signal_every_second(pid, stop):
    while not stop.wait(1.0):
        os.kill(pid, signal.SIGURG)


def one_run(workdir, workers, seconds, with_dumps):
    port = free_port()
    server_dir = zato_server_dir(workdir, port, workers)
    command = [sys.executable, '-m', 'zato_daemon', 'start', str(server_dir), '--fg']
    with Server('zato-daemon', command, port, REPO, dict(os.environ, PYTHONPATH=str(REPO))) as server:
        run_wrk(port, '/echo', 1, workdir / 'post.lua')
        stop = threading.Event()
        if with_dumps:
            threading.Thread(target=signal_every_second, args=(server.process.pid, stop), daemon=True).start()
        try:
            result = run_wrk(port, '/echo', seconds, workdir / 'post.lua')
        finally:
            stop.set()
        dumps = (server_dir / 'logs' / 'server.log').read_text().count('==== end of zato-daemon dump')
    return result, dumps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--seconds', type=int, default=10)
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(temporary)
        (workdir / 'post.lua').write_text(WRK_SCRIPT)
        rows = {False: [], True: []}
        dumps = 0
        for _ in range(args.rounds):
            for with_dumps in (False, True):
                result, count = one_run(workdir, args.workers, args.seconds, with_dumps)
                rows[with_dumps].append(result)
                dumps += count if with_dumps else 0
        print(f'{args.workers} worker(s), wrk -t1 -c50, {args.rounds} rounds of {args.seconds} s; '
              f'{dumps} dumps written during the runs with dumps\n')
        print('| | req/s | p50 ms | p99 ms |\n| --- | --- | --- | --- |')
        for with_dumps, label in ((False, 'no dumps'), (True, 'a dump of every process each second')):
            runs = rows[with_dumps]
            print(f'| {label} | {statistics.median(r[0] for r in runs):,.0f} | '
                  f'{statistics.median(r[1] for r in runs):.2f} | {statistics.median(r[2] for r in runs):.2f} |')


if __name__ == '__main__':
    main()
