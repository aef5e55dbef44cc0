"""The master's bookkeeping of recycled workers, without fork: an Arbiter whose spawn_worker
records a worker instead of forking one and whose kill_worker records the signal."""

import itertools
import json
import os
import logging
import signal
import time

import pytest

from zato_daemon.config import load_config
from zato_daemon.errors import EXIT_CONFIG
from zato_daemon.logs import levels
from zato_daemon.master import arbiter as arbiter_module
from zato_daemon.master.arbiter import Arbiter, Generation
from zato_daemon.master.lifecycle import ReloadState, WorkerState
from zato_daemon.master.recycling import MEMORY_RECYCLE_AFTER
from zato_daemon.paths import ServerDir
from zato_daemon.worker.channel import HEARTBEAT_MESSAGE, LIMIT_REACHED_MESSAGE, READY_MESSAGE, RETIRE_SIGNAL

MEMORY_LIMIT = 100 * 1024 ** 2


class FakeListener:
    def getsockname(self):
        return ('127.0.0.1', 17010)

    def close(self):
        pass


class ForklessArbiter(Arbiter):
    """Spawns records, not processes; remembers the signals it would send."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pids = itertools.count(1001)
        self.signals = []

    def spawn_worker(self, number):
        return self.lifecycle.spawned(next(self.pids), number, time.monotonic(), request_limit=105)

    def kill_worker(self, pid, signum):
        self.signals.append((pid, signum))


@pytest.fixture
def arbiter(tmp_path, monkeypatch):
    """A started server with two ready workers, max_requests and max_worker_memory set."""
    (tmp_path / 'server.conf').write_text(
        f'[main]\nworkers = 2\nmax_requests = 100\nmax_worker_memory = {MEMORY_LIMIT}\n')
    for name in ('STATE_DIRECTORY', 'LOGS_DIRECTORY', 'RUNTIME_DIRECTORY'):
        monkeypatch.delenv(name, raising=False)
    config = load_config(tmp_path)
    server_dir = ServerDir(tmp_path).resolve(config)
    server_dir.runtime.mkdir()
    # A reload completing would point the test process's own logging at the server directory.
    monkeypatch.setattr(arbiter_module, 'configure_logging', lambda *args, **kwargs: None)
    arbiter = ForklessArbiter(server_dir, config, FakeListener(), FakeListener())
    arbiter.execute(arbiter.lifecycle.start(time.monotonic()))
    for record in list(arbiter.workers.values()):
        arbiter.on_worker_message(record.pid, READY_MESSAGE)
    assert arbiter.lifecycle.ready
    return arbiter


def worker(arbiter, number, state=None, generation=None):
    """The one worker of that number (and state, and generation)."""
    [record] = [record for record in arbiter.workers.values() if record.number == number
                and (state is None or record.state == state)
                and (generation is None or record.generation == generation)]
    return record


def exit_worker(arbiter, record, code):
    """As reap_workers does once waitpid returned the worker's exit status."""
    arbiter.on_worker_exit(record.pid, code << 8)


def message(arbiter, record, data):
    arbiter.on_worker_message(record.pid, data)


def spawn_due(arbiter):
    """What the loop does each time it wakes: spawn the workers that are due."""
    arbiter.execute(arbiter.lifecycle.due_spawns(time.monotonic()))


def events(caplog, event):
    return [record for record in caplog.records if getattr(record, 'message_id', None) == event.message_id]


def recycle_first_worker(arbiter):
    """Worker 1 says it reached its limit; the loop then spawns what is missing."""
    old = worker(arbiter, 1)
    message(arbiter, old, LIMIT_REACHED_MESSAGE)
    spawn_due(arbiter)
    return old, worker(arbiter, 1, WorkerState.BOOTING)


# max_requests #################################################################################


def test_a_worker_past_its_limit_serves_on_until_its_one_replacement_is_ready(arbiter, caplog):
    caplog.set_level(logging.INFO)
    old, replacement = recycle_first_worker(arbiter)
    assert old.state == WorkerState.RECYCLING
    assert replacement.generation == old.generation
    assert len(arbiter.workers) == 3
    spawn_due(arbiter)
    assert len(arbiter.workers) == 3, 'a second replacement was spawned'
    assert not arbiter.signals, 'the old worker must serve until its replacement does'

    message(arbiter, replacement, HEARTBEAT_MESSAGE + READY_MESSAGE)
    assert old.state == WorkerState.DRAINING
    assert arbiter.signals == [(old.pid, RETIRE_SIGNAL)]
    exit_worker(arbiter, old, 0)
    spawn_due(arbiter)
    assert sorted(record.state.value for record in arbiter.workers.values()) == ['ready', 'ready']
    [record] = events(caplog, levels.WORKER_RECYCLED)
    assert record.levelno == logging.INFO
    assert record.getMessage() == (f'Worker 1 (pid {old.pid}) reached its limit of 105 requests '
                                   f'(max_requests 100 plus jitter); replacing it')
    assert f'Worker 1 (pid {old.pid}) drained and exited with status 0' in caplog.text


def test_the_limit_is_acted_on_once(arbiter, caplog):
    caplog.set_level(logging.INFO)
    old, _ = recycle_first_worker(arbiter)
    message(arbiter, old, LIMIT_REACHED_MESSAGE)
    spawn_due(arbiter)
    assert len(arbiter.workers) == 3
    assert len(events(caplog, levels.WORKER_RECYCLED)) == 1


def test_ready_and_limit_in_one_read_are_taken_in_order(arbiter):
    old, replacement = recycle_first_worker(arbiter)
    # The replacement reached its limit during AFTER_STARTED: it says so right after READY.
    message(arbiter, replacement, READY_MESSAGE + LIMIT_REACHED_MESSAGE)
    assert old.state == WorkerState.DRAINING
    assert replacement.state == WorkerState.RECYCLING


def test_the_status_file_shows_the_recycling_worker(arbiter):
    old, _ = recycle_first_worker(arbiter)
    status = json.loads(arbiter.server_dir.status_file.read_text())
    states = {worker['pid']: worker['state'] for worker in status['workers']}
    assert states[old.pid] == 'recycling'
    assert sorted(states.values()) == ['booting', 'ready', 'recycling']


def test_an_old_worker_dying_while_its_replacement_boots_spawns_nothing_more(arbiter, caplog):
    old, replacement = recycle_first_worker(arbiter)
    exit_worker(arbiter, old, 70)
    spawn_due(arbiter)
    assert set(arbiter.workers) == {replacement.pid, worker(arbiter, 2).pid}
    assert 1 not in arbiter.lifecycle.spawn_not_before
    assert f'Worker 1 (pid {old.pid}) exited with status 70; its replacement is starting' in caplog.text
    message(arbiter, replacement, READY_MESSAGE)
    assert not arbiter.signals


def test_a_replacement_that_fails_to_boot_leaves_the_old_worker_serving_and_is_retried(arbiter):
    old, replacement = recycle_first_worker(arbiter)
    exit_worker(arbiter, replacement, 70)
    assert old.state == WorkerState.RECYCLING
    assert arbiter.lifecycle.spawn_not_before[1] > 0
    arbiter.lifecycle.spawn_not_before[1] = 0.0       # the back-off delay has passed
    spawn_due(arbiter)
    retry = worker(arbiter, 1, WorkerState.BOOTING)
    message(arbiter, retry, READY_MESSAGE)
    assert arbiter.signals == [(old.pid, RETIRE_SIGNAL)]


def test_a_replacement_with_a_configuration_error_leaves_the_old_worker_serving_and_is_tried_again(arbiter,
                                                                                                   caplog):
    # A service file broken since the worker started: a reload would be refused, so recycling
    # must not halt a server that serves either.
    old, replacement = recycle_first_worker(arbiter)
    exit_worker(arbiter, replacement, EXIT_CONFIG)
    assert old.state == WorkerState.RECYCLING and not arbiter.signals
    [error] = events(caplog, levels.WORKER_BOOT_FAILED)
    assert f'worker 1 (pid {old.pid}) keeps serving' in error.getMessage()
    assert 1 in arbiter.lifecycle.spawn_not_before  # after the back-off
    arbiter.lifecycle.spawn_not_before[1] = 0
    spawn_due(arbiter)
    assert worker(arbiter, 1, WorkerState.BOOTING).pid != replacement.pid


def test_a_respawn_with_a_configuration_error_is_retried_while_the_others_serve(arbiter, caplog):
    # A serving server does not halt because one respawned worker cannot deploy: the
    # others serve, and the respawn is tried again with back-off.
    crashed = worker(arbiter, 1)
    exit_worker(arbiter, crashed, 1)
    arbiter.lifecycle.spawn_not_before[1] = 0
    spawn_due(arbiter)
    exit_worker(arbiter, worker(arbiter, 1, WorkerState.BOOTING), EXIT_CONFIG)
    [error] = events(caplog, levels.WORKER_BOOT_FAILED)
    assert 'the other workers serve on' in error.getMessage()
    assert arbiter.lifecycle.spawn_not_before[1] > time.monotonic()
    assert worker(arbiter, 2).state == WorkerState.READY


def test_a_hung_recycling_worker_is_still_watched(arbiter):
    old, _ = recycle_first_worker(arbiter)
    old.last_heartbeat -= 3600
    arbiter.execute(arbiter.lifecycle.tick(time.monotonic(), 60, 30))
    assert (old.pid, signal.SIGURG) in arbiter.signals


# Reloads ######################################################################################


def start_reload(arbiter):
    """What a reload does once the new config is read."""
    arbiter.lifecycle.request_reload()  # its PrepareReload (a thread reading files) is not run here
    arbiter.prepared_generation = Generation(arbiter.config, [], arbiter.server_dir, arbiter.listener)
    arbiter.execute(arbiter.lifecycle.reload_prepared(2))
    spawn_due(arbiter)


def test_a_previous_generation_past_its_limit_during_a_reload_is_left_to_the_reload(arbiter):
    old = worker(arbiter, 1)
    start_reload(arbiter)
    message(arbiter, old, LIMIT_REACHED_MESSAGE)
    spawn_due(arbiter)
    assert len(arbiter.workers) == 4, 'a replacement was spawned for a generation being replaced'
    for number in (1, 2):
        message(arbiter, worker(arbiter, number, generation=2), READY_MESSAGE)
    assert arbiter.lifecycle.reload == ReloadState.IDLE
    retired = {pid for pid, signum in arbiter.signals if signum == RETIRE_SIGNAL}
    assert retired == {old.pid, worker(arbiter, 2, generation=1).pid}


def test_after_an_aborted_reload_a_worker_past_its_limit_is_still_replaced(arbiter):
    old = worker(arbiter, 1)
    start_reload(arbiter)
    message(arbiter, old, LIMIT_REACHED_MESSAGE)
    exit_worker(arbiter, worker(arbiter, 1, generation=2), 70)
    assert arbiter.lifecycle.reload == ReloadState.IDLE and arbiter.generation == 1
    spawn_due(arbiter)
    replacement = worker(arbiter, 1, WorkerState.BOOTING, generation=1)
    message(arbiter, replacement, READY_MESSAGE)
    assert (old.pid, RETIRE_SIGNAL) in arbiter.signals


def recycle_a_new_worker(arbiter):
    """A reload starts; its worker 1 serves, reaches its limit at once, and is being replaced."""
    start_reload(arbiter)
    first = worker(arbiter, 1, generation=2)
    message(arbiter, first, READY_MESSAGE + LIMIT_REACHED_MESSAGE)
    spawn_due(arbiter)
    return first


def test_a_reload_completes_while_a_new_worker_is_being_recycled(arbiter):
    first = recycle_a_new_worker(arbiter)
    replacement = worker(arbiter, 1, WorkerState.BOOTING, generation=2)
    message(arbiter, worker(arbiter, 2, generation=2), READY_MESSAGE)
    assert arbiter.lifecycle.reload == ReloadState.IDLE, 'the recycling worker serves: the generation is complete'
    message(arbiter, replacement, READY_MESSAGE)
    assert (first.pid, RETIRE_SIGNAL) in arbiter.signals


def test_an_aborted_reload_drains_its_recycling_workers_instead_of_killing_them(arbiter):
    first = recycle_a_new_worker(arbiter)
    exit_worker(arbiter, worker(arbiter, 2, generation=2), 70)
    assert (first.pid, RETIRE_SIGNAL) in arbiter.signals
    assert first.state == WorkerState.DRAINING


# max_worker_memory ############################################################################


class Sizes(dict):
    """Resident sizes by pid, and `read`: the pids read, in order."""


@pytest.fixture
def resident(arbiter, monkeypatch):
    """Resident sizes by pid, as the master reads them from /proc; every worker old enough."""
    sizes = Sizes()
    read = []

    def read_rss(pid):
        read.append(pid)
        return sizes.get(pid)
    monkeypatch.setattr(arbiter_module, 'read_rss', read_rss)
    for record in arbiter.workers.values():
        record.spawned_at -= MEMORY_RECYCLE_AFTER + 1
    sizes.update({pid: MEMORY_LIMIT // 2 for pid in arbiter.workers})
    sizes.read = read
    return sizes


def test_a_worker_over_the_ceiling_is_replaced_once_with_a_warning(arbiter, resident, caplog):
    big = worker(arbiter, 1)
    resident[big.pid] = MEMORY_LIMIT + 1
    arbiter.check_worker_memory()
    spawn_due(arbiter)
    assert big.state == WorkerState.RECYCLING
    assert worker(arbiter, 2).state == WorkerState.READY
    replacement = worker(arbiter, 1, WorkerState.BOOTING)
    arbiter.next_memory_check = 0.0
    arbiter.check_worker_memory()
    [record] = events(caplog, levels.WORKER_MEMORY_RECYCLED)
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (f'Worker 1 (pid {big.pid}) uses 100.0 MiB (104857601 bytes) of resident memory, '
                                   f'over max_worker_memory 100.0 MiB (104857600 bytes); replacing it')
    # Only READY workers are read: not the recycling one, nor its booting replacement.
    assert big.pid not in resident.read[2:] and replacement.pid not in resident.read


def test_memory_is_read_at_most_once_a_second(arbiter, resident):
    arbiter.check_worker_memory()
    count = len(resident.read)
    arbiter.check_worker_memory()
    assert len(resident.read) == count == 2


def test_a_young_worker_is_not_replaced_for_memory(arbiter, resident):
    young = worker(arbiter, 2)
    young.spawned_at += MEMORY_RECYCLE_AFTER + 1
    resident[young.pid] = MEMORY_LIMIT * 2
    arbiter.check_worker_memory()
    assert young.state == WorkerState.READY


def test_an_unreadable_worker_is_skipped(arbiter, resident):
    resident.clear()
    arbiter.check_worker_memory()
    assert all(record.state == WorkerState.READY for record in arbiter.workers.values())


def test_the_loop_hears_descriptors_numbered_past_what_select_takes(arbiter):
    # Two pipes per worker and 256 workers during a reload: the master's descriptors pass 1024,
    # where select() raised ValueError and the master halted.
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    read_fd, write_fd = os.pipe()
    high = os.dup2(read_fd, 1500)
    try:
        os.set_blocking(high, False)
        arbiter._wakeup_read = high
        os.write(write_fd, b'wake')
        arbiter.wait_for_events(5)
        with pytest.raises(BlockingIOError):
            os.read(high, 1)  # the loop drained it
    finally:
        for fd in (read_fd, write_fd, high):
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
