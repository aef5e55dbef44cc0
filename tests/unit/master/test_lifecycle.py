"""The master's decisions, case by case: every (state, event) pair of the tables, what an
exit means in each situation, back-off, hangs, failed forks and reloads (queued, refused,
failed). No process is involved: events in, actions out."""

import itertools
import logging
import signal

import pytest

from zato_daemon.errors import EXIT_CONFIG, EXIT_SOFTWARE
from zato_daemon.logs import levels
from zato_daemon.master.lifecycle import (
    HUNG_DUMP_WAIT, MAX_RESPAWN_DELAY, RELOAD_TRANSITIONS, STABLE_AFTER, WORKER_TRANSITIONS, CountRestart, ExitMeaning,
    Halt,
    HangVerdict, Kill, Lifecycle, LifecycleError, Log, MarkReady, PrepareReload, ReloadEvent, ReloadFinished,
    ReloadState, RetireGeneration, RevertGeneration, Spawn, StartGeneration, WorkerEvent, WorkerState, exit_meaning,
    hang_verdict, next_failure_count, next_reload_state, next_worker_state, respawn_delay, restart_reason)
from zato_daemon.worker.channel import RETIRE_SIGNAL

S, E = WorkerState, WorkerEvent

# Worker table ##################################################################################

EXPECTED_WORKER_TRANSITIONS = {
    (S.BOOTING, E.REPORTED_READY): S.READY,
    (S.READY, E.REACHED_LIMIT): S.RECYCLING,
    (S.READY, E.OVER_MEMORY): S.RECYCLING,
    (S.READY, E.MUST_REBIND): S.RECYCLING,
    (S.RECYCLING, E.REPLACED): S.DRAINING,
    (S.READY, E.RETIRED): S.DRAINING,
    (S.RECYCLING, E.RETIRED): S.DRAINING,
    (S.BOOTING, E.STOPPED): S.DRAINING,
    (S.READY, E.STOPPED): S.DRAINING,
    (S.RECYCLING, E.STOPPED): S.DRAINING,
    (S.DRAINING, E.STOPPED): S.DRAINING,
}


@pytest.mark.parametrize('state, event', list(itertools.product(WorkerState, WorkerEvent)),
                         ids=lambda value: value.name)
def test_every_worker_state_and_event(state, event):
    expected = EXPECTED_WORKER_TRANSITIONS.get((state, event))
    if expected is None:
        with pytest.raises(LifecycleError, match=state.value):
            next_worker_state(state, event)
    else:
        assert next_worker_state(state, event) == expected


def test_the_worker_table_is_the_one_tested():
    assert WORKER_TRANSITIONS == EXPECTED_WORKER_TRANSITIONS


# Reload table ##################################################################################

R, RE = ReloadState, ReloadEvent
EXPECTED_RELOAD_TRANSITIONS = {
    (R.IDLE, RE.REQUESTED): (R.PREPARING, False),
    (R.PREPARING, RE.REQUESTED): (R.PREPARING, True),
    (R.BOOTING, RE.REQUESTED): (R.BOOTING, True),
    (R.PREPARING, RE.PREPARED): (R.BOOTING, None),
    (R.PREPARING, RE.REFUSED): (R.IDLE, None),
    (R.BOOTING, RE.GENERATION_READY): (R.IDLE, None),
    (R.BOOTING, RE.GENERATION_FAILED): (R.IDLE, None),
}


@pytest.mark.parametrize('queued', [False, True])
@pytest.mark.parametrize('state, event', list(itertools.product(ReloadState, ReloadEvent)),
                         ids=lambda value: value.name)
def test_every_reload_state_and_event(state, event, queued):
    expected = EXPECTED_RELOAD_TRANSITIONS.get((state, event))
    if expected is None:
        with pytest.raises(LifecycleError):
            next_reload_state(state, queued, event)
        return
    new_state, new_queued = expected
    assert next_reload_state(state, queued, event) == (new_state, queued if new_queued is None else new_queued)


def test_the_reload_table_is_the_one_tested():
    assert RELOAD_TRANSITIONS == EXPECTED_RELOAD_TRANSITIONS


# What an exit means ############################################################################

@pytest.mark.parametrize('state, current, replacement, predecessor, reload_booting, ready, meaning', [
    (S.DRAINING, True, False, False, False, True, ExitMeaning.DRAINED),
    (S.DRAINING, False, True, True, True, False, ExitMeaning.DRAINED),
    (S.RECYCLING, True, True, False, False, True, ExitMeaning.REPLACEMENT_STARTING),
    (S.RECYCLING, False, True, False, True, True, ExitMeaning.REPLACEMENT_STARTING),
    (S.RECYCLING, True, False, False, False, True, ExitMeaning.RESPAWN),
    (S.READY, False, False, False, True, True, ExitMeaning.PREVIOUS_GENERATION),
    (S.BOOTING, False, False, False, False, True, ExitMeaning.PREVIOUS_GENERATION),
    (S.BOOTING, True, False, True, False, True, ExitMeaning.REPLACEMENT_FAILED),
    (S.BOOTING, True, False, True, True, True, ExitMeaning.REPLACEMENT_FAILED),
    (S.BOOTING, True, False, False, True, True, ExitMeaning.RELOAD_FAILED),
    (S.BOOTING, True, False, False, False, False, ExitMeaning.START_FAILED),
    (S.BOOTING, True, False, False, False, True, ExitMeaning.RESPAWN),
    (S.READY, True, False, False, False, True, ExitMeaning.RESPAWN),
    (S.READY, True, False, False, True, True, ExitMeaning.RESPAWN),
])
def test_what_an_exit_means(state, current, replacement, predecessor, reload_booting, ready, meaning):
    assert exit_meaning(state, current, replacement, predecessor, reload_booting, ready) == meaning


@pytest.mark.parametrize('failures, delay', [(0, 0.1), (1, 0.1), (2, 0.2), (5, 1.6), (9, 25.6), (10, MAX_RESPAWN_DELAY),
                                             (1000, MAX_RESPAWN_DELAY)])
def test_back_off(failures, delay):
    assert respawn_delay(failures) == pytest.approx(delay)


@pytest.mark.parametrize('previous, lived, count', [(0, 0.5, 1), (3, 0.5, 4), (3, STABLE_AFTER + 1, 1)])
def test_a_worker_that_lived_long_enough_resets_the_count(previous, lived, count):
    assert next_failure_count(previous, lived) == count


@pytest.mark.parametrize('state, now, heartbeat, hung_at, dumped, verdict', [
    (S.BOOTING, 1000, 0, None, False, HangVerdict.FINE),
    (S.READY, 100, 95, None, False, HangVerdict.FINE),
    (S.READY, 100, 50, None, False, HangVerdict.DUMP),
    (S.RECYCLING, 100, 50, None, False, HangVerdict.DUMP),
    (S.DRAINING, 100, 50, None, False, HangVerdict.DUMP),
    (S.READY, 100, 50, 99, False, HangVerdict.FINE),
    (S.READY, 100, 50, 99, True, HangVerdict.KILL),
    (S.READY, 100 + HUNG_DUMP_WAIT, 50, 99, False, HangVerdict.KILL),
])
def test_hang_verdicts(state, now, heartbeat, hung_at, dumped, verdict):
    assert hang_verdict(state, now, heartbeat, hung_at, 30, dumped) == verdict


# The Lifecycle: sequences ######################################################################

class Pids:
    def __init__(self):
        self.counter = itertools.count(100)

    def spawn(self, lifecycle, actions, now=0.0):
        """Spawns what `actions` asks for; returns the new pids."""
        pids = []
        for action in actions:
            if isinstance(action, Spawn):
                pid = next(self.counter)
                lifecycle.spawned(pid, action.number, now)
                pids.append(pid)
        return pids


def kinds(actions):
    return [type(action) for action in actions]


@pytest.fixture
def serving():
    """Two workers serving, generation 1."""
    lifecycle = Lifecycle(target=2)
    pids = Pids()
    started = pids.spawn(lifecycle, lifecycle.start(0.0))
    assert [lifecycle.workers[pid].number for pid in started] == [1, 2]
    actions = [action for pid in started for action in lifecycle.reported_ready(pid, 1.0)]
    assert kinds(actions).count(MarkReady) == 1 and lifecycle.ready
    lifecycle.pids = pids
    return lifecycle


def pid_of(lifecycle, number, generation=None, state=None):
    [pid] = [pid for pid, worker in lifecycle.workers.items() if worker.number == number
             and (generation is None or worker.generation == generation) and (state is None or worker.state == state)]
    return pid


def test_a_failed_fork_is_retried_with_back_off_and_never_halts(serving):
    pid = pid_of(serving, 1)
    serving.exited(pid, 'was killed by SIGKILL', -9, lived=100, now=10.0)
    assert serving.due_spawns(10.0) == []
    assert serving.due_spawns(10.2) == [Spawn(1)]
    for attempt, now in enumerate((10.2, 10.5, 11.0), start=2):
        [log] = serving.spawn_failed(1, 'fork() failed: Resource temporarily unavailable', now)
        assert log.event == levels.SPAWN_FAILED and log.level == logging.ERROR
        assert serving.spawn_not_before[1] == pytest.approx(now + respawn_delay(attempt))
        assert not any(isinstance(action, Halt) for action in serving.due_spawns(now))
    assert serving.due_spawns(100.0) == [Spawn(1)]


def test_a_failed_fork_at_start_is_retried_too():
    lifecycle = Lifecycle(target=1)
    assert lifecycle.start(0.0) == [Spawn(1)]
    lifecycle.spawn_failed(1, 'fork() failed', 0.0)
    assert lifecycle.due_spawns(0.05) == [] and lifecycle.due_spawns(0.2) == [Spawn(1)]


def test_a_worker_that_never_served_halts_the_start_with_its_reason():
    lifecycle = Lifecycle(target=1)
    [pid] = Pids().spawn(lifecycle, lifecycle.start(0.0))
    lifecycle.boot_failure_text(pid, 'a.py:3: syntax error')
    actions = lifecycle.exited(pid, 'exited with status 78', EXIT_CONFIG, lived=0.5, now=1.0)
    [halt] = [action for action in actions if isinstance(action, Halt)]
    assert halt.exit_status == EXIT_CONFIG and 'a.py:3: syntax error' in halt.reason
    lifecycle = Lifecycle(target=1)
    [pid] = Pids().spawn(lifecycle, lifecycle.start(0.0))
    [halt] = [action for action in lifecycle.exited(pid, 'was killed by SIGSEGV', -11, 0.5, 1.0)
              if isinstance(action, Halt)]
    assert halt.exit_status == EXIT_SOFTWARE and 'SIGSEGV' in halt.reason


def test_a_drained_worker_is_not_replaced(serving):
    serving.stop()
    for pid in list(serving.workers):
        actions = serving.exited(pid, 'exited with status 0', 0, 5.0, 6.0)
        assert [action.message for action in actions if isinstance(action, Log)] == [
            'Worker %d (pid %d) drained and %s']
    assert serving.workers == {}


def test_a_hung_worker_is_dumped_then_killed(serving):
    pid = pid_of(serving, 1)
    serving.heartbeat(pid_of(serving, 2), 100.0)
    actions = serving.tick(100.0, boot_timeout=60, hang_timeout=30)
    assert Kill(pid, signal.SIGURG) in actions and not any(a == Kill(pid, signal.SIGKILL) for a in actions)
    assert serving.tick(101.0, 60, 30) == []
    assert serving.dumped(pid) == [Kill(pid, signal.SIGKILL)]


def test_a_worker_not_ready_in_time_is_killed_once_per_timeout():
    lifecycle = Lifecycle(target=1)
    [pid] = Pids().spawn(lifecycle, lifecycle.start(0.0))
    assert Kill(pid, signal.SIGKILL) in lifecycle.tick(61.0, boot_timeout=60, hang_timeout=30)
    assert lifecycle.tick(62.0, 60, 30) == []


def test_messages_a_state_does_not_accept_change_nothing(serving):
    pid = pid_of(serving, 1)
    assert serving.reported_ready(pid, 5.0) == []          # already ready
    serving.recycle(pid, E.REACHED_LIMIT, levels.WORKER_RECYCLED, 'm', ())
    assert serving.recycle(pid, E.REACHED_LIMIT, levels.WORKER_RECYCLED, 'm', ()) == []  # once
    assert serving.reported_ready(12345, 5.0) == [] and serving.exited(12345, 'x', 0, 1, 1) == []


def test_recycling_spawns_one_replacement_and_retires_the_old_worker_once_it_serves(serving):
    old = pid_of(serving, 1)
    serving.recycle(old, E.OVER_MEMORY, levels.WORKER_MEMORY_RECYCLED, 'm', ())
    [new] = serving.pids.spawn(serving, serving.due_spawns(5.0))
    assert serving.due_spawns(6.0) == []
    actions = serving.reported_ready(new, 7.0)
    assert Kill(old, RETIRE_SIGNAL) in actions and serving.workers[old].state == S.DRAINING


def test_recycle_all_replaces_every_serving_worker_one_by_one(serving):
    serving.recycle_all(E.MUST_REBIND, None, 'Worker %d (pid %d) serves a deleted admin socket')
    assert {worker.state for worker in serving.workers.values()} == {S.RECYCLING}
    assert serving.due_spawns(5.0) == [Spawn(1), Spawn(2)]


# Restarts, as zato_worker_restarts_total counts them ###########################################

@pytest.mark.parametrize('state, hung_at, reason', [
    (S.BOOTING, None, 'boot_failed'),
    (S.BOOTING, 5.0, 'boot_failed'),
    (S.READY, None, 'died'),
    (S.READY, 5.0, 'hung'),
    (S.RECYCLING, None, 'died'),
])
def test_restart_reason(state, hung_at, reason):
    assert restart_reason(state, hung_at) == reason


def restarts(actions):
    return [action.reason for action in actions if isinstance(action, CountRestart)]


def test_a_serving_worker_that_dies_counts_one_restart(serving):
    assert restarts(serving.exited(pid_of(serving, 1), 'was killed by SIGKILL', -9, 100, 100.0)) == ['died']


def test_a_hung_worker_killed_counts_a_hung_restart(serving):
    pid = pid_of(serving, 1)
    serving.heartbeat(pid_of(serving, 2), 100.0)
    serving.tick(100.0, boot_timeout=60, hang_timeout=30)
    assert restarts(serving.exited(pid, 'was killed by SIGKILL', -9, 100, 101.0)) == ['hung']


def test_a_replacement_that_fails_to_boot_counts_a_boot_failure(serving):
    serving.exited(pid_of(serving, 1), 'was killed by SIGKILL', -9, 100, 100.0)
    [new] = serving.pids.spawn(serving, serving.due_spawns(200.0))
    assert restarts(serving.exited(new, 'exited with status 70', 70, 1, 201.0)) == ['boot_failed']


def test_a_recycled_worker_counts_once_when_its_replacement_is_decided(serving):
    old = pid_of(serving, 1)
    assert restarts(serving.recycle(old, E.REACHED_LIMIT, levels.WORKER_RECYCLED, 'm', ())) == ['recycled']
    [new] = serving.pids.spawn(serving, serving.due_spawns(5.0))
    serving.reported_ready(new, 6.0)
    assert restarts(serving.exited(old, 'exited with status 0', 0, 10, 11.0)) == []


def test_workers_stopped_or_retired_by_a_reload_count_no_restart(serving):
    serving.stop()
    for pid in list(serving.workers):
        assert restarts(serving.exited(pid, 'exited with status 0', 0, 5.0, 6.0)) == []


# Reloads ########################################################################################

def reload_to_ready(lifecycle, target=2, now=10.0):
    actions = lifecycle.reload_prepared(target)
    assert actions[0] == StartGeneration(lifecycle.generation)
    new = lifecycle.pids.spawn(lifecycle, lifecycle.due_spawns(now))
    actions = []
    for pid in new:
        actions += lifecycle.reported_ready(pid, now + 1)
    return new, actions


def test_a_reload_retires_the_old_generation_once_the_new_one_serves(serving):
    old = set(serving.workers)
    assert serving.request_reload() == [PrepareReload()]
    new, actions = reload_to_ready(serving)
    assert all(Kill(pid, RETIRE_SIGNAL) in actions for pid in old)
    assert RetireGeneration(1) in actions
    assert ReloadFinished('applied', 'the new workers serve', 0) in actions
    assert serving.reload == R.IDLE and serving.generation == 2


def test_a_reload_asked_for_during_a_reload_is_queued_and_follows(serving):
    serving.request_reload()
    [log] = serving.request_reload()
    assert 'follows' in log.message and serving.reload_queued
    assert serving.request_reload()[0].message == log.message   # several requests: one queued reload
    _, actions = reload_to_ready(serving)
    assert actions[-1] == PrepareReload() and serving.reload == R.PREPARING and not serving.reload_queued


def test_a_refused_reload_reports_and_starts_the_queued_one(serving):
    serving.request_reload()
    serving.request_reload()
    actions = serving.reload_refused('server.conf:3: workers: not a number', EXIT_CONFIG)
    assert ReloadFinished('refused', 'server.conf:3: workers: not a number', EXIT_CONFIG) in actions
    assert [a for a in actions if isinstance(a, Log)][0].event == levels.RELOAD_REFUSED
    assert actions[-1] == PrepareReload()
    assert serving.generation == 1


def test_a_new_worker_failing_aborts_the_reload_and_keeps_the_old_generation(serving):
    old = set(serving.workers)
    serving.request_reload()
    serving.reload_prepared(3)
    new = serving.pids.spawn(serving, serving.due_spawns(10.0))
    assert len(new) == 3
    serving.reported_ready(new[0], 11.0)
    actions = serving.exited(new[1], 'exited with status 70', 70, 0.5, 11.0)
    assert RevertGeneration(2, 1) in actions
    assert Kill(new[0], RETIRE_SIGNAL) in actions and Kill(new[2], signal.SIGKILL) in actions
    assert any(isinstance(a, ReloadFinished) and a.outcome == 'failed' for a in actions)
    assert serving.generation == 1 and serving.target == 2 and old <= set(serving.workers)
    assert serving.due_spawns(100.0) == []


def test_during_a_reload_dead_workers_of_the_serving_generation_are_not_respawned_but_new_ones_are(serving):
    serving.request_reload()
    # While the configuration is prepared, the serving generation is supervised as usual.
    pid = pid_of(serving, 1)
    serving.exited(pid, 'was killed by SIGKILL', -9, 100, 10.0)
    assert serving.due_spawns(11.0) == [Spawn(1)]


def test_generation_numbers_are_never_reused(serving):
    serving.request_reload()
    serving.reload_prepared(2)
    new = serving.pids.spawn(serving, serving.due_spawns(10.0))
    serving.exited(new[0], 'exited with status 70', 70, 0.5, 11.0)
    serving.request_reload()
    assert serving.reload_prepared(2)[0] == StartGeneration(3)
