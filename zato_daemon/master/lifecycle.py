"""The master's decisions about its workers, with no I/O: events in, actions out.

What a worker's message, its exit, a clock tick, a failed fork or a reload means is
decided here, from tables and small pure functions, so that every (state, event) pair is
tested case by case (tests/unit/master/test_lifecycle.py). The Arbiter turns what the
operating system tells it (signals, pipes, waitpid, the clock) into events, feeds them to
a `Lifecycle`, and executes the actions it gets back: fork, kill, log, write master.json,
switch generations, halt.

States of a worker (WORKER_TRANSITIONS): BOOTING until it reports ready; READY while it
serves; RECYCLING while it serves on until the replacement started for it is ready (past
max_requests or max_worker_memory, or to pick up a re-bound admin socket); DRAINING once
it was told to finish its requests and exit. An exit is not a state: what it means
depends on the state and on the server's situation (`exit_meaning`).

States of a reload (RELOAD_TRANSITIONS): IDLE; PREPARING while the configuration is read
and the FS_CONFIG_ONLY callables run (in a thread of the master, with a time limit, so
workers are still supervised); BOOTING while the new generation starts beside the serving
one. A reload asked for meanwhile is queued, once, and starts when this one ends.
"""

import collections
import enum
import logging
import signal
from dataclasses import dataclass, field

from zato_daemon.errors import EXIT_CONFIG, EXIT_SOFTWARE
from zato_daemon.logs import levels
from zato_daemon.worker.channel import RETIRE_SIGNAL

# A restarted worker waits 0.1 s, then twice as long after each quick failure, up to
# this ceiling; a worker that lived longer than STABLE_AFTER resets the count. A fork
# that fails is retried on the same schedule.
FIRST_RESPAWN_DELAY = 0.1
MAX_RESPAWN_DELAY = 30.0
STABLE_AFTER = 10.0
# How long a hung worker may take to write its dump before it is killed anyway.
HUNG_DUMP_WAIT = 10.0


class LifecycleError(Exception):
    """An event the current state does not accept (a bug in the caller, or a stray message)."""


class WorkerState(enum.Enum):
    BOOTING = 'booting'
    READY = 'ready'
    RECYCLING = 'recycling'
    DRAINING = 'draining'


# The states in which a worker accepts connections on the listening socket.
SERVING_STATES = (WorkerState.READY, WorkerState.RECYCLING)


class WorkerEvent(enum.Enum):
    REPORTED_READY = 'reported ready'
    REACHED_LIMIT = 'reached its share of max_requests'
    OVER_MEMORY = 'passed max_worker_memory'
    MUST_REBIND = 'must serve a re-bound socket'
    REPLACED = 'its replacement serves'
    RETIRED = 'its generation is retired'
    STOPPED = 'the server stops'


_S, _E = WorkerState, WorkerEvent
WORKER_TRANSITIONS = {
    (_S.BOOTING, _E.REPORTED_READY): _S.READY,
    (_S.READY, _E.REACHED_LIMIT): _S.RECYCLING,
    (_S.READY, _E.OVER_MEMORY): _S.RECYCLING,
    (_S.READY, _E.MUST_REBIND): _S.RECYCLING,
    (_S.RECYCLING, _E.REPLACED): _S.DRAINING,
    (_S.READY, _E.RETIRED): _S.DRAINING,
    (_S.RECYCLING, _E.RETIRED): _S.DRAINING,
    (_S.BOOTING, _E.STOPPED): _S.DRAINING,
    (_S.READY, _E.STOPPED): _S.DRAINING,
    (_S.RECYCLING, _E.STOPPED): _S.DRAINING,
    (_S.DRAINING, _E.STOPPED): _S.DRAINING,
}


def next_worker_state(state, event):
    """The state a worker in `state` moves to on `event`; LifecycleError if it cannot."""
    try:
        return WORKER_TRANSITIONS[state, event]
    except KeyError:
        raise LifecycleError(f'a {state.value} worker cannot have "{event.value}"') from None


class ReloadState(enum.Enum):
    IDLE = 'idle'
    PREPARING = 'preparing'
    BOOTING = 'booting'


class ReloadEvent(enum.Enum):
    REQUESTED = 'requested'
    PREPARED = 'prepared'
    REFUSED = 'refused'
    GENERATION_READY = 'new generation ready'
    GENERATION_FAILED = 'new generation failed'


_R, _RE = ReloadState, ReloadEvent
# (state, event) -> (next state, whether a request is queued). None: keep the queue as it is.
RELOAD_TRANSITIONS = {
    (_R.IDLE, _RE.REQUESTED): (_R.PREPARING, False),
    (_R.PREPARING, _RE.REQUESTED): (_R.PREPARING, True),
    (_R.BOOTING, _RE.REQUESTED): (_R.BOOTING, True),
    (_R.PREPARING, _RE.PREPARED): (_R.BOOTING, None),
    (_R.PREPARING, _RE.REFUSED): (_R.IDLE, None),
    (_R.BOOTING, _RE.GENERATION_READY): (_R.IDLE, None),
    (_R.BOOTING, _RE.GENERATION_FAILED): (_R.IDLE, None),
}


def next_reload_state(state, queued, event):
    """(next state, queued) of a reload on `event`; LifecycleError if the state refuses it."""
    try:
        new_state, new_queued = RELOAD_TRANSITIONS[state, event]
    except KeyError:
        raise LifecycleError(f'a reload {state.value} cannot be "{event.value}"') from None
    return new_state, queued if new_queued is None else new_queued


class ExitMeaning(enum.Enum):
    DRAINED = 'drained'                          # it was told to go: nothing to do
    REPLACEMENT_STARTING = 'replacement starting'  # recycling, its replacement boots already
    PREVIOUS_GENERATION = 'previous generation'  # a reload replaced it; the new one serves
    REPLACEMENT_FAILED = 'replacement failed'    # the worker it was to replace serves on: retry
    RELOAD_FAILED = 'reload failed'              # a new worker of a reload died: back to the old
    START_FAILED = 'start failed'                # the server never served: halt
    RESPAWN = 'respawn'                          # a serving server lost a worker: replace it


def exit_meaning(state, is_current_generation, has_replacement, has_predecessor, reload_booting, server_ready):
    """What a worker's exit means; the rules in the order they apply."""
    if state == WorkerState.DRAINING:
        return ExitMeaning.DRAINED
    if state == WorkerState.RECYCLING and has_replacement:
        return ExitMeaning.REPLACEMENT_STARTING
    if not is_current_generation:
        return ExitMeaning.PREVIOUS_GENERATION
    if state == WorkerState.BOOTING:
        if has_predecessor:
            return ExitMeaning.REPLACEMENT_FAILED
        if reload_booting:
            return ExitMeaning.RELOAD_FAILED
        if not server_ready:
            return ExitMeaning.START_FAILED
    return ExitMeaning.RESPAWN


def next_failure_count(previous, lived):
    """Quick failures in a row of one worker number; a worker that lived STABLE_AFTER starts over."""
    return 1 if lived > STABLE_AFTER else previous + 1


def respawn_delay(failures):
    """The back-off before the next attempt, after `failures` quick failures in a row (at least 1)."""
    return min(FIRST_RESPAWN_DELAY * 2 ** (max(failures, 1) - 1), MAX_RESPAWN_DELAY)


class HangVerdict(enum.Enum):
    FINE = 'fine'
    DUMP = 'dump'   # first noticed: SIGURG, so its dump shows the frame that blocks
    KILL = 'kill'   # dumped, or the dump took too long


def restart_reason(state, hung_at):
    """Why a worker that exited is restarted: it never served, it hung, or it died serving."""
    if state == WorkerState.BOOTING:
        return 'boot_failed'
    return 'died' if hung_at is None else 'hung'


def hang_verdict(state, now, last_heartbeat, hung_at, timeout, dumped=False):
    """What to do about one worker's heartbeats; booting workers are the boot timeout's business."""
    if state == WorkerState.BOOTING:
        return HangVerdict.FINE
    if hung_at is None:
        return HangVerdict.DUMP if now - last_heartbeat > timeout else HangVerdict.FINE
    return HangVerdict.KILL if dumped or now - hung_at > HUNG_DUMP_WAIT else HangVerdict.FINE


# ---- actions: what the Arbiter executes

@dataclass(frozen=True)
class Spawn:
    number: int


@dataclass(frozen=True)
class Kill:
    pid: int
    signum: int


@dataclass(frozen=True)
class Log:
    level: int
    message: str
    args: tuple = ()
    event: object = None


@dataclass(frozen=True)
class WriteStatus:
    pass


@dataclass(frozen=True)
class MarkReady:
    pass


@dataclass(frozen=True)
class PrepareReload:
    """Start reading the configuration and running FS_CONFIG_ONLY, off the main loop."""


@dataclass(frozen=True)
class StartGeneration:
    """The prepared configuration becomes `generation`; its workers spawn next."""

    generation: int


@dataclass(frozen=True)
class RetireGeneration:
    """The reload is done: `previous` (its config, its listener if not shared) goes."""

    previous: int


@dataclass(frozen=True)
class RevertGeneration:
    """The reload failed: `failed` goes, `previous` serves on as before."""

    failed: int
    previous: int


@dataclass(frozen=True)
class ReloadFinished:
    outcome: str       # applied, refused, failed
    reason: str
    exit_status: int


@dataclass(frozen=True)
class CountRestart:
    """A worker is replaced, for `reason` (zato_worker_restarts_total{reason})."""

    reason: str


@dataclass(frozen=True)
class Halt:
    reason: str
    exit_status: int
    graceful: bool = False


@dataclass
class Worker:
    """What the master knows of one worker process."""

    number: int
    generation: int
    pid: int
    spawned_at: float
    state: WorkerState = WorkerState.BOOTING
    boot_failure: str = ''
    last_heartbeat: float = None
    hung_at: float = None
    dumped: bool = False
    # Its share of max_requests, drawn at spawn (0: no limit).
    request_limit: int = 0

    def __post_init__(self):
        if self.last_heartbeat is None:
            self.last_heartbeat = self.spawned_at


@dataclass
class Lifecycle:
    """Every decision the master makes about workers and reloads; holds their states.

    `workers` is how many worker numbers each generation has (it may change at a reload:
    `set_target`). Every method takes the time as an argument and returns a list of actions.
    """

    target: int
    generation: int = 1
    workers: dict = field(default_factory=dict)
    ready: bool = False
    reload: ReloadState = ReloadState.IDLE
    reload_queued: bool = False
    # The generation serving before the one a reload boots (None when no reload boots).
    previous_generation: int = None
    previous_target: int = None
    failures: collections.Counter = field(default_factory=collections.Counter)
    spawn_not_before: dict = field(default_factory=dict)
    next_generation: int = 2

    # ---- queries

    def current(self):
        return [worker for worker in self.workers.values() if worker.generation == self.generation]

    def like(self, worker, state):
        """The worker of `worker`'s number and generation in `state`, or None."""
        for other in self.workers.values():
            if (other.number, other.generation, other.state) == (worker.number, worker.generation, state):
                return other
        return None

    def missing_numbers(self):
        """Numbers of the current generation without a worker, or with only one being recycled."""
        live = {worker.number for worker in self.current()
                if worker.state in (WorkerState.BOOTING, WorkerState.READY)}
        return [number for number in range(1, self.target + 1) if number not in live]

    def due_spawns(self, now):
        return [Spawn(number) for number in self.missing_numbers() if now >= self.spawn_not_before.get(number, 0)]

    def wake_up_times(self):
        return list(self.spawn_not_before.values())

    # ---- spawning

    def start(self, now):
        """The first workers."""
        return self.due_spawns(now)

    def spawned(self, pid, number, now, request_limit=0):
        self.workers[pid] = Worker(number, self.generation, pid, now, request_limit=request_limit)
        self.spawn_not_before.pop(number, None)
        return [Log(logging.INFO, 'Worker %d (generation %d) started, pid %d', (number, self.generation, pid)),
                WriteStatus()]

    def spawn_failed(self, number, reason, now):
        """fork() failed: retried with back-off; the master never halts for it."""
        self.failures[number] += 1
        delay = respawn_delay(self.failures[number])
        self.spawn_not_before[number] = now + delay
        return [Log(logging.ERROR, 'Cannot start worker %d: %s; trying again in %.1f s', (number, reason, delay),
                    levels.SPAWN_FAILED)]

    # ---- messages from a worker

    def _move(self, worker, event):
        worker.state = next_worker_state(worker.state, event)

    def reported_ready(self, pid, now):
        worker = self.workers.get(pid)
        if worker is None or worker.state != WorkerState.BOOTING:
            return []
        self._move(worker, WorkerEvent.REPORTED_READY)
        worker.last_heartbeat = now
        actions = [Log(logging.INFO, 'Worker %d (pid %d) is serving', (worker.number, pid))]
        predecessor = self.like(worker, WorkerState.RECYCLING)
        if predecessor is not None:
            self._move(predecessor, WorkerEvent.REPLACED)
            actions += [Log(logging.INFO, 'Worker %d (pid %d) replaced by pid %d; it finishes its requests and exits',
                            (predecessor.number, predecessor.pid, pid)),
                        Kill(predecessor.pid, RETIRE_SIGNAL)]
        return actions + [WriteStatus()] + self._generation_serving()

    def heartbeat(self, pid, now):
        worker = self.workers.get(pid)
        if worker is not None:
            worker.last_heartbeat = now
        return []

    def dumped(self, pid):
        worker = self.workers.get(pid)
        if worker is not None and worker.hung_at is not None:
            worker.dumped = True
            return [Kill(pid, signal.SIGKILL)]
        return []

    def boot_failure_text(self, pid, text):
        worker = self.workers.get(pid)
        if worker is not None:
            worker.boot_failure += text
        return []

    def recycle(self, pid, event, reason_event, message, args):
        """A READY worker is to be replaced (limit, memory, re-bound socket): it serves on
        as RECYCLING until its replacement, which the next due_spawns starts, is ready."""
        worker = self.workers.get(pid)
        if worker is None or worker.state != WorkerState.READY:
            return []
        self._move(worker, event)
        return [Log(reason_event.level if reason_event else logging.WARNING, message, args, reason_event),
                CountRestart('recycled'), WriteStatus()]

    def recycle_all(self, event, reason_event, message):
        """Every READY worker of the current generation is replaced, one replacement each."""
        actions = []
        for worker in self.current():
            if worker.state == WorkerState.READY:
                actions += self.recycle(worker.pid, event, reason_event, message, (worker.number, worker.pid))
        return actions

    def _generation_serving(self):
        """Once every number of the current generation serves: complete a start or a reload."""
        serving = {worker.number for worker in self.current() if worker.state in SERVING_STATES}
        if not serving.issuperset(range(1, self.target + 1)):
            return []
        actions = []
        if self.reload == ReloadState.BOOTING:
            actions += self._complete_reload()
        if not self.ready:
            self.ready = True
            actions.append(MarkReady())
        return actions

    # ---- exits

    def exited(self, pid, description, exit_code, lived, now):
        """A worker is gone (`description`: 'exited with status 3', `exit_code` as
        os.waitstatus_to_exitcode gives it); `lived` seconds after it was spawned."""
        worker = self.workers.pop(pid, None)
        if worker is None:
            return []
        actions = [WriteStatus()]
        meaning = exit_meaning(worker.state, worker.generation == self.generation,
                               self.like(worker, WorkerState.BOOTING) is not None,
                               self.like(worker, WorkerState.RECYCLING) is not None,
                               self.reload == ReloadState.BOOTING, self.ready)
        failure = f': {worker.boot_failure}' if worker.boot_failure else ''
        if meaning == ExitMeaning.DRAINED:
            return actions + [Log(logging.INFO, 'Worker %d (pid %d) drained and %s',
                                  (worker.number, pid, description))]
        if meaning == ExitMeaning.REPLACEMENT_STARTING:
            return actions + [Log(logging.WARNING, 'Worker %d (pid %d) %s; its replacement is starting',
                                  (worker.number, pid, description), levels.WORKER_EXITED)]
        if meaning == ExitMeaning.PREVIOUS_GENERATION:
            return actions + [Log(logging.WARNING, 'Worker %d (pid %d) of a previous generation %s',
                                  (worker.number, pid, description), levels.WORKER_EXITED)]
        if meaning == ExitMeaning.RELOAD_FAILED:
            return actions + self._abort_reload(f'new worker {worker.number} {description} before it was ready'
                                                f'{failure}')
        if meaning == ExitMeaning.START_FAILED:
            if exit_code == EXIT_CONFIG:
                return actions + [Halt(f'worker {worker.number} could not deploy its services'
                                       f'{failure or ": see the log above"}', EXIT_CONFIG)]
            return actions + [Halt(f'worker {worker.number} {description} while starting{failure}', EXIT_SOFTWARE)]
        if meaning == ExitMeaning.REPLACEMENT_FAILED:
            predecessor = self.like(worker, WorkerState.RECYCLING)
            actions.append(Log(logging.ERROR, 'The replacement of worker %d %s before it was ready%s; worker %d '
                                              '(pid %d) keeps serving and the replacement is tried again',
                               (worker.number, description, failure, predecessor.number, predecessor.pid),
                               levels.WORKER_BOOT_FAILED))
        elif worker.state == WorkerState.BOOTING:
            actions.append(Log(logging.ERROR, 'Worker %d %s before it was ready%s; the other workers serve on',
                               (worker.number, description, failure), levels.WORKER_BOOT_FAILED))
        actions.append(CountRestart(restart_reason(worker.state, worker.hung_at)))
        self.failures[worker.number] = next_failure_count(self.failures[worker.number], lived)
        delay = respawn_delay(self.failures[worker.number])
        self.spawn_not_before[worker.number] = now + delay
        return actions + [Log(logging.WARNING, 'Worker %d (pid %d) %s; restarting it in %.1f s',
                              (worker.number, pid, description, delay), levels.WORKER_EXITED)]

    # ---- the clock

    def tick(self, now, boot_timeout, hang_timeout):
        """Boot timeouts and hung workers."""
        actions = []
        for worker in list(self.workers.values()):
            if worker.state == WorkerState.BOOTING and now - worker.spawned_at > boot_timeout:
                actions += [Log(logging.ERROR, 'Worker %d (pid %d) was not ready after %.0f s; killing it',
                                (worker.number, worker.pid, boot_timeout), levels.WORKER_BOOT_TIMEOUT),
                            Kill(worker.pid, signal.SIGKILL)]
                worker.spawned_at = now
                continue
            verdict = hang_verdict(worker.state, now, worker.last_heartbeat, worker.hung_at, hang_timeout,
                                   worker.dumped)
            if verdict == HangVerdict.DUMP:
                worker.hung_at = now
                actions += [Log(logging.ERROR, 'Worker %d (pid %d) sent no heartbeat for %.0f s: its hub is '
                                               'blocked; dumping it, then replacing it',
                                (worker.number, worker.pid, hang_timeout), levels.WORKER_HUNG),
                            Kill(worker.pid, signal.SIGURG)]
            elif verdict == HangVerdict.KILL:
                actions.append(Kill(worker.pid, signal.SIGKILL))
        return actions

    # ---- reload

    def request_reload(self):
        self.reload, self.reload_queued = next_reload_state(self.reload, self.reload_queued, ReloadEvent.REQUESTED)
        if self.reload_queued:
            return [Log(logging.INFO, 'Reload requested while one is in progress; it follows once this one ends')]
        return [PrepareReload()]

    def reload_refused(self, reason, exit_status):
        self.reload, self.reload_queued = next_reload_state(self.reload, self.reload_queued, ReloadEvent.REFUSED)
        return [Log(logging.ERROR, 'Reload refused, still serving the previous configuration: %s', (reason,),
                    levels.RELOAD_REFUSED),
                ReloadFinished('refused', reason, exit_status)] + self._next_queued()

    def reload_prepared(self, target):
        """The new configuration loaded: a new generation of `target` workers starts beside the old."""
        self.reload, self.reload_queued = next_reload_state(self.reload, self.reload_queued, ReloadEvent.PREPARED)
        self.previous_generation, self.previous_target = self.generation, self.target
        self.generation, self.target = self.next_generation, target
        # Never reused, even after an aborted reload: a worker of the aborted generation not
        # reaped yet must not count for the next one.
        self.next_generation += 1
        return [StartGeneration(self.generation), WriteStatus()]

    def _complete_reload(self):
        self.reload, self.reload_queued = next_reload_state(self.reload, self.reload_queued,
                                                            ReloadEvent.GENERATION_READY)
        previous, self.previous_generation = self.previous_generation, None
        actions = []
        for worker in self.workers.values():
            if worker.generation != self.generation and worker.state in SERVING_STATES:
                self._move(worker, WorkerEvent.RETIRED)
                actions.append(Kill(worker.pid, RETIRE_SIGNAL))
        return actions + [RetireGeneration(previous), WriteStatus(),
                          ReloadFinished('applied', 'the new workers serve', 0)] + self._next_queued()

    def _abort_reload(self, reason):
        self.reload, self.reload_queued = next_reload_state(self.reload, self.reload_queued,
                                                            ReloadEvent.GENERATION_FAILED)
        failed, previous = self.generation, self.previous_generation
        actions = [Log(logging.ERROR, 'Reload failed (%s); still serving the previous configuration', (reason,),
                       levels.RELOAD_FAILED)]
        # New workers already serving finish what they accepted; the others never served.
        for worker in self.current():
            if worker.state in SERVING_STATES:
                self._move(worker, WorkerEvent.RETIRED)
                actions.append(Kill(worker.pid, RETIRE_SIGNAL))
            elif worker.state == WorkerState.BOOTING:
                actions.append(Kill(worker.pid, signal.SIGKILL))
        self.generation, self.target = previous, self.previous_target
        self.previous_generation = None
        for number in list(self.spawn_not_before):
            if number > self.target:
                del self.spawn_not_before[number]
        return actions + [RevertGeneration(failed, previous), WriteStatus(),
                          ReloadFinished('failed', reason, EXIT_SOFTWARE)] + self._next_queued()

    def _next_queued(self):
        if self.reload_queued and self.reload == ReloadState.IDLE:
            self.reload_queued = False
            return self.request_reload()
        return []

    # ---- stop

    def stop(self):
        """Every worker drains (the Arbiter signals them as the stop says)."""
        for worker in self.workers.values():
            self._move(worker, WorkerEvent.STOPPED)
        return []
