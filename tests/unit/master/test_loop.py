"""The master loop's helpers: how long it waits, and reading its queue of signals during a stop."""

import collections
import signal

from zato_daemon.master.arbiter import LOOP_TICK, loop_timeout, take_quick_stop_request


def test_with_nothing_due_the_master_waits_a_tick():
    assert loop_timeout(100.0, []) == LOOP_TICK


def test_a_respawn_due_sooner_than_a_tick_shortens_the_wait():
    assert abs(loop_timeout(100.0, [100.1, 130.0]) - 0.1) < 1e-9


def test_respawns_already_due_or_later_than_a_tick_do_not_change_it():
    assert loop_timeout(100.0, [99.0, 100.0, 101.5]) == LOOP_TICK


class SignalArrivingMidway(collections.deque):
    """A queue whose handler adds SIGINT while the first signal is taken off, as a signal
    arriving between two bytecodes of the loop would."""

    def popleft(self):
        signum = super().popleft()
        if not getattr(self, 'fired', False):
            self.fired = True
            self.append(signal.SIGINT)
        return signum


def test_a_signal_arriving_while_the_queue_is_read_is_taken_too():
    queue = SignalArrivingMidway([signal.SIGCHLD, signal.SIGCHLD])
    assert take_quick_stop_request(queue) is True
    assert not queue


def test_without_sigint_or_sigquit_there_is_no_quick_stop():
    queue = collections.deque([signal.SIGCHLD, signal.SIGHUP])
    assert take_quick_stop_request(queue) is False
    assert not queue
