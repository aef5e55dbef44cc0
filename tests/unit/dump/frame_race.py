"""A thread's frame that goes away while a dump reads its variables; run by test_collect.py.

    python -m tests.unit.dump.frame_race ended|reused

Runs in a process of its own, because the failure it looks for is a segfault. The victim
thread calls locals() (the frame's f_locals dict then holds `doomed`) and drops `doomed`,
so the dict holds its last reference; then the main thread collects a dump. If reading
frame.f_locals (FastToLocals on CPython 3.11) frees `doomed` inside its C code, the finalizer
runs there and lets the victim return from that frame while the C code still points to it:
- ended: the victim thread then ends, its frame memory is unmapped: a segfault;
- reused: the victim calls other functions, whose frames take the same memory: the dump
  shows their values under the victim's names (or crashes on a stale pointer).
No timing: the finalizer waits for the victim by events and join(). Prints the victim's
variables as the dump shows them, as JSON, then 'survived'.
"""

import json
import sys
import threading

from zato_daemon.dump.collect import collect, os_thread_ident

released = threading.Event()
stomped = threading.Event()
finish = threading.Event()
victims = []


class Doomed:
    def __del__(self):
        released.set()
        if sys.argv[1] == 'ended':
            victims[0].join(30)
        else:
            stomped.wait(30)


def victim(ready, count):
    doomed = Doomed()
    rows = [1, 2, 3]
    table = {'name': 'value'}
    pair = (4, 5)
    snapshot = locals()
    doomed = None
    del snapshot
    ready.set()
    released.wait(30)
    return count, doomed, rows, table, pair


def stomp(count):
    shapes = [[number] * 3 for number in range(count)] + [(number,) for number in range(count)]
    stomped.set()
    finish.wait(30)
    return shapes


def run_victim(ready):
    victim(ready, 7)
    if sys.argv[1] == 'reused':
        stomp(40)


def main():
    ready = threading.Event()
    thread = threading.Thread(target=run_victim, args=(ready,))
    victims.append(thread)
    thread.start()
    ready.wait(30)
    dump = collect(os_thread_ident(), 'worker', '/nonexistent', include_greenlets=False)
    finish.set()
    thread.join(30)
    frame = next(frame for info in dump.threads for frame in info.frames if frame.function == 'victim')
    print(json.dumps({'arguments': dict(frame.arguments), 'locals': dict(frame.locals)}, sort_keys=True))
    print('survived')


if __name__ == '__main__':
    main()
