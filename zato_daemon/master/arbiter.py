"""The master process: spawns, supervises, reloads and stops the workers.

Rule 1: signal handlers only enqueue the signal; everything else happens in the main
loop, so no handler ever logs, allocates a worker or races another handler.
Rule 2: every change to the set of workers happens in this file.
Rule 3: gevent is never imported here. The child branch of `spawn_worker` imports the
worker module after fork; the master stays a plain single-threaded process.

Theory of operation. `run()` loops over four steps: wait up to a second for a signal
or a message from a worker; dispatch queued signals to `handle_<name>`; reap exited
workers; then check booting workers and spawn missing ones. Workers belong to a
generation: a reload starts a new generation next to the serving one and tells the
old one to drain only once every new worker reported ready, so the listening socket
always has a worker accepting on it. A worker is recycled the same way, alone: past its
share of max_requests (it says so) or over max_worker_memory (the master reads /proc),
it turns RECYCLING and keeps serving, its number counts as missing so that a replacement
of the same number and generation spawns, and it drains once that replacement is ready.
Shutdown travels as HaltServer up to `run()`.
"""

import _thread
import collections
import enum
import itertools
import logging
import os
import random
import select
import signal
import time
from dataclasses import dataclass, field

from setproctitle import setproctitle

from zato_daemon import __version__, sd
from zato_daemon.errors import EXIT_CONFIG, EXIT_SOFTWARE, HaltServer, ZatoDaemonError
from zato_daemon.logs import levels
from zato_daemon.logs.setup import configure_logging
from zato_daemon.sockets import address_of, bind_tcp
from zato_daemon.startup import load_config_and_run_fs_config_only
from zato_daemon.status import write_status
from zato_daemon.dump.setup import install_dump, reconfigure_dump
from zato_daemon.master.recycling import (MEMORY_CHECK_INTERVAL, draw_request_limit, format_size, read_rss,
                                          should_recycle_for_memory)
from zato_daemon.worker.channel import (BOOT_FAILED_PREFIX, DUMPED_MESSAGE, HEARTBEAT_MESSAGE,
                                        LIMIT_REACHED_MESSAGE, READY_MESSAGE, RETIRE_SIGNAL, WORKER_SIGNALS)

logger = logging.getLogger('zato_daemon.master')

# A restarted worker waits 0.1 s, then twice as long after each quick failure, up to
# this ceiling; a worker that lived longer than STABLE_AFTER resets the count.
MAX_RESPAWN_DELAY = 30.0
STABLE_AFTER = 10.0

# During a graceful stop, one of these means "stop now".
QUICK_STOP_SIGNALS = (signal.SIGINT, signal.SIGQUIT)

# The master wakes at least this often: watchdog, reaping, boot and hang checks.
LOOP_TICK = 1.0

# How long a quick stop (SIGINT) waits before SIGKILL, and the extra time a graceful
# stop gives workers beyond graceful_timeout to flush and exit.
QUICK_STOP_WAIT = 3.0
GRACEFUL_STOP_MARGIN = 5.0
# How long a hung worker may take to write its dump before it is killed anyway.
HUNG_DUMP_WAIT = 10.0

SIGNAL_NAMES = {
    signal.SIGTERM: 'term',
    signal.SIGINT: 'int',
    signal.SIGQUIT: 'quit',
    signal.SIGHUP: 'hup',
    signal.SIGCHLD: 'chld',
}


class WorkerState(enum.Enum):
    BOOTING = 'booting'
    READY = 'ready'
    # Serves until its replacement (same number and generation) is ready, then drains:
    # past max_requests or max_worker_memory.
    RECYCLING = 'recycling'
    DRAINING = 'draining'


# The states in which a worker accepts connections on the listening socket.
SERVING_STATES = (WorkerState.READY, WorkerState.RECYCLING)


@dataclass
class WorkerRecord:
    """What the master knows of one worker process."""

    number: int
    generation: int
    pid: int
    status_fd: int
    state: WorkerState = WorkerState.BOOTING
    boot_failure: str = ''
    spawned_at: float = field(default_factory=time.monotonic)
    last_heartbeat: float = field(default_factory=time.monotonic)
    hung_at: float = None
    started_at: float = field(default_factory=time.time)
    # Its share of max_requests, drawn at spawn (0: no limit).
    request_limit: int = 0

    def as_dict(self):
        return {'number': self.number, 'generation': self.generation, 'pid': self.pid,
                'state': self.state.value, 'started_at': self.started_at}


@dataclass
class PendingReload:
    """What to go back to if the new generation fails to boot."""

    generation: int
    config: object
    listener: object
    callables: list
    server_dir: object


class Arbiter:
    """Runs in the master process, from `start` until the server stops."""

    def __init__(self, server_dir, config, listener, admin_listener, callables=(), foreground=False,
                 on_ready=None, on_halt=None, private_fds=()):
        self.server_dir = server_dir
        self.callables = list(callables)
        self.set_listener(listener, config)
        self.admin_listener = admin_listener
        self.foreground = foreground
        self.on_ready = on_ready
        self.on_halt = on_halt
        # Descriptors only the master may hold (the pidfile lock, the daemonizing pipe):
        # a worker closes them first thing, so an orphaned worker never holds the lock.
        self.private_fds = tuple(private_fds)
        self.pid = os.getpid()
        self.started_at = time.time()
        # Same for every worker of this run of the server, across reloads and respawns.
        self.boot_id = f'{self.pid}-{self.started_at}'
        self.workers = {}
        self.generation = 1
        # A generation number is never reused, even after an aborted reload: a worker of the
        # aborted one that is not reaped yet must not count for the next.
        self.generation_numbers = itertools.count(2)
        self.is_ready = False
        self.pending_reload = None
        self.signal_queue = collections.deque()
        self.dump_trigger = None
        self.failures = collections.Counter()
        self.spawn_not_before = {}
        self.rng = random.Random()
        self.next_memory_check = 0.0
        self._wakeup_read = self._wakeup_write = None

    def set_listener(self, listener, config):
        """Switches to a config and its listener; remembers both forms of the address."""
        self.config = config
        self.listener = listener
        self.listen_address = _configured_address(config)
        # Kept as text: `info` must still show it while the socket is closed at stop.
        self.listen_text = address_of(listener)

    # ---- main loop

    def run(self):
        """Serves until stopped; returns the process exit status."""
        self.setup()
        try:
            self.spawn_workers()
            while True:
                self.wait_for_events(loop_timeout(time.monotonic(), self.wake_up_times()))
                sd.watchdog()
                self.dispatch_signals()
                self.reap_workers()
                self.check_booting_workers()
                self.check_hung_workers()
                self.check_worker_memory()
                self.manage_workers()
        except HaltServer as halt:
            self.halt(halt)
            return halt.exit_status
        except (Exception, SystemExit):
            # SystemExit too: user code (a startup callable at reload) must not end the master
            # without stopping its workers and removing its runtime files.
            logger.exception('Unexpected error in the master; stopping the workers')
            self.halt(HaltServer('master error', EXIT_SOFTWARE, graceful=False))
            return EXIT_SOFTWARE

    def wake_up_times(self):
        """When the loop must run again at the latest: due respawns, the next memory check."""
        if self.config.server_config.main.max_worker_memory:
            return [*self.spawn_not_before.values(), self.next_memory_check]
        return self.spawn_not_before.values()

    def setup(self):
        """Names the process, installs the enqueue-only signal handlers and the wakeup pipe."""
        setproctitle(f'zato-daemon: master {self.server_dir.base}')
        self._wakeup_read, self._wakeup_write = os.pipe()
        for fd in (self._wakeup_read, self._wakeup_write):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wakeup_write, warn_on_full_buffer=False)
        for signum in SIGNAL_NAMES:
            signal.signal(signum, self.enqueue_signal)
        self.dump_trigger = install_dump(self.config, self.server_dir, 'master', self.foreground,
                                         lambda function: _thread.start_new_thread(function, ()),
                                         before_dump=self.forward_dump_request)
        self.write_status()

    def forward_dump_request(self):
        """Runs in the master's dump thread: every worker dumps too. A worker that got the
        signal directly as well (`systemctl kill` reaches them all) folds the two into one."""
        for pid in list(self.workers):
            try:
                os.kill(pid, signal.SIGURG)
            except ProcessLookupError:
                pass

    def enqueue_signal(self, signum, frame):
        """Signal handler: enqueue only, no logging. A signal already queued is not queued twice."""
        if signum not in self.signal_queue:
            self.signal_queue.append(signum)

    def wait_for_events(self, timeout):
        """Sleeps until a signal arrives, a worker reports, or `timeout` passes."""
        status_fds = {record.status_fd: record for record in self.workers.values() if record.status_fd >= 0}
        try:
            readable, _, _ = select.select([self._wakeup_read, *status_fds], [], [], timeout)
        except InterruptedError:
            return
        for fd in readable:
            if fd == self._wakeup_read:
                self._drain_wakeup_pipe()
            else:
                self.read_worker_message(status_fds[fd])

    def _drain_wakeup_pipe(self):
        try:
            while os.read(self._wakeup_read, 4096):
                pass
        except BlockingIOError:
            pass

    def dispatch_signals(self):
        """Calls handle_<name> for each queued signal, oldest first."""
        while self.signal_queue:
            signum = self.signal_queue.popleft()
            getattr(self, f'handle_{SIGNAL_NAMES[signum]}')()

    # ---- signal handlers (called from the main loop, not from the signal)

    def handle_term(self):
        """SIGTERM: graceful stop."""
        raise HaltServer('SIGTERM received', graceful=True)

    def handle_int(self):
        """SIGINT (Ctrl-C): quick stop."""
        raise HaltServer('SIGINT received', graceful=False)

    def handle_quit(self):
        """SIGQUIT: quick stop."""
        raise HaltServer('SIGQUIT received', graceful=False)

    def handle_chld(self):
        """SIGCHLD: a worker exited."""
        self.reap_workers()

    def handle_hup(self):
        """SIGHUP: reload."""
        self.reload()

    # ---- workers

    def spawn_workers(self):
        """Starts every missing worker of the current generation."""
        for number in self.missing_worker_numbers():
            self.spawn_worker(number)

    def spawn_worker(self, number):
        """Forks one worker. The child never returns from here.

        The worker signals stay blocked across fork until the child has its own handlers:
        a TERM arriving in between would otherwise hit the master's enqueue-only handler
        in the child and be lost.
        """
        main = self.config.server_config.main
        request_limit = draw_request_limit(main.max_requests, main.max_requests_jitter, self.rng)
        read_fd, write_fd = os.pipe()
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
        pid = os.fork()
        if pid == 0:
            self._become_worker(number, read_fd, write_fd, request_limit)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        os.close(write_fd)
        self.add_worker(WorkerRecord(number, self.generation, pid, read_fd, request_limit=request_limit))
        return pid

    def add_worker(self, record):
        """Records a worker just forked."""
        self.workers[record.pid] = record
        self.spawn_not_before.pop(record.number, None)
        logger.info('Worker %d (generation %d) started, pid %d', record.number, record.generation, record.pid)
        self.write_status()

    def _become_worker(self, number, read_fd, write_fd, request_limit):
        # Child branch: whatever happens, the child ends here with os._exit, so that it
        # never runs the master's loop or its cleanup.
        status = EXIT_SOFTWARE
        try:
            os.close(read_fd)
            for record in self.workers.values():
                if record.status_fd >= 0:
                    os.close(record.status_fd)
            signal.set_wakeup_fd(-1)
            if self.dump_trigger is not None:
                self.dump_trigger.discard_after_fork()
            for fd in (self._wakeup_read, self._wakeup_write, *self.private_fds):
                os.close(fd)
            if self.pending_reload is not None and self.pending_reload.listener is not self.listener:
                self.pending_reload.listener.close()
            from zato_daemon.worker.process import WorkerSpec, run_worker
            spec = WorkerSpec(number=number, generation=self.generation, boot_id=self.boot_id, master_pid=self.pid,
                              config=self.config, callables=self.callables, server_dir=self.server_dir,
                              listener=self.listener,
                              admin_listener=self.admin_listener, status_fd=write_fd,
                              foreground=self.foreground, request_limit=request_limit)
            status = run_worker(spec)
        except BaseException:
            logger.exception('Worker %d failed', number)
        finally:
            logging.shutdown()
            os._exit(status)

    def missing_worker_numbers(self):
        """Worker numbers of the current generation that have no live process, or only one
        that is being recycled (it serves until the replacement spawned for it is ready)."""
        live = {record.number for record in self.workers.values()
                if record.generation == self.generation and record.state in (WorkerState.BOOTING, WorkerState.READY)}
        target = self.config.server_config.main.workers
        return [number for number in range(1, target + 1) if number not in live]

    def manage_workers(self):
        """Respawns missing workers whose back-off delay has passed."""
        now = time.monotonic()
        for number in self.missing_worker_numbers():
            if now >= self.spawn_not_before.get(number, 0):
                self.spawn_worker(number)

    def read_worker_message(self, record):
        """Reads what a worker wrote on its pipe; end of file means it is gone."""
        try:
            data = os.read(record.status_fd, 65536)
        except OSError:
            data = b''
        if not data:
            os.close(record.status_fd)
            record.status_fd = -1
            return
        self.on_worker_message(record, data)

    def on_worker_message(self, record, data):
        """Acts on the messages of worker/channel.py in `data`, in the order a worker sends them."""
        # One-byte messages, except a boot failure: its prefix and text are the last thing a
        # worker writes, so whatever follows the prefix is text, whatever precedes it codes.
        data, failed, text = data.partition(BOOT_FAILED_PREFIX)
        if failed:
            record.boot_failure += text.decode('utf-8', 'replace')
        elif record.boot_failure:
            record.boot_failure += data.decode('utf-8', 'replace')
            return
        if HEARTBEAT_MESSAGE in data:
            record.last_heartbeat = time.monotonic()
        if DUMPED_MESSAGE in data and record.hung_at is not None:
            self.kill_worker(record, signal.SIGKILL)
        if READY_MESSAGE in data and record.state == WorkerState.BOOTING:
            record.state = WorkerState.READY
            record.last_heartbeat = time.monotonic()
            logger.info('Worker %d (pid %d) is serving', record.number, record.pid)
            self.retire_recycled_worker(record)
            self.write_status()
            self.on_worker_ready()
        if LIMIT_REACHED_MESSAGE in data and record.state == WorkerState.READY:
            main = self.config.server_config.main
            self.recycle_worker(record, levels.WORKER_RECYCLED,
                                'Worker %d (pid %d) reached its limit of %d requests (max_requests %d plus '
                                'jitter); replacing it', record.number, record.pid, record.request_limit,
                                main.max_requests)

    def reap_workers(self):
        """Collects exited workers and decides what each exit means."""
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            record = self.workers.pop(pid, None)
            if record is not None:
                self.on_worker_exit(record, wait_status)

    def on_worker_exit(self, record, wait_status):
        """Logs the exit, and schedules a replacement or halts, depending on how it ended."""
        # The worker may have written its last words (a boot failure) just before exiting.
        while record.status_fd >= 0:
            self.read_worker_message(record)
        self.write_status()
        description = describe_exit(wait_status)
        if record.state == WorkerState.DRAINING:
            logger.info('Worker %d (pid %d) drained and %s', record.number, record.pid, description)
            return
        if record.state == WorkerState.RECYCLING and self.replacement_of(record) is not None:
            logger.warning('Worker %d (pid %d) %s; its replacement is starting', record.number, record.pid,
                           description, extra=levels.WORKER_EXITED.extra)
            return
        code = os.waitstatus_to_exitcode(wait_status)
        if record.state == WorkerState.BOOTING and record.generation == self.generation:
            self.on_boot_failure(record, code, description)
        if record.generation != self.generation:
            logger.warning('Worker %d (pid %d) of a previous generation %s', record.number, record.pid, description,
                           extra=levels.WORKER_EXITED.extra)
            return
        lived = time.monotonic() - record.spawned_at
        self.failures[record.number] = 1 if lived > STABLE_AFTER else self.failures[record.number] + 1
        delay = min(0.1 * 2 ** (self.failures[record.number] - 1), MAX_RESPAWN_DELAY)
        self.spawn_not_before[record.number] = time.monotonic() + delay
        logger.warning('Worker %d (pid %d) %s; restarting it in %.1f s',
                       record.number, record.pid, description, delay, extra=levels.WORKER_EXITED.extra)

    def on_boot_failure(self, record, code, description):
        """A worker of the current generation died before serving."""
        predecessor = self.recycled_by(record)
        if predecessor is not None:
            # The worker it was to replace still serves: a service file broken since it
            # started must not stop a server that serves, as a reload would not either.
            logger.error('The replacement of worker %d %s before it was ready%s; worker %d (pid %d) keeps serving '
                         'and the replacement is tried again', record.number, description,
                         f': {record.boot_failure}' if record.boot_failure else '', predecessor.number,
                         predecessor.pid, extra=levels.WORKER_BOOT_FAILED.extra)
            return
        if self.pending_reload is not None:
            self.abort_reload(f'new worker {record.number} {description} before it was ready')
            return
        if code == EXIT_CONFIG:
            raise HaltServer(f'worker {record.number} could not deploy its services: '
                             f'{record.boot_failure or "see the log above"}', EXIT_CONFIG, graceful=False)
        if not self.is_ready:
            reason = f': {record.boot_failure}' if record.boot_failure else ''
            raise HaltServer(f'worker {record.number} {description} while starting{reason}', EXIT_SOFTWARE,
                             graceful=False)

    def check_booting_workers(self):
        """Kills workers that did not report ready within worker_boot_timeout."""
        timeout = self.config.server_config.main.worker_boot_timeout
        now = time.monotonic()
        for record in list(self.workers.values()):
            if record.state == WorkerState.BOOTING and now - record.spawned_at > timeout:
                logger.error('Worker %d (pid %d) was not ready after %.0f s; killing it',
                             record.number, record.pid, timeout, extra=levels.WORKER_BOOT_TIMEOUT.extra)
                self.kill_worker(record, signal.SIGKILL)
                record.spawned_at = now

    def check_hung_workers(self):
        """A worker whose hub sent no heartbeat for hang_timeout: dump it, then replace it.

        The dump needs no hub (its own thread), so it shows the frame that blocks. The worker
        is killed once it reports the dump written, or after HUNG_DUMP_WAIT.
        """
        # Heartbeats that arrived while the master was busy (a reload running slow startup
        # callables) are read first: a busy master must not take its workers for hung.
        self.wait_for_events(0)
        timeout = self.config.server_config.main.hang_timeout
        now = time.monotonic()
        for record in list(self.workers.values()):
            if record.state == WorkerState.BOOTING:
                continue
            if record.hung_at is None and now - record.last_heartbeat > timeout:
                record.hung_at = now
                logger.error('Worker %d (pid %d) sent no heartbeat for %.0f s: its hub is blocked; '
                             'dumping it, then replacing it', record.number, record.pid, timeout,
                             extra=levels.WORKER_HUNG.extra)
                self.kill_worker(record, signal.SIGURG)
            elif record.hung_at is not None and now - record.hung_at > HUNG_DUMP_WAIT:
                self.kill_worker(record, signal.SIGKILL)

    def check_worker_memory(self):
        """Replaces serving workers whose resident memory passed max_worker_memory.

        Reads /proc, not the worker, so a worker whose hub is blocked is measured too; at
        most once every MEMORY_CHECK_INTERVAL, and only READY workers (one being recycled,
        booting or draining is on its way out or not serving yet).
        """
        limit = self.config.server_config.main.max_worker_memory
        now = time.monotonic()
        if not limit or now < self.next_memory_check:
            return
        self.next_memory_check = now + MEMORY_CHECK_INTERVAL
        for record in list(self.workers.values()):
            if record.state != WorkerState.READY:
                continue
            rss = read_rss(record.pid)
            if should_recycle_for_memory(rss, limit, now - record.spawned_at):
                self.recycle_worker(record, levels.WORKER_MEMORY_RECYCLED,
                                    'Worker %d (pid %d) uses %s of resident memory, over max_worker_memory %s; '
                                    'replacing it', record.number, record.pid, format_size(rss), format_size(limit))

    def recycle_worker(self, record, event, message, *args):
        """Starts replacing a READY worker: it serves on as RECYCLING, manage_workers spawns
        its replacement (for a worker of the generation a reload replaces: the reload does),
        and it drains once the replacement is ready."""
        logger.log(event.level, message, *args, extra=event.extra)
        record.state = WorkerState.RECYCLING
        self.write_status()

    def replacement_of(self, record):
        """The worker started in place of a recycling one: same number and generation, booting."""
        return self.worker_like(record, WorkerState.BOOTING)

    def recycled_by(self, replacement):
        """The RECYCLING worker that `replacement` (same number and generation) is to replace, or None."""
        return self.worker_like(replacement, WorkerState.RECYCLING)

    def worker_like(self, record, state):
        """The worker of `record`'s number and generation in `state`, or None."""
        for other in self.workers.values():
            if (other.number, other.generation, other.state) == (record.number, record.generation, state):
                return other
        return None

    def retire_recycled_worker(self, replacement):
        """A worker just turned ready: the one it replaces, if any, drains now."""
        record = self.recycled_by(replacement)
        if record is not None:
            logger.info('Worker %d (pid %d) replaced by pid %d; it finishes its requests and exits',
                        record.number, record.pid, replacement.pid)
            record.state = WorkerState.DRAINING
            self.kill_worker(record, RETIRE_SIGNAL)

    def kill_worker(self, record, signum):
        """Signals one worker; one that is already gone is reaped by the loop."""
        try:
            os.kill(record.pid, signum)
        except ProcessLookupError:
            pass

    def kill_workers(self, signum, generation=None):
        """Sends a signal to every worker, or to those of one generation."""
        for record in list(self.workers.values()):
            if generation is None or record.generation == generation:
                self.kill_worker(record, signum)

    def current_workers(self):
        """Workers of the generation being served (or booting, during a reload)."""
        return [record for record in self.workers.values() if record.generation == self.generation]

    def on_worker_ready(self):
        """Called whenever a worker turns ready: completes a start or a reload once every
        worker number of the generation serves (a recycling worker serves)."""
        serving = {record.number for record in self.current_workers() if record.state in SERVING_STATES}
        if not serving.issuperset(range(1, self.config.server_config.main.workers + 1)):
            return
        if self.pending_reload is not None:
            self.complete_reload()
        if not self.is_ready:
            self.mark_ready()

    def mark_ready(self):
        """The first time every worker serves: tell systemd, the log and whoever started us."""
        self.is_ready = True
        summary = self.summary()
        logger.info('Server ready: %s', summary, extra=levels.SERVER_READY.extra)
        sd.ready(summary)
        if self.on_ready is not None:
            self.on_ready(self)

    def summary(self):
        """One line on what the server serves, for STATUS= and the log."""
        main = self.config.server_config.main
        return (f'{main.workers} worker(s) serving on http://{self.listen_text}, '
                f'config {self.server_dir.base}')

    # ---- reload

    def reload(self):
        """SIGHUP: re-reads the config and starts a new generation beside the serving one."""
        if self.pending_reload is not None:
            logger.warning('Reload requested while one is in progress; ignored')
            return
        logger.info('Reloading: reading the configuration in %s', self.server_dir.base)
        sd.watchdog()
        try:
            config, callables, server_dir = load_config_and_run_fs_config_only(self.server_dir.base)
            server_dir.ensure()
            listener = self.listener_for(config)
        except ZatoDaemonError as exc:
            logger.error('Reload refused, still serving the previous configuration: %s', exc,
                         extra=levels.RELOAD_REFUSED.extra)
            return
        sd.watchdog()
        sd.reloading('reloading')
        self.pending_reload = PendingReload(self.generation, self.config, self.listener, self.callables,
                                            self.server_dir)
        self.set_listener(listener, config)
        self.callables = callables
        self.server_dir = server_dir
        self.generation = next(self.generation_numbers)
        self.spawn_workers()

    def listener_for(self, config):
        """The current listener, or a new one if host or port changed."""
        main = config.server_config.main
        if _configured_address(config) == self.listen_address:
            return self.listener
        return bind_tcp(main.host, main.port, main.backlog)

    def complete_reload(self):
        """Every new worker serves: retire the previous generation."""
        previous, self.pending_reload = self.pending_reload, None
        for record in self.workers.values():
            if record.generation != self.generation and record.state != WorkerState.DRAINING:
                record.state = WorkerState.DRAINING
                self.kill_worker(record, RETIRE_SIGNAL)
        if previous.listener is not self.listener:
            previous.listener.close()
        configure_logging(self.config, self.server_dir, 'master', self.foreground)
        if self.dump_trigger is not None:
            reconfigure_dump(self.dump_trigger, self.config, self.server_dir, self.foreground)
        self.write_status()
        summary = self.summary()
        logger.info('Reload complete: %s; the previous workers are draining', summary,
                    extra=levels.RELOAD_COMPLETE.extra)
        if self.is_ready:
            sd.ready(summary)

    def abort_reload(self, reason):
        """A new worker failed: kill the new generation, go back to the previous one."""
        previous, self.pending_reload = self.pending_reload, None
        logger.error('Reload failed (%s); still serving the previous configuration', reason,
                     extra=levels.RELOAD_FAILED.extra)
        # New workers already serving finish what they accepted; the others never served.
        for record in self.current_workers():
            if record.state in SERVING_STATES:
                record.state = WorkerState.DRAINING
                self.kill_worker(record, RETIRE_SIGNAL)
            else:
                self.kill_worker(record, signal.SIGKILL)
        if previous.listener is not self.listener:
            self.listener.close()
        self.generation = previous.generation
        self.set_listener(previous.listener, previous.config)
        self.callables = previous.callables
        self.server_dir = previous.server_dir
        self.write_status()
        if self.is_ready:
            sd.ready(self.summary())

    # ---- stop

    def halt(self, halt):
        """Stops every worker (gracefully or not), then removes the runtime files."""
        how = 'gracefully' if halt.graceful else 'quickly'
        logger.info('Stopping %s: %s', how, halt.reason)
        sd.stopping(f'stopping {how}')
        # The socket stops accepting once the workers close their copies too: new
        # connections are refused instead of waiting in a backlog nobody will serve.
        self.close_listeners()
        self.stop_workers(halt.graceful)
        self.cleanup()
        if self.on_halt is not None:
            self.on_halt(halt)
        event = levels.SERVER_STOPPED if halt.exit_status == 0 else levels.SERVER_HALTED
        logger.log(event.level, 'Server stopped (exit status %d): %s', halt.exit_status, halt.reason,
                   extra=event.extra)

    def stop_workers(self, graceful):
        """Drains or quits all workers, escalating to SIGKILL at the deadline."""
        graceful_timeout = self.config.server_config.main.graceful_timeout
        wait = graceful_timeout + GRACEFUL_STOP_MARGIN if graceful else QUICK_STOP_WAIT
        for record in self.workers.values():
            record.state = WorkerState.DRAINING
        self.kill_workers(signal.SIGTERM if graceful else signal.SIGQUIT)
        deadline = time.monotonic() + wait
        while self.workers and time.monotonic() < deadline:
            self.wait_for_events(0.1)
            if graceful and self._quick_stop_requested():
                graceful = False
                deadline = min(deadline, time.monotonic() + QUICK_STOP_WAIT)
                self.kill_workers(signal.SIGQUIT)
            self.reap_workers()
        if self.workers:
            logger.warning('Workers still running after %.0f s, killing them: %s', wait,
                           ', '.join(str(pid) for pid in self.workers), extra=levels.WORKERS_KILLED.extra)
            self.kill_workers(signal.SIGKILL)
            while self.workers:
                pid, _ = os.waitpid(-1, 0)
                self.workers.pop(pid, None)

    def _quick_stop_requested(self):
        # A second Ctrl-C during a graceful stop means "now".
        return take_quick_stop_request(self.signal_queue)

    def close_listeners(self):
        """Closes the master's copies of the sockets; the workers close theirs as they drain."""
        self.listener.close()
        self.admin_listener.close()
        if self.pending_reload is not None:
            self.pending_reload.listener.close()

    def cleanup(self):
        """Removes the runtime files `info` and the CLI rely on; the pidfile goes last, in launch."""
        for path in (self.server_dir.status_file, self.server_dir.admin_socket):
            try:
                os.unlink(path)
            except OSError:
                pass

    def write_status(self):
        """Publishes pids and states for `info`; a failure to write is logged, never fatal."""
        in_effect = self.pending_reload.server_dir if self.pending_reload is not None else self.server_dir
        status = {
            'master_proc_pid': self.pid,
            'started_at': self.started_at,
            'version': __version__,
            'config_dir': str(self.server_dir.base),
            'listen': self.listen_text,
            # As FS_CONFIG_ONLY left them: the CLI's dump, slow and samples read these instead
            # of the files, which a startup callable may have overridden. Until a reload
            # completes, the master logs and dumps as its previous config says.
            'server_log': str(in_effect.server_log),
            'diagnostics_database': str(in_effect.diagnostics_database),
            'paths': in_effect.as_dict(),
            'workers': sorted((record.as_dict() for record in self.workers.values()),
                              key=lambda worker: (worker['generation'], worker['number'])),
        }
        try:
            write_status(self.server_dir.status_file, status)
        except OSError as exc:
            logger.warning('Cannot write %s: %s', self.server_dir.status_file, exc.strerror)


def take_quick_stop_request(signal_queue):
    """Empties the queue of signals; True when SIGINT or SIGQUIT was among them.

    Taken one by one: the handler appends to the queue between any two bytecodes (a worker
    exiting during the stop sends SIGCHLD), and a loop over the deque itself then fails
    with 'deque mutated during iteration', which ended a graceful stop with a traceback.
    """
    requested = False
    while signal_queue:
        requested |= signal_queue.popleft() in QUICK_STOP_SIGNALS
    return requested


def loop_timeout(now, respawns_due, tick=LOOP_TICK):
    """How long the master may wait for events: a tick, or less when a respawn falls due sooner
    (the back-off starts at 0.1 s)."""
    return min([tick, *(due - now for due in respawns_due if due > now)])


def _configured_address(config):
    # Compared as written in the config: 'localhost' stays 'localhost', whatever it resolved to.
    main = config.server_config.main
    return main.host, main.port


def describe_exit(wait_status):
    """'exited with status 3' or 'was killed by SIGKILL', for the log."""
    if os.WIFSIGNALED(wait_status):
        return f'was killed by {signal.Signals(os.WTERMSIG(wait_status)).name}'
    return f'exited with status {os.WEXITSTATUS(wait_status)}'
