"""Connections spread across workers (http/balance.py): the decision case by case, the shared
table across a real fork, and the listener that leaves a connection in the backlog when
the decision says no."""

import os
import socket

import gevent
import pytest
from gevent.event import Event
from gevent.socket import socket as gevent_socket

from zato_daemon.http import balance
from zato_daemon.http.balance import (BURST, LONGEST_REFUSAL, NO_SLOT, REFUSAL_GAP, SLACK, STALE_AFTER,
                                      UNAVAILABLE, LoadTable, Slot, accept_queue_length, listener_key,
                                      may_accept, refusal_start)
from zato_daemon.http.listener import BALANCE_RETRY_DELAY, Listener

NOW = 1000.0
KEY = 7
OTHER_KEY = 8


def fresh(count, key=KEY):
    return key, count, NOW - 0.1


# ---- the decision

@pytest.mark.parametrize('own', [0, 1, 500])
def test_a_worker_alone_on_its_socket_always_accepts(own):
    assert may_accept(own, KEY, [], NOW)


@pytest.mark.parametrize('count', [0, 3, 25])
def test_equal_counts_accept(count):
    assert may_accept(count, KEY, [fresh(count)], NOW)


def test_up_to_the_slack_over_the_least_loaded_accepts_and_one_more_refuses():
    assert may_accept(10 + SLACK, KEY, [fresh(10)], NOW)
    assert not may_accept(10 + SLACK + 1, KEY, [fresh(10)], NOW)


def test_the_least_loaded_of_the_others_is_the_measure():
    others = [fresh(30), fresh(4), fresh(12)]
    assert may_accept(4 + SLACK, KEY, others, NOW)
    assert not may_accept(5 + SLACK, KEY, others, NOW)


def test_the_slack_is_a_parameter():
    assert may_accept(3, KEY, [fresh(3)], NOW, slack=0)
    assert not may_accept(4, KEY, [fresh(3)], NOW, slack=0)


@pytest.mark.parametrize('queued, expected', [(0, False), (BURST - 1, False), (BURST, True), (500, True)])
def test_a_long_accept_queue_is_taken_whatever_the_balance(queued, expected):
    assert may_accept(40, KEY, [fresh(0)], NOW, queued) is expected


@pytest.mark.parametrize('refused_for, expected', [(0.0, False), (LONGEST_REFUSAL / 2, False),
                                                    (LONGEST_REFUSAL, True), (5.0, True)])
def test_a_connection_refused_long_enough_is_taken_whatever_the_balance(refused_for, expected):
    assert may_accept(40, KEY, [fresh(0)], NOW, 0, refused_for) is expected


@pytest.mark.parametrize('started, last, expected', [
    (None, 0.0, NOW),                                 # no refusals going on: they start now
    (NOW - 0.5, NOW - REFUSAL_GAP / 2, NOW - 0.5),    # asked again soon: the same connection waiting
    (NOW - 0.5, NOW - REFUSAL_GAP * 2, NOW),          # a long pause: someone took it, a new one waits
])
def test_refusals_start_again_after_a_pause(started, last, expected):
    assert refusal_start(started, last, NOW) == expected


def test_the_accept_queue_length_is_what_waits_in_the_kernel():
    with socket.create_server(('127.0.0.1', 0), backlog=64) as server:
        assert accept_queue_length(server) == 0
        clients = [socket.create_connection(server.getsockname()) for _ in range(5)]
        try:
            assert accept_queue_length(server) == 5
            server.accept()[0].close()
            assert accept_queue_length(server) == 4
        finally:
            for client in clients:
                client.close()


def test_the_accept_queue_of_a_unix_socket_is_unknown():
    left, right = socket.socketpair()
    with left, right:
        assert accept_queue_length(left) == 0


@pytest.mark.parametrize('counts', [[0, 0], [25, 25], [0, 40, 3], [9, 2, 2, 30], [100, 0]])
def test_the_least_loaded_worker_always_accepts_so_someone_always_does(counts):
    rows = [fresh(count) for count in counts]
    verdicts = [may_accept(count, KEY, rows[:index] + rows[index + 1:], NOW) for index, count in enumerate(counts)]
    assert verdicts[counts.index(min(counts))]


def test_a_stale_slot_is_a_blocked_or_dead_worker_and_does_not_count():
    stale = (KEY, 0, NOW - STALE_AFTER - 0.01)
    assert may_accept(40, KEY, [stale], NOW)
    assert may_accept(40, KEY, [stale, fresh(39)], NOW)
    assert not may_accept(40, KEY, [stale, fresh(20)], NOW)


def test_a_stamp_exactly_at_the_limit_still_counts():
    assert not may_accept(40, KEY, [(KEY, 0, NOW - STALE_AFTER)], NOW)


def test_a_stamp_newer_than_the_readers_clock_counts():
    # The other worker stamped between this one's reading of the clock and of the table.
    assert not may_accept(40, KEY, [(KEY, 0, NOW + 0.001)], NOW)


def test_a_cleared_slot_does_not_count():
    cleared = (0, 0, 0.0)
    assert may_accept(40, KEY, [cleared], NOW)
    assert may_accept(40, KEY, [cleared, cleared, fresh(38)], NOW)


def test_a_slot_of_another_socket_does_not_count():
    # A reload to another address: the old generation must not wait for new workers that
    # never accept on its socket.
    assert may_accept(40, KEY, [fresh(0, key=OTHER_KEY)], NOW)
    assert not may_accept(40, KEY, [fresh(0, key=OTHER_KEY), fresh(0)], NOW)


# ---- the table

def test_slots_are_taken_once_released_and_cleared_and_a_full_table_gives_none():
    table = LoadTable(slots=3)
    assert [table.take(), table.take(), table.take()] == [0, 1, 2]
    assert table.take() is None
    table.write(1, KEY, 5, NOW)
    table.release(1)
    assert table.others(0) == [(0, 0, 0.0), (0, 0, 0.0)]
    assert table.take() == 1
    table.release(None)  # a worker forked without a slot


def test_others_reads_only_the_slots_ever_taken():
    table = LoadTable(slots=50)
    for index in range(3):
        table.take()
    table.write(2, KEY, 9, NOW)
    assert table.others(0) == [(0, 0, 0.0), (KEY, 9, NOW)]


def test_a_forked_workers_slot_is_read_by_the_master_and_the_other_workers():
    table = LoadTable(slots=4)
    mine, theirs = table.take(), table.take()
    pid = os.fork()
    if pid == 0:
        try:
            slot = Slot(table, theirs, KEY)
            slot.publish(17)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    [(key, count, stamp)] = table.others(mine)
    assert (key, count) == (KEY, 17) and stamp > 0
    own = Slot(table, mine, KEY)
    assert own.may_accept(lambda: 0)
    own.publish(17 + SLACK + 1)
    assert not own.may_accept(lambda: 0)
    assert own.may_accept(lambda: BURST)  # a long queue is taken whatever the balance
    table.release(theirs)  # the master reaped it
    assert own.may_accept(lambda: 0)


def test_a_worker_that_stops_accepting_clears_its_slot_and_writes_no_more():
    table = LoadTable(slots=2)
    slot = Slot(table, table.take(), KEY)
    slot.publish(30)
    slot.clear()
    slot.publish(31)
    slot.keep_fresh(lambda seconds: pytest.fail('a cleared slot is not stamped'))
    assert table.others(1) == [(0, 0, 0.0)]


def test_the_stamp_is_renewed_until_the_slot_is_cleared():
    table = LoadTable(slots=2)
    slot = Slot(table, table.take(), KEY)
    table.set_stamp(0, 1.0)
    stamps = []

    def sleep(seconds):
        assert seconds == balance.STAMP_INTERVAL
        stamps.append(table.others(1)[0][2])
        if len(stamps) == 3:
            slot.clear()

    slot.keep_fresh(sleep)
    assert len(stamps) == 3 and all(stamp > 1.0 for stamp in stamps)


def test_a_services_forked_child_writes_nothing_into_its_workers_slot(monkeypatch):
    table = LoadTable(slots=2)
    slot = Slot(table, table.take(), KEY)
    slot.publish(5)
    monkeypatch.setattr(balance, 'in_forked_child', lambda: True)
    slot.publish(0)
    slot.clear()
    slot.keep_fresh(lambda seconds: pytest.fail('the child stamps nothing'))
    assert table.others(1)[0][:2] == (KEY, 5)


def test_no_slot_always_accepts_and_publishes_nothing():
    NO_SLOT.publish(3)
    assert NO_SLOT.may_accept(lambda: 0)


def test_the_key_of_a_listening_socket_is_shared_by_its_copies_and_not_by_another():
    with socket.create_server(('127.0.0.1', 0)) as first, socket.create_server(('127.0.0.1', 0)) as second:
        copy = socket.socket(fileno=os.dup(first.fileno()))
        try:
            assert listener_key(first) == listener_key(copy) != listener_key(second)
            assert listener_key(first) > 0
        finally:
            copy.close()


# ---- the listener executing it

class Gate:
    def __init__(self):
        self.is_open = False
        self.asked = 0
        self.accepted_count = 0

    def may_accept(self, queue_length):
        self.asked += 1
        return self.is_open

    def accepted(self):
        self.accepted_count += 1


def test_a_refused_listener_leaves_the_connection_in_the_backlog_without_spinning_then_takes_it():
    gate = Gate()
    accepted = Event()
    with socket.create_server(('127.0.0.1', 0)) as raw:
        listener = Listener(gevent_socket(fileno=os.dup(raw.fileno())), lambda sock, address: accepted.set(),
                            'default', describe_load=lambda: '', gate=gate)
        listener.start()
        client = gevent_socket()
        try:
            client.connect(raw.getsockname())
            gevent.sleep(20 * BALANCE_RETRY_DELAY)
            assert not accepted.is_set()
            # Asked about once per retry delay, not at every turn of the loop on a readable socket.
            assert 2 <= gate.asked <= 40  # a spin would be thousands
            # Nobody took it meanwhile: it is still there for whichever worker may take it.
            gate.is_open = True
            assert accepted.wait(5)
            assert gate.accepted_count == 1
        finally:
            client.close()
            listener.close()


def test_a_listener_without_a_gate_accepts_at_once():
    accepted = Event()
    with socket.create_server(('127.0.0.1', 0)) as raw:
        listener = Listener(gevent_socket(fileno=os.dup(raw.fileno())), lambda sock, address: accepted.set(),
                            'default', describe_load=lambda: '')
        listener.start()
        client = gevent_socket()
        try:
            client.connect(raw.getsockname())
            assert accepted.wait(5)
        finally:
            client.close()
            listener.close()


def test_a_worker_that_cannot_accept_shows_a_count_nobody_waits_for():
    table = LoadTable(slots=2)
    own, other = (Slot(table, table.take(), KEY) for _ in range(2))
    own.publish(3)
    other.publish(10)
    assert not other.may_accept(lambda: 0)
    own.set_available(False)  # out of descriptors: the listener retries later
    own.publish(2)  # connections ending meanwhile do not make it look available
    assert table.others(1)[0][1] == UNAVAILABLE
    assert other.may_accept(lambda: 0)
    own.set_available(True)
    assert table.others(1)[0][1] == 2
