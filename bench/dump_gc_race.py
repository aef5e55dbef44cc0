"""Shows the garbage-collection hazard of collect.py's Rule 5 on CPython 3.11, deterministically.

    /usr/bin/python3 -X faulthandler bench/dump_gc_race.py      # after the fix: "survived"

A collection that starts inside the C code of `frame.f_back` (which creates a frame object)
runs Python code there: here a gc callback, standing for any finalizer. It releases the GIL
and waits for the victim thread to return from the frame being read and end, as any thread
may when the GIL is released. The C code then goes on with a pointer into the ended thread's
freed frame memory. Before the fix this segfaulted every time, in `_walk` at `frame.f_back`;
the callback recognizes that moment by the name of the collect.py function that allocated
(`_walk`) and its local `frame`. After the fix no collection runs inside collect(), so the
trap never fires ("trap not fired", then "survived").

To run it against another tree: REPO=/path/to/tree python3 bench/dump_gc_race.py
"""

import gc
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, os.environ.get('REPO', str(Path(__file__).resolve().parents[1])))

from zato_daemon.dump.collect import collect, os_thread_ident  # noqa: E402

go = threading.Event()
armed = [True]


def trap(phase, info):
    if phase != 'start' or not armed[0]:
        return
    caller = sys._getframe(1)
    if caller.f_code.co_name != '_walk':
        return
    frame = caller.f_locals.get('frame')
    if frame is not None and frame.f_code.co_name in ('victim', 'inner'):
        armed[0] = False
        go.set()
        time.sleep(0.2)  # as a finalizer that blocks would: the victim returns and its thread ends


def victim(ready):
    rows = [1, 2, 3]
    return inner(ready, rows)


def inner(ready, rows):
    ready.set()
    go.wait(30)
    return rows


def main():
    ready = threading.Event()
    thread = threading.Thread(target=victim, args=(ready,))
    thread.start()
    ready.wait()
    thresholds = gc.get_threshold()
    gc.callbacks.append(trap)
    gc.set_threshold(1, 1000, 1000)  # a collection at nearly every allocation
    try:
        collect(os_thread_ident(), 'worker', '/nonexistent', include_greenlets=False)
    finally:
        gc.set_threshold(*thresholds)
        gc.callbacks.remove(trap)
        go.set()
        thread.join()
    print('trap fired' if not armed[0] else 'trap not fired')
    print('survived')


if __name__ == '__main__':
    main()
