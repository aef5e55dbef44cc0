"""Connections spread evenly across the workers that accept on one listening socket.

Every worker waits on the same socket (one socket is what systemd's socket activation
passes, and what lets a reload or an upgrade refuse no connection), and whichever worker
the kernel wakes first takes the connection. Left alone, that split wrk's 50 keep-alive
connections 11 to 39 between two workers: one saturated, the other idle, a p99 several
times uvicorn's. So a worker asks, before each accept, whether it holds no more
connections than the least loaded of the others plus SLACK; if not, it leaves the
connection in the backlog for them and asks again shortly (http/listener.py).

What the workers know of each other is a table in shared memory (`LoadTable`): an
anonymous shared mmap the master creates before its first fork, so every worker inherits
it. One slot per worker, assigned by the master at spawn and cleared when it reaps the
worker: the listening socket's identity, the count of open public connections and a
stamp of time.monotonic() (system-wide on Linux, so comparable between processes) that a
greenlet on the worker's hub renews every STAMP_INTERVAL. A worker clears its own slot
when it stops accepting (drain). No locks: a torn or stale read delays one decision.

Slots that do not count: another socket's (during a reload to another address, the old
generation must not wait for the new one's workers, which never accept on its socket),
cleared ones (stamp 0: draining, dead) and stale ones (a blocked hub, a stopped or dead
worker not reaped yet): none of them will accept, and counting them could leave
connections in the backlog behind them. The least loaded worker among those left may
always accept, so some worker always does.

`may_accept` decides from plain values; `LoadTable` and `Slot` do the memory accesses.
"""

import mmap
import os
import socket
import struct
import time

from zato_daemon.config.settings import MAX_WORKERS
from zato_daemon.forks import in_forked_child

# How many more connections than the least loaded other worker a worker may hold and still
# accept: 0 would make the workers take turns at every connection; the kernel wakes all
# of them, and the one refused waits RETRY_DELAY, so a little slack costs nothing and
# keeps a burst of connects from waiting on the other worker's next loop iteration.
SLACK = 2
# Connections waiting to be accepted at which every worker takes them whatever the balance:
# a burst of connects (wrk -c500 at start) is served first and balanced after. With each
# worker taking one connection per turn of its loop while it serves the others, 500 connects
# took about 2 s to be accepted, and the last clients timed out.
BURST = 8
# Load is counted in connections, not in work: the least loaded worker may be the one busy
# with a long call, or out of descriptors, and would take a new connection only between its
# calls (a review measured 350 ms waits behind 0.4 s calls). So a connection this worker has
# been refusing for LONGEST_REFUSAL is taken anyway. Refusals LONGER than REFUSAL_GAP apart
# are about different connections (a busy loop may ask later than the 5 ms retry).
LONGEST_REFUSAL = 0.02
REFUSAL_GAP = 0.1
# What a worker that cannot accept (out of descriptors) shows as its count: nobody waits for it.
UNAVAILABLE = 2 ** 62

# How many connections a worker takes from the queue per wake-up: a burst drains in a few
# turns of the loop, and no worker takes all of it before the others wake.
ACCEPT_BATCH = 32

# struct tcp_info: eight one-byte fields, then u32 tcpi_rto, tcpi_ato, tcpi_snd_mss,
# tcpi_rcv_mss, tcpi_unacked (the accept queue's length, on a listening socket).
_TCPI_UNACKED = 8 + 4 * 4
_TCP_INFO_SIZE = 104

# How often a worker renews its stamp, and how old a stamp may be before its worker is
# taken for blocked or gone. A hub busy with requests runs its timers every few ms; a
# hub blocked half a second accepts nothing, so it must not hold the others back.
STAMP_INTERVAL = 0.1
STALE_AFTER = 0.5
# Slots for every worker that may exist at once: two generations during a reload, each
# with a replacement booting beside every recycled worker.
TABLE_SLOTS = 4 * MAX_WORKERS

# The table's layout, in 8-byte words: word 0 is the number of slots ever assigned (the
# workers read no further); then SLOT_WORDS per slot.
KEY, COUNT, STAMP = 0, 1, 2
SLOT_WORDS = 3
HEADER_WORDS = 1


def may_accept(own_count, own_key, others, now, queued=0, refused_for=0.0, slack=SLACK, stale_after=STALE_AFTER,
               burst=BURST, longest_refusal=LONGEST_REFUSAL):
    """Whether a worker holding `own_count` connections of the socket `own_key` may accept one
    more; `others` are the other slots as (key, count, stamp), `queued` the connections
    waiting in the socket's accept queue (0 when unknown), `refused_for` how long this
    worker has been refusing the connection waiting now."""
    if queued >= burst or refused_for >= longest_refusal:
        return True
    counts = [count for key, count, stamp in others if key == own_key and now - stamp <= stale_after]
    return not counts or own_count <= min(counts) + slack


def refusal_start(started, last_refused, now, gap=REFUSAL_GAP):
    """When the refusals going on now began: `started`, if this worker was last refused no
    longer than `gap` ago (asked again every retry delay, it is the same waiting connection),
    else `now`. None means no refusals going on."""
    return started if started is not None and now - last_refused <= gap else now


def accept_queue_length(sock):
    """Connections waiting in a listening TCP socket's accept queue (Linux reports it as
    tcpi_unacked of TCP_INFO on a listening socket); 0 for other sockets or on any error."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    except OSError:
        return 0
    return struct.unpack_from('I', info, _TCPI_UNACKED)[0] if len(info) >= _TCPI_UNACKED + 4 else 0


def listener_key(sock):
    """What identifies a listening socket across processes: its inode, shared by every
    descriptor of it that fork or dup made. Never 0, the key of a cleared slot."""
    return os.fstat(sock.fileno()).st_ino & 0x7FFFFFFFFFFFFFFF or 1


class LoadTable:
    """The shared table. The master assigns and releases slots (`take`, `release`); each
    worker writes its own through a `Slot`."""

    def __init__(self, slots=TABLE_SLOTS):
        self.slots = slots
        # mmap(-1, ...) is MAP_SHARED | MAP_ANONYMOUS: a fork shares it, it is never copied.
        self.memory = mmap.mmap(-1, 8 * (HEADER_WORDS + SLOT_WORDS * slots))
        self.ints = memoryview(self.memory).cast('q')
        self.floats = memoryview(self.memory).cast('d')
        # In the master only: the slots assigned to a worker (or to one being forked).
        self.taken = set()

    def take(self):
        """A free slot, cleared, or None when every slot is taken (the worker is then not
        counted and never refused: balance degrades, serving does not)."""
        for index in range(self.slots):
            if index not in self.taken:
                self.taken.add(index)
                self.clear(index)
                self.ints[0] = max(self.ints[0], index + 1)
                return index
        return None

    def release(self, index):
        """The slot's worker is gone (or was never forked): it counts no more, and the slot
        can be taken again."""
        if index is not None:
            self.taken.discard(index)
            self.clear(index)

    def clear(self, index):
        base = HEADER_WORDS + SLOT_WORDS * index
        self.ints[base + KEY] = 0
        self.ints[base + COUNT] = 0
        self.floats[base + STAMP] = 0.0

    def write(self, index, key, count, stamp):
        base = HEADER_WORDS + SLOT_WORDS * index
        self.ints[base + KEY] = key
        self.ints[base + COUNT] = count
        self.floats[base + STAMP] = stamp

    def set_count(self, index, count):
        self.ints[HEADER_WORDS + SLOT_WORDS * index + COUNT] = count

    def set_stamp(self, index, stamp):
        self.floats[HEADER_WORDS + SLOT_WORDS * index + STAMP] = stamp

    def others(self, index):
        """(key, count, stamp) of every assigned slot but `index`."""
        ints, floats = self.ints, self.floats
        rows = []
        for other in range(min(ints[0], self.slots)):
            if other != index:
                base = HEADER_WORDS + SLOT_WORDS * other
                rows.append((ints[base + KEY], ints[base + COUNT], floats[base + STAMP]))
        return rows


class Slot:
    """A worker's own slot: it publishes its count and stamp there, and asks `may_accept()`
    before each accept on the shared listening socket.

    Nothing is written from a service's forked child (forks.py): it is a copy of the worker
    whose greenlets may still run, and its writes would land in the worker's slot.
    """

    def __init__(self, table, index, key):
        self.table = table
        self.index = index
        self.key = key
        self.count = 0
        self.is_open = True
        self.is_available = True
        # The refusals going on (balance.refusal_start): since when, and the latest.
        self.refused_since = None
        self.last_refused = 0.0
        table.write(index, key, 0, time.monotonic())

    def publish(self, count):
        self.count = count
        if self.is_open and self.is_available and not in_forked_child():
            self.table.set_count(self.index, count)

    def may_accept(self, queue_length):
        """Asked before each accept; `queue_length()` is only called (a syscall) when the
        counts alone say no."""
        others, now = self.table.others(self.index), time.monotonic()
        if may_accept(self.count, self.key, others, now):
            self.refused_since = None
            return True
        self.refused_since = since = refusal_start(self.refused_since, self.last_refused, now)
        self.last_refused = now
        if may_accept(self.count, self.key, others, now, queue_length(), now - since):
            self.refused_since = None
            return True
        return False

    def set_available(self, is_available):
        """A worker that cannot accept (no descriptor left) shows a count nobody waits for."""
        self.is_available = is_available
        if self.is_open and not in_forked_child():
            self.table.set_count(self.index, self.count if is_available else UNAVAILABLE)

    def accepted(self):
        """Counts a connection from its accept, before its greenlet runs (serve_connection
        publishes the exact count then): the next accept of the same batch must see it."""
        self.publish(self.count + 1)

    def keep_fresh(self, sleep):
        """Runs on the worker's hub until the slot is cleared: while the hub is blocked, the
        stamp ages and the other workers stop waiting for this one."""
        while self.is_open and not in_forked_child():
            self.table.set_stamp(self.index, time.monotonic())
            sleep(STAMP_INTERVAL)

    def clear(self):
        """The worker stops accepting (a drain): it counts no more for the others."""
        self.is_open = False
        if not in_forked_child():
            self.table.clear(self.index)


class NoSlot:
    """A worker without a slot (one worker, or a table full): publishes nothing, always accepts."""

    count = 0

    def publish(self, count):
        pass

    def may_accept(self, queue_length):
        return True

    def accepted(self):
        pass

    def set_available(self, is_available):
        pass

    def keep_fresh(self, sleep):
        pass

    def clear(self):
        pass


NO_SLOT = NoSlot()
