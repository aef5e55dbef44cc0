"""The cost of our own Python per request: parsing, routing, JSON, the call, the recorder,
rendering; no sockets, no event loop.

    /usr/bin/python3 bench/hot_path.py                        # 50-byte echo, this tree
    /usr/bin/python3 bench/hot_path.py --body large           # the 10 KB body of bench/compare.py
    git worktree add --detach /tmp/zd-old HEAD~5
    /usr/bin/python3 bench/hot_path.py --against /tmp/zd-old  # this tree and another, alternating
    /usr/bin/python3 bench/hot_path.py --profile              # cProfile, top functions by own time

Each measurement runs in a child process on Debian's interpreter (python3-* libraries) with
the tree on sys.path: RequestParser.feed() of the request bytes and Router.respond() of the
Request, the demo.echo service on /echo, samples and slow calls on (the recorder's store
stubbed: what it writes happens once a second, in the background), INFO logging. The
figure is the best of 5 runs of N requests, in µs per request; trees alternate, so machine
drift hits both alike. Socket and event-loop costs are in bench/request_instructions.py
(instruction counts) and bench/compare.py (req/s and CPU per request under wrk).
"""

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'bench'))

from compare import BODIES  # noqa: E402
from request_instructions import ECHO_ROUTER  # noqa: E402

RUN = r'''
import sys, time
tree, body, count, mode = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), sys.argv[4]
metrics = True  # as shipped
sys.path.insert(0, tree)
''' + ECHO_ROUTER + r'''
from zato_daemon.http.protocol import RequestParser
logging.getLogger().setLevel(logging.INFO)
parser = RequestParser(10_000_000)
[event] = parser.feed(request)
assert b' 200 OK' in router.respond(event, True)[:20]

def run(n):
    for _ in range(n):
        for event in parser.feed(request):
            router.respond(event, True)

run(count // 10)
if mode == 'profile':
    import cProfile, pstats
    profile = cProfile.Profile()
    profile.runcall(run, count)
    pstats.Stats(profile).sort_stats('tottime').print_stats(25)
else:
    best = float('inf')
    for _ in range(5):
        started = time.perf_counter()
        run(count)
        best = min(best, time.perf_counter() - started)
    print(f'{best / count * 1e6:.2f}')
'''


def measure(tree, body, count, python, mode='time'):
    result = subprocess.run([python, '-c', RUN, str(tree), body, str(count), mode], capture_output=True, text=True,
                            check=True, timeout=600)
    return result.stdout if mode == 'profile' else float(result.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--body', choices=sorted(BODIES), default='small')
    parser.add_argument('--against', help='another checkout of zato-daemon, measured in turn with this tree')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--python', default='/usr/bin/python3')
    parser.add_argument('--profile', action='store_true', help='print a cProfile of this tree instead')
    args = parser.parse_args()
    body = BODIES[args.body]
    count = 20_000 if args.body == 'small' else 2_000
    if args.profile:
        print(measure(REPO, body, count, args.python, 'profile'))
        return 0
    trees = [REPO] + ([Path(args.against).resolve()] if args.against else [])
    figures = {tree: [] for tree in trees}
    for _ in range(args.rounds):
        for tree in trees:
            figures[tree].append(measure(tree, body, count, args.python))
    for tree, values in figures.items():
        print(f'{tree}: {min(values):.2f} µs per request ({args.body} body; best of rounds: '
              f'{", ".join(f"{value:.2f}" for value in values)})')
    if args.against:
        this, other = (min(figures[tree]) for tree in trees)
        print(f'this tree against {args.against}: {this / other - 1:+.1%}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
