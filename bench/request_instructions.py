"""CPU instructions one request costs, counted by valgrind: repeatable where req/s is not.

    python3 bench/request_instructions.py                       # this tree
    git worktree add /tmp/zd-old HEAD~5
    python3 bench/request_instructions.py --against /tmp/zd-old  # this tree and another one
    python3 bench/request_instructions.py --metrics-cost         # [metrics] on against off

Each run starts one process on Debian's interpreter (python3-* libraries) that serves a
socketpair with the real HttpServer, Router and demo.echo (samples and slow calls on, the
recorder's store stubbed), and sends it the 50-byte JSON POST of bench/throughput.py one
request at a time. callgrind counts the instructions of a run with 0 requests and one with
REQUESTS; the difference divided by REQUESTS is the cost of one request's round trip
(client side included, which both trees share). The shared 2-core machine makes req/s
drift by ±25 % from run to run; instruction counts do not move with the load of the
machine. Needs valgrind (`apt-get install valgrind`); a run takes about a minute.
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REQUESTS = 3000

# The server's side of one worker, set up as the worker does, for a script that has put the
# tree on sys.path and defined `body` and `metrics`: `router` answers `request` (a POST of `body`
# to demo.echo on /echo) with samples and slow calls on, the recorder's store stubbed, and the
# worker's metrics counting when `metrics` is true (`counts`, None otherwise; a tree older
# than the metrics has none). bench/hot_path.py uses it too.
ECHO_ROUTER = r'''
from gevent import monkey
monkey.patch_all()
import logging, tempfile
from pathlib import Path
from zato_daemon.config import load_config
from zato_daemon.deploy.sources import deploy_configured
from zato_daemon.diagnostics.recorder import CallRecorder
from zato_daemon.http.router import Router
from zato_daemon.paths import ServerDir
from zato_daemon.services.host import ServiceHost

class Store:
    def record_slow(self, call): pass
    def record_sample(self, call): pass

config = load_config(Path(tree) / 'etc' / 'zato-daemon')
config.server_config.main.workers = 1
host = ServiceHost(config, ServerDir(Path(tempfile.mkdtemp())))
deploy_configured(host.store, config, (), logging.getLogger('bench'))
recorder = CallRecorder(Store(), config.server_config.diagnostics, {}, host.store, 1)
try:
    from zato_daemon.metrics.counting import WorkerCounts
except ImportError:
    counts = None
    router = Router(host, {'/echo': 'demo.echo'}, recorder=recorder)
else:
    counts = WorkerCounts() if metrics else None
    router = Router(host, {'/echo': 'demo.echo'}, recorder=recorder, counts=counts)
request = (b'POST /echo HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n'
           b'Content-Length: %d\r\n\r\n%s' % (len(body), body))
'''

SERVE = r'''
import socket, sys
tree, count, metrics = sys.argv[1], int(sys.argv[2]), sys.argv[3] == 'on'
sys.path.insert(0, tree)
body = b'{"customer": "c-0001", "amount": 12.5, "ok": true}'
''' + ECHO_ROUTER + r'''
import gevent
from zato_daemon.http.server import HttpServer
http = HttpServer(config.server_config.main, host.dumps_json, logging.getLogger('bench'),
                  **({'counts': counts} if counts is not None else {}))
server_end, client_end = socket.socketpair()
gevent.spawn(http.serve_connection, server_end, router)
for _ in range(count):
    client_end.sendall(request)
    client_end.recv(65536)
'''


def instructions(tree, count, python, metrics='on'):
    result = subprocess.run(['valgrind', '--tool=callgrind', '--callgrind-out-file=/dev/null', python, '-c', SERVE,
                             str(tree), str(count), metrics], capture_output=True, text=True, check=True)
    return int(re.search(r'Collected : (\d+)', result.stderr).group(1))


def per_request(tree, python, metrics='on'):
    return (instructions(tree, REQUESTS, python, metrics) - instructions(tree, 0, python, metrics)) / REQUESTS


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--against', help='another checkout of zato-daemon to count as well')
    parser.add_argument('--python', default='/usr/bin/python3')
    parser.add_argument('--metrics-cost', action='store_true', help='this tree with [metrics] on and off')
    args = parser.parse_args()
    if args.metrics_cost:
        on, off = per_request(REPO, args.python, 'on'), per_request(REPO, args.python, 'off')
        print(f'metrics on: {on:,.0f}, off: {off:,.0f} instructions per request round trip ({on / off - 1:+.1%})')
        return
    this = per_request(REPO, args.python)
    print(f'this tree: {this:,.0f} instructions per request round trip')
    if args.against:
        other = per_request(Path(args.against).resolve(), args.python)
        print(f'{args.against}: {other:,.0f} instructions per request round trip ({this / other - 1:+.1%})')


if __name__ == '__main__':
    sys.exit(main())
