"""Stress: dump threads and greenlets again and again while they churn frames; counts crashes.

    .venv/bin/python bench/dump_stress.py --seconds 120          # PyPI's gevent and greenlet
    /usr/bin/python3 bench/dump_stress.py --seconds 120          # Debian 12's python3-greenlet
    /usr/bin/python3 bench/dump_stress.py --seconds 60 --no-gc-churn

Each run is a child process (so that a segfault is counted, not fatal) that runs for
--run-seconds: a dump thread calls zato_daemon.dump.collect.collect() (and renders the dump)
in a loop, while other OS threads and the greenlets of one of them keep pushing and popping
frames with every kind of local: closures (cells and free variables), generators,
coroutines, comprehensions, deep recursion, exceptions, locals mutated in place, greenlet
switches, and short-lived threads. The switch interval is 1 us, so the threads take turns on
the GIL as often as possible. A run fails on a crash, on an exception in any of its threads
(such as SystemError from a tuple another thread is building), and when a dump does not end.

Two hazards of CPython 3.11 are fed on purpose (collect.py, Rule 5; both can be turned off):
--gc-churn: cyclic garbage whose collection runs Python code (__del__, generator finally
  blocks, weakref callbacks), and a low gc threshold, so that a collection, and so Python code
  and a GIL switch, can happen inside any allocation of the dump thread - also inside the C
  code that creates a frame object or fills frame.f_locals for another thread's frame.
--snapshots: frames that call locals() and then rebind those names, so that the f_locals
  dict of a frame holds the only reference to an object whose finalizer releases the GIL;
  the dump's frame.f_locals (FastToLocals) drops it while it fills the dict; and threads that
  end right after, which frees their frames' memory.

To see the code before a change fail, run this script from a copy of that tree (the child
imports zato_daemon from the tree the script is in):

    git archive COMMIT | tar -x -C /tmp/old && cp bench/dump_stress.py /tmp/old/bench/
    /usr/bin/python3 /tmp/old/bench/dump_stress.py --seconds 60

Measured on the 2-core development VM (CPython 3.11.2), before and after the fix of Rule 5
(15 s runs; a crashed run ends early, so it makes more runs in the same time):

| collect.py | interpreter | mode | runs | failed | dumps |
| --- | --- | --- | --- | --- | --- |
| before | .venv (greenlet 3.5) | default | 100 | 100 (97 segfaults) | 0 |
| before | .venv | --no-gc-churn | 155 | 155 segfaults | 0 |
| before | /usr/bin/python3 (greenlet 2.0.2) | default | 23 | 23 (22 segfaults) | 0 |
| before | /usr/bin/python3 | --no-gc-churn | 87 | 87 segfaults | 0 |
| after | .venv | default | 11 | 0 | 614 |
| after | /usr/bin/python3 | default | 11 | 0 | 768 |
| after | .venv | --no-gc-churn | 7 | 0 | 2,270 |
| after | /usr/bin/python3 | --no-gc-churn | 7 | 0 | 2,788 |

Every segfault before was in the dump thread, at `frame.f_locals` in collect.py (with
--gc-churn most of them inside a garbage collection: "Garbage-collecting" in faulthandler's
report); one failed run raised AttributeError("'dict' object has no attribute 'f_back'"),
memory corrupted without a crash.
Prints one line per run and a summary: runs, failed runs, dumps made, seconds.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=float, default=60, help='total time (default 60)')
    parser.add_argument('--run-seconds', type=float, default=15, help='time of one child run (default 15)')
    parser.add_argument('--no-gc-churn', dest='gc_churn', action='store_false')
    parser.add_argument('--no-snapshots', dest='snapshots', action='store_false')
    parser.add_argument('--no-greenlets', dest='greenlets', action='store_false')
    parser.add_argument('--gc-threshold', type=int, default=50, help='gc generation 0 threshold with --gc-churn')
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        return child(options)
    return parent(options)


def parent(options):
    deadline = time.monotonic() + options.seconds
    runs = crashes = dumps = 0
    began = time.monotonic()
    arguments = [sys.executable, '-X', 'faulthandler', __file__, '--child', '--run-seconds', str(options.run_seconds),
                 '--gc-threshold', str(options.gc_threshold)]
    arguments += [] if options.gc_churn else ['--no-gc-churn']
    arguments += [] if options.snapshots else ['--no-snapshots']
    arguments += [] if options.greenlets else ['--no-greenlets']
    while time.monotonic() < deadline:
        runs += 1
        started = time.monotonic()
        try:
            result = subprocess.run(arguments, capture_output=True, text=True, cwd=REPO,
                                    timeout=options.run_seconds + 120)
        except subprocess.TimeoutExpired as error:  # killed: counted as a failed run
            result = subprocess.CompletedProcess(arguments, 'timeout', error.stdout or '', 'timed out')
            result.stdout = result.stdout.decode() if isinstance(result.stdout, bytes) else result.stdout
        made = _dumps_made(result.stdout)
        dumps += made
        crashed = result.returncode != 0
        crashes += crashed
        print(f'run {runs}: exit {result.returncode}, {made} dumps, {time.monotonic() - started:.1f} s', flush=True)
        if crashed:
            print(_crash_summary(result.stderr), flush=True)
    print(f'{sys.executable} ({sys.version.split()[0]}): {runs} runs, {crashes} crashed, {dumps} dumps, '
          f'{time.monotonic() - began:.0f} s', flush=True)
    return 1 if crashes else 0


def _dumps_made(stdout):
    for line in stdout.splitlines():
        if line.startswith('dumps '):
            return int(line.split()[1])
    return 0


def _crash_summary(stderr):
    # faulthandler's report: the first line and the crashing thread's stack ("Current thread").
    lines = stderr.splitlines()
    wanted = [line for line in lines if line.startswith(('Fatal Python error', 'python', 'Assertion', 'SystemError'))]
    try:
        start = next(index for index, line in enumerate(lines) if line.startswith('Current thread'))
        wanted += lines[start:start + 14]
    except StopIteration:
        wanted += lines[-14:]
    return '\n'.join(f'    {line}' for line in wanted)


# ---- the child: everything below runs in the process that may crash

def child(options):
    import gc
    import threading

    sys.path.insert(0, str(REPO))
    from zato_daemon.dump.collect import collect, os_thread_ident
    from zato_daemon.dump.render import render_text

    sys.setswitchinterval(1e-6)
    if options.gc_churn:
        gc.set_threshold(options.gc_threshold, 2, 2)
    stop = threading.Event()
    main_ident = os_thread_ident()
    errors = []
    threading.excepthook = lambda hook_arguments: errors.append(repr(hook_arguments.exc_value))
    workers = [churn_frames, churn_exceptions, churn_generators]
    if options.gc_churn:
        workers.append(churn_garbage)
    if options.snapshots:
        workers += [churn_snapshots, churn_short_threads]
    if options.greenlets:
        workers.append(churn_greenlets)
    threads = [threading.Thread(target=_forever, args=(worker, stop), daemon=True) for worker in workers]
    for thread in threads:
        thread.start()
    made = [0]

    def dump_forever():
        while not stop.is_set():
            render_text(collect(main_ident, 'worker', '/tmp'))
            made[0] += 1

    dumper = threading.Thread(target=dump_forever, daemon=True)
    dumper.start()
    # The main thread churns too: its frames are the dumped thread's main thread.
    deadline = time.monotonic() + options.run_seconds
    while time.monotonic() < deadline:
        churn_frames(stop)
    stop.set()
    dumper.join(60)  # the dump under way; the churning threads are daemons, left as they are
    print(f'dumps {made[0]}', flush=True)
    if dumper.is_alive():
        print('the dump thread did not finish its dump within 60 s', file=sys.stderr, flush=True)
        os._exit(4)
    if errors:  # an exception in any thread, e.g. SystemError from a tuple held by gc.get_objects()
        print('\n'.join(errors[:5]), file=sys.stderr, flush=True)
        os._exit(3)
    os._exit(0)  # no interpreter shutdown with a dozen busy daemon threads


def _forever(worker, stop):
    while not stop.is_set():
        worker(stop)


class Finalized:
    """Runs Python code when it dies: a __del__ that calls a function (a GIL switch may follow)."""

    def __init__(self, payload=None):
        self.payload = payload
        self.me = None

    def __del__(self):
        _busy(3)


class Releasing(Finalized):
    """Its __del__ also releases the GIL, as a finalizer that closes a file or a socket does."""

    def __del__(self):
        _busy(3)
        time.sleep(0.0005)


def _busy(count):
    total = 0
    for number in range(count):
        total += _one(number)
    return total


def _one(number):
    return number + 1


def churn_frames(stop):
    # Closures: cell variables of the outer function, free variables of the inner ones.
    counter = 0
    rows = [1, 2, 3]
    table = {'a': [1, 2], 'b': (3, 4)}

    def inner(depth):
        nonlocal counter
        counter += 1
        rows.append(depth)
        table[depth] = rows[-3:]
        if depth:
            return inner(depth - 1)
        return [value * 2 for value in rows[:10]] + list({key: key for key in range(5)})

    for round_number in range(20):
        inner(round_number % 15)
        del rows[:-5]
        table.clear()
        table['x'] = {'y': [round_number]}
        squares = {number: number * number for number in range(10)}
        letters = {letter for letter in 'abcdef'}
        pairs = tuple(zip(rows, rows[1:]))
        del squares, letters, pairs
    return counter


def churn_exceptions(stop):
    for number in range(20):
        try:
            _raise_deep(number % 10, [number] * 3)
        except ValueError as error:
            context = {'error': error, 'args': error.args}
            del context


def _raise_deep(depth, payload):
    local_list = list(payload)
    if depth:
        return _raise_deep(depth - 1, local_list + [depth])
    raise ValueError('deep', local_list)


def churn_generators(stop):
    import asyncio

    def numbers(limit):
        seen = []
        for number in range(limit):
            seen.append(number)
            yield number, seen[-3:]

    total = sum(number for number, _ in numbers(30))

    async def leaf(value):
        items = [value] * 3
        await asyncio.sleep(0)
        return sum(items)

    async def tree(width):
        results = await asyncio.gather(*(leaf(index) for index in range(width)))
        return sum(results)

    return total + asyncio.run(tree(10))


def churn_garbage(stop):
    import weakref

    def holder(box):
        try:
            yield box
        finally:
            _busy(2)

    for _ in range(20):
        box = []
        generator = holder(box)
        next(generator)
        box.append(generator)          # box -> generator -> its frame -> box
        finalized = Finalized([1, 2, 3])
        finalized.me = finalized       # a cycle with __del__
        keeper = Finalized()
        keeper.me = keeper
        keeper.reference = weakref.ref(keeper, lambda reference: _busy(2))
        del box, generator, finalized, keeper


def churn_snapshots(stop):
    for _ in range(20):
        _rebind_after_locals()


def _rebind_after_locals():
    first = Releasing([1, 2])
    second = [Releasing(), Releasing()]
    snapshot = locals()              # the frame's f_locals dict now holds first and second
    first = None                     # ... and is the only holder left
    second = [0]
    _busy(3)
    del snapshot
    for _ in range(10):
        time.sleep(0.0005)           # GIL switches: a dump may run frame.f_locals here
    return first, second


def churn_short_threads(stop):
    # Threads that end while their frames may be read: an ended thread's frame memory is freed.
    import threading

    def short_life(number):
        _rebind_after_locals()
        if number % 2:
            churn_frames(stop)
        return _rebind_after_locals()

    threads = [threading.Thread(target=short_life, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def churn_greenlets(stop):
    import greenlet

    def parked(index):
        label = f'parked {index}'
        numbers = [index] * 4
        while True:
            numbers.append(greenlet.getcurrent().parent.switch(label))
            del numbers[:-4]

    def spinner(rounds):
        rows = []
        for number in range(rounds):
            rows.append(number)
            if number % 50 == 0:
                greenlet.getcurrent().parent.switch(len(rows))
        return rows

    children = [greenlet.greenlet(parked) for _ in range(5)]
    for index, child_greenlet in enumerate(children):
        child_greenlet.switch(index)
    for _ in range(20):
        for child_greenlet in children:
            child_greenlet.switch(len(children))
        spinning = greenlet.greenlet(spinner)
        result = spinning.switch(300)
        while not spinning.dead:
            result = spinning.switch()
        del result
    for child_greenlet in children:
        child_greenlet.throw(greenlet.GreenletExit)


if __name__ == '__main__':
    sys.exit(main())
