"""CPU instructions one request costs, counted by valgrind: repeatable where req/s is not.

    python3 bench/request_instructions.py                       # this tree
    git worktree add /tmp/zd-old HEAD~5
    python3 bench/request_instructions.py --against /tmp/zd-old  # this tree and another one

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
# tree on sys.path and defined `body`: `router` answers `request` (a POST of `body` to demo.echo
# on /echo) with samples and slow calls on, the recorder's store stubbed. bench/hot_path.py
# uses it too.
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
router = Router(host, {'/echo': 'demo.echo'}, recorder=recorder)
request = (b'POST /echo HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n'
           b'Content-Length: %d\r\n\r\n%s' % (len(body), body))
'''

SERVE = r'''
import socket, sys
tree, count = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, tree)
body = b'{"customer": "c-0001", "amount": 12.5, "ok": true}'
''' + ECHO_ROUTER + r'''
import gevent
from zato_daemon.http.server import HttpServer
http = HttpServer(config.server_config.main, host.dumps_json, logging.getLogger('bench'))
server_end, client_end = socket.socketpair()
gevent.spawn(http.serve_connection, server_end, router)
for _ in range(count):
    client_end.sendall(request)
    client_end.recv(65536)
'''


def instructions(tree, count, python):
    result = subprocess.run(['valgrind', '--tool=callgrind', '--callgrind-out-file=/dev/null', python, '-c', SERVE,
                             str(tree), str(count)], capture_output=True, text=True, check=True)
    return int(re.search(r'Collected : (\d+)', result.stderr).group(1))


def per_request(tree, python):
    return (instructions(tree, REQUESTS, python) - instructions(tree, 0, python)) / REQUESTS


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--against', help='another checkout of zato-daemon to count as well')
    parser.add_argument('--python', default='/usr/bin/python3')
    args = parser.parse_args()
    this = per_request(REPO, args.python)
    print(f'this tree: {this:,.0f} instructions per request round trip')
    if args.against:
        other = per_request(Path(args.against).resolve(), args.python)
        print(f'{args.against}: {other:,.0f} instructions per request round trip ({this / other - 1:+.1%})')


if __name__ == '__main__':
    sys.exit(main())
