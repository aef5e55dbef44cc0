"""Time and bytes to collect and render a SIGURG dump of many idle greenlets (issue 6).

    .venv/bin/python bench/dump.py [COUNT ...]      # default: 1000 10000
    /usr/bin/python3 bench/dump.py                  # Debian 12's gevent and greenlet

Goal: 10,000 greenlets in < 150 ms and < 1 MB. Each greenlet waits like a served keep-alive
connection: three nested frames with a few locals, half in gevent.sleep() and half in an
Event.wait(). A second scenario spreads them over 100 stack depths, so that there are 100
groups instead of 2. The dump runs in a real OS thread while the main thread is blocked and
the hub does not run, as in a hung worker; the table gives the median of ROUNDS dumps.
"""

import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gevent  # noqa: E402
import greenlet  # noqa: E402
from gevent.event import Event  # noqa: E402

from zato_daemon.dump.collect import collect, os_thread_ident  # noqa: E402
from zato_daemon.dump.render import DEFAULT_BUDGET_BYTES, group_greenlets, render_text  # noqa: E402

ROUNDS = 5
DEFAULT_COUNTS = (1000, 10000)


def handle_connection(number, depth, event):
    request = {'id': number, 'path': '/api/orders', 'headers': {'Authorization': 'Bearer abc', 'Accept': '*/*'}}
    return read_request(request, depth, event)


def read_request(request, depth, event):
    if depth:
        return read_request(request, depth - 1, event)
    buffer = bytearray(4096)
    return wait_for_data(request, buffer, event)


def wait_for_data(request, buffer, event):
    timeout = 3600
    if request['id'] % 2:
        gevent.sleep(timeout)
    else:
        event.wait(timeout)
    return buffer


def park(count, depths):
    """`count` greenlets, suspended; the event that would release half of them."""
    event = Event()
    greenlets = [gevent.spawn(handle_connection, number, number % depths, event) for number in range(count)]
    gevent.sleep(0)
    return greenlets, event


def dump_once(main_ident):
    """(collect seconds, render seconds, text bytes, groups, unbounded bytes), from a real thread."""
    results = []

    def run():
        started = time.perf_counter()
        dump = collect(main_ident, 'worker', '/srv/zato')
        collected = time.perf_counter()
        text = render_text(dump)
        rendered = time.perf_counter()
        unbounded = render_text(dump, budget_bytes=None)
        results.append((collected - started, rendered - collected, len(text.encode()),
                        len(group_greenlets(dump.greenlets)), len(unbounded.encode())))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()  # blocks the main thread and its hub, as a CPU-bound greenlet would
    return results[0]


def measure(count, depths):
    greenlets, event = park(count, depths)
    try:
        rounds = [dump_once(os_thread_ident()) for _ in range(ROUNDS)]
    finally:
        gevent.killall(greenlets)
    return [statistics.median(column) for column in zip(*rounds)]


def main(counts):
    print(f'Python {sys.version.split()[0]}, gevent {gevent.__version__}, greenlet {greenlet.__version__}; '
          f'budget {DEFAULT_BUDGET_BYTES:,} bytes; median of {ROUNDS}')
    print('| greenlets | stacks | collect ms | render ms | total ms | text bytes | groups | unbounded bytes |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- |')
    for count in counts:
        for depths, label in ((1, 'idle, 2 kinds'), (100, '100 depths')):
            collect_time, render_time, size, groups, unbounded = measure(count, depths)
            print(f'| {count:,} | {label} | {collect_time * 1000:.1f} | {render_time * 1000:.1f} | '
                  f'{(collect_time + render_time) * 1000:.1f} | {size:,.0f} | {groups:.0f} | {unbounded:,.0f} |')


if __name__ == '__main__':
    main([int(arg) for arg in sys.argv[1:]] or DEFAULT_COUNTS)
