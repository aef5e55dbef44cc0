"""The master process: executes what master/lifecycle.py decides about the workers.

Rule 1: signal handlers only enqueue the signal; everything else happens in the main
loop, so no handler ever logs, allocates a worker or races another handler.
Rule 2: every decision about workers and reloads is lifecycle.py's, a pure module; this
file turns what the operating system says into its events and executes its actions
(fork, kill, log, write master.json, switch generations, halt).
Rule 3: gevent is never imported here. The child branch of `spawn_worker` imports the
worker module after fork. The master runs user code (startup callables) only in a
thread (master/preparation.py), so that its loop always goes on.

Theory of operation. `run()` loops: wait up to a second for a signal, a message from a
worker or the end of a reload's preparation; dispatch queued signals; reap exited workers
(by pid: the master's other children, such as the processes that check service modules,
are not its business); feed the clock to the lifecycle (boot timeouts, hung workers),
check memory and the runtime files; spawn the workers that are due. Workers belong to a
generation: a reload prepares a new configuration in a thread, starts a new generation
next to the serving one and retires the old one only once every new worker is ready, so
the listening socket always has a worker accepting on it. Shutdown travels as HaltServer
up to `run()`.
"""

import _thread
import collections
import logging
import os
import random
import select
import signal
import time
from dataclasses import dataclass

from setproctitle import setproctitle

from zato_daemon import __version__, redaction, sd
from zato_daemon.cluster import settings as cluster_settings
from zato_daemon.deploy.pickup import PickupDeployer
from zato_daemon.deploy.probe import kill_running
from zato_daemon.errors import EXIT_SOFTWARE, HaltServer, ZatoDaemonError
from zato_daemon.http.balance import LoadTable
from zato_daemon.logs import levels
from zato_daemon.logs.setup import configure_logging
from zato_daemon.logs.throttle import Throttle
from zato_daemon.sockets import address_of, bind_tcp
from zato_daemon.status import write_status
from zato_daemon.dump.setup import install_dump, reconfigure_dump
from zato_daemon.master import lifecycle
from zato_daemon.master.lifecycle import Lifecycle, WorkerEvent, WorkerState
from zato_daemon.master.preparation import Preparation
from zato_daemon.master.recycling import (MEMORY_CHECK_INTERVAL, draw_request_limit, format_size, read_rss,
                                          should_recycle_for_memory)
from zato_daemon.master.repair import RuntimeFiles
from zato_daemon.metrics.master import MasterMetrics
from zato_daemon.running import master_title
from zato_daemon.worker.channel import (BOOT_FAILED_PREFIX, DUMPED_MESSAGE, HEARTBEAT_MESSAGE,
                                        LIMIT_REACHED_MESSAGE, READY_MESSAGE, WORKER_SIGNALS)

logger = logging.getLogger('zato_daemon.master')

# During a graceful stop, one of these means "stop now".
QUICK_STOP_SIGNALS = (signal.SIGINT, signal.SIGQUIT)

# The master wakes at least this often: watchdog, reaping, boot, hang and file checks.
LOOP_TICK = 1.0

# How long a quick stop (SIGINT) waits before SIGKILL, and the extra time a graceful
# stop gives workers beyond graceful_timeout to flush and exit.
QUICK_STOP_WAIT = 3.0
GRACEFUL_STOP_MARGIN = 5.0

# How long the first workers wait for the first scan of the pickup directory (a module that
# hangs at import holds it for import_timeout).
FIRST_SCAN_WAIT = 5.0

# Scrapers are few: a short queue for the metrics listener.
METRICS_BACKLOG = 64

# The key of master.json where `zato-daemon reload` reads the outcome of its reload.
RELOAD_STATUS_KEY = 'reload'

SIGNAL_NAMES = {
    signal.SIGTERM: 'term',
    signal.SIGINT: 'int',
    signal.SIGQUIT: 'quit',
    signal.SIGHUP: 'hup',
    signal.SIGCHLD: 'chld',
}


@dataclass
class Generation:
    """What the workers of one generation are started with."""

    config: object
    callables: list
    server_dir: object
    listener: object
    # Kept as text: `info` must still show it while the socket is closed at stop.
    listen_text: str = ''
    # The service names its configured modules define (a pickup file may not redefine one).
    configured_names: frozenset = frozenset()
    # Where /metrics is served (None: [metrics] off); shared with the generation before when
    # the address did not change.
    metrics_listener: object = None

    def __post_init__(self):
        self.listen_text = self.listen_text or address_of(self.listener)


class Arbiter:
    """Runs in the master process, from `start` until the server stops."""

    def __init__(self, server_dir, config, listener, admin_listener, callables=(), foreground=False,
                 on_ready=None, on_halt=None, private_fds=(), pidfile=None, check=lambda config, paths: None,
                 configured_names=frozenset(), activated=False, metrics_listener=None):
        self.lifecycle = Lifecycle(target=config.server_config.main.workers)
        self.generations = {1: Generation(config, list(callables), server_dir, listener,
                                          configured_names=frozenset(configured_names),
                                          metrics_listener=metrics_listener)}
        # Every worker's counts, kept across their replacements; /metrics; the view for top.
        self.metrics = MasterMetrics(config, server_dir.metrics_snapshot)
        self.pickup = None
        # This member's heartbeat in the cluster's Redis (cluster/membership.py); None for a
        # single host, whose master then never imports redis.
        self.membership = None
        # The thread taking modules deployed to the cluster (cluster/deploy.py), beside it.
        self.cluster_deployer = None
        # The thread shipping slow calls and samples and taking dump requests (cluster/diagnostics.py).
        self.cluster_diagnostics = None
        self.cluster_key_problem = None
        self.cluster_changed = False
        self.cluster_admin_socket = server_dir.admin_socket
        # The listening socket came from systemd (socket activation): kept across reloads
        # whatever server.conf says, since the socket unit decides the address.
        self.activated = activated
        self.admin_listener = admin_listener
        self.foreground = foreground
        self.on_ready = on_ready
        self.on_halt = on_halt
        # Descriptors only the master may hold (the pidfile lock, the daemonizing pipe):
        # a worker closes them first thing, so an orphaned worker never holds the lock.
        self.private_fds = list(private_fds)
        self.pid = os.getpid()
        self.started_at = time.time()
        # Same for every worker of this run of the server, across reloads and respawns.
        self.boot_id = f'{self.pid}-{self.started_at}'
        self.status_fds = {}
        # The workers' connection counts, shared with every worker forked from now on
        # (http/balance.py); pid -> the worker's slot in it.
        self.load_table = LoadTable()
        self.load_slots = {}
        self.signal_queue = collections.deque()
        self.dump_trigger = None
        self.rng = random.Random()
        self.next_memory_check = 0.0
        # The runtime files are checked once a tick, not at each message from a worker.
        self.next_runtime_check = 0.0
        self.status_write_failures = Throttle()
        self.check = check
        self.preparation = None
        self.prepared_generation = None
        self.reload_started_at = None
        self.last_reload = None
        self.runtime_files = RuntimeFiles(pidfile, admin_listener_path=server_dir.admin_socket)
        self._wakeup_read = self._wakeup_write = None

    # ---- what the current generation is started with

    @property
    def generation(self):
        return self.lifecycle.generation

    @property
    def workers(self):
        return self.lifecycle.workers

    @property
    def config(self):
        return self.generations[self.generation].config

    @property
    def server_dir(self):
        return self.generations[self.generation].server_dir

    @property
    def listener(self):
        return self.generations[self.generation].listener

    @property
    def callables(self):
        return self.generations[self.generation].callables

    def in_effect(self):
        """The generation the logs, dumps and `info` follow: the serving one during a reload."""
        previous = self.lifecycle.previous_generation
        return self.generations[previous if previous is not None else self.generation]

    # ---- main loop

    def run(self):
        """Serves until stopped; returns the process exit status."""
        self.setup()
        try:
            self.follow_pickup(self.generations[self.generation])
            self.follow_cluster(self.config)
            self.wait_for_first_scan()
            self.execute(self.lifecycle.start(time.monotonic()))
            while True:
                self.wait_for_events(loop_timeout(time.monotonic(), self.wake_up_times()))
                sd.watchdog()
                self.dispatch_signals()
                self.reap_workers()
                self.check_preparation()
                self.tick()
        except HaltServer as halt:
            self.halt(halt)
            return halt.exit_status
        except Exception:
            logger.exception('Unexpected error in the master; stopping the workers')
            self.halt(HaltServer('master error', EXIT_SOFTWARE, graceful=False))
            return EXIT_SOFTWARE

    def tick(self):
        """What the clock decides: timeouts, hangs, memory, runtime files, due spawns."""
        # Heartbeats that arrived while the master was busy are read first: a busy master
        # must not take its workers for hung.
        self.wait_for_events(0)
        main = self.config.server_config.main
        now = time.monotonic()
        self.execute(self.lifecycle.tick(now, main.worker_boot_timeout, main.hang_timeout))
        self.check_worker_memory()
        self.check_runtime_files()
        if self.cluster_changed:
            self.cluster_changed = False
            self.write_status()
        self.metrics.tick(list(self.workers.values()))
        self.execute(self.lifecycle.due_spawns(time.monotonic()))

    def wake_up_times(self):
        """When the loop must run again at the latest: due respawns, the next memory check."""
        times = self.lifecycle.wake_up_times()
        if self.config.server_config.main.max_worker_memory:
            times.append(self.next_memory_check)
        return times

    def setup(self):
        """Names the process, installs the enqueue-only signal handlers and the wakeup pipe."""
        setproctitle(master_title(self.server_dir.base))
        self._wakeup_read, self._wakeup_write = os.pipe()
        for fd in (self._wakeup_read, self._wakeup_write):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wakeup_write, warn_on_full_buffer=False)
        for signum in SIGNAL_NAMES:
            signal.signal(signum, self.enqueue_signal)
        self.dump_trigger = install_dump(self.config, self.server_dir, 'master', self.foreground,
                                         lambda function: _thread.start_new_thread(function, ()),
                                         before_dump=self.forward_dump_request,
                                         after_dump=lambda dump: self.metrics.aggregate.count('dumps'),
                                         count_failure=lambda: self.metrics.aggregate.count('dump_failures'))
        self.metrics.serve(self.generations[self.generation].metrics_listener)
        self.write_status()

    def forward_dump_request(self):
        """Runs in the master's dump thread: every worker dumps too. A worker that got the
        signal directly as well (`systemctl kill` reaches them all) folds the two into one."""
        for pid in list(self.workers):
            self.kill_worker(pid, signal.SIGURG)

    def enqueue_signal(self, signum, frame):
        """Signal handler: enqueue only, no logging. A signal already queued is not queued twice."""
        if signum not in self.signal_queue:
            self.signal_queue.append(signum)

    def wake_up(self):
        """From another thread: the loop runs now (the wakeup pipe is non-blocking)."""
        try:
            os.write(self._wakeup_write, b'\0')
        except (OSError, TypeError):
            pass

    def wait_for_events(self, timeout):
        """Sleeps until a signal arrives, a worker reports, or `timeout` passes."""
        by_fd = {fd: pid for pid, fd in self.status_fds.items()}
        reports = self.metrics.fds()
        # poll, not select: two pipes per worker, and 256 workers during a reload, pass the
        # descriptor numbers select() takes (below 1024).
        poller = select.poll()
        for fd in (self._wakeup_read, *by_fd, *reports):
            poller.register(fd, select.POLLIN)
        try:
            ready = poller.poll(max(timeout, 0) * 1000)
        except InterruptedError:
            return
        for fd, _ in ready:
            if fd == self._wakeup_read:
                self._drain_wakeup_pipe()
            elif fd in reports:
                self.metrics.read(reports[fd])
            else:
                self.read_worker_message(by_fd[fd])

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
        """SIGHUP: reload (queued when one is in progress)."""
        self.execute(self.lifecycle.request_reload())

    # ---- executing the lifecycle's actions

    def execute(self, actions):
        """Runs actions in order; an action's own consequences run right after it."""
        pending = collections.deque(actions)
        while pending:
            action = pending.popleft()
            follow_up = getattr(self, f'do_{type(action).__name__}')(action)
            pending.extendleft(reversed(follow_up or []))

    def do_Spawn(self, action):
        return self.spawn_worker(action.number)

    def do_Kill(self, action):
        self.kill_worker(action.pid, action.signum)

    def do_Log(self, action):
        extra = action.event.extra if action.event is not None else None
        logger.log(action.level, action.message, *action.args, extra=extra)

    def do_WriteStatus(self, action):
        self.write_status()

    def do_MarkReady(self, action):
        """The first time every worker serves: tell systemd, the log and whoever started us."""
        summary = self.summary()
        logger.info('Server ready: %s', summary, extra=levels.SERVER_READY.extra)
        sd.ready(summary)
        if self.on_ready is not None:
            self.on_ready(self)

    def do_CountRestart(self, action):
        self.metrics.aggregate.count('restarts', action.reason)

    def do_Halt(self, action):
        raise HaltServer(action.reason, action.exit_status, graceful=action.graceful)

    def do_PrepareReload(self, action):
        logger.info('Reloading: reading the configuration in %s', self.server_dir.base)
        sd.reloading('reloading')
        self.reload_started_at = time.time()
        try:
            self.preparation = Preparation(self.server_dir.base, self.check, self.wake_up).start()
        except RuntimeError as exc:
            self.preparation = None
            return self.lifecycle.reload_refused(f'cannot start a thread to read the configuration: {exc}',
                                                 EXIT_SOFTWARE)
        self.write_status()
        return []

    def do_StartGeneration(self, action):
        self.generations[action.generation] = self.prepared_generation
        self.prepared_generation = None
        self.follow_pickup(self.generations[action.generation])
        return []

    def follow_pickup(self, generation):
        """The master decides what the pickup directory deploys, once for every worker
        (deploy/pickup.py); workers deploy only its last-good set. At start, one scan runs
        before the first worker spawns, so that every worker boots with the current set."""
        config = generation.config
        hot_deploy = config.pickup_config.hot_deploy
        time_limit = hot_deploy.import_timeout
        if not config.server_config.component_enabled.hot_deploy:
            if self.pickup is not None:
                self.pickup.stop()
                self.pickup = None
        elif self.pickup is not None:
            self.pickup.update(generation.server_dir, hot_deploy.poll_interval, generation.configured_names,
                               time_limit)
        else:
            # Its thread scans at once, then every poll_interval: never on this loop, which
            # must go on supervising (and hear a stop) while a module takes its time to import.
            self.pickup = PickupDeployer(generation.server_dir, hot_deploy.poll_interval,
                                         generation.configured_names, logger, import_time_limit=time_limit,
                                         on_outcome=lambda result: self.metrics.aggregate.count('deploys', result))
            try:
                self.pickup.start()
            except RuntimeError as exc:
                logger.error('Cannot start the thread that watches the pickup directory: %s', exc)

    def follow_cluster(self, config):
        """Joins, updates or leaves the cluster as [cluster] says, at start and after a reload.
        Only starts or tells the thread: the loop never waits on Redis."""
        try:
            settings = cluster_settings.from_config(config)
        except ZatoDaemonError as exc:
            # check_before_binding read the password file moments ago: it went since. A member
            # keeps its settings until a reload reads a configuration that works.
            logger.error('Cannot join the cluster: %s', exc)
            return
        if settings is not None:
            # Here, in the main thread, before any cluster thread: see cluster/connection.py.
            from zato_daemon.cluster import connection  # noqa: F401
        if settings is None:
            if self.membership is not None:
                # Not joined: the thread removes the record and ends by itself.
                self.membership.stop()
                self.membership = None
                self.cluster_changed = True
            for thread in (self.cluster_deployer, self.cluster_diagnostics):
                if thread is not None:
                    thread.stop()
            self.cluster_deployer = self.cluster_diagnostics = None
            return
        key = self.cluster_key(config)
        self.follow_cluster_deploys(config, settings, key)
        self.follow_cluster_diagnostics(settings, key)
        identity = self.cluster_identity()
        if self.membership is not None:
            self.membership.update(settings, identity)
            return
        from zato_daemon.cluster.membership import Membership, fetch_services
        membership = Membership(settings, identity, lambda: fetch_services(self.cluster_admin_socket), logger,
                                on_change=self.on_cluster_change)
        try:
            self.membership = membership.start()
        except RuntimeError as exc:
            logger.error('Cannot start the thread that keeps this member in the cluster: %s', exc)
            return
        # `info` shows the cluster from now on, its state 'unknown' until the first heartbeat.
        self.cluster_changed = True

    def cluster_key(self, config):
        """The cluster key ([cluster] key_file), or None, saying why once."""
        from zato_daemon.cluster.modules import read_key
        key_path = config.resolve_path(config.server_config.cluster.key_file) \
            if config.server_config.cluster.key_file else None
        try:
            key = read_key(key_path) if key_path is not None else None
            problem = None if key_path is not None else '[cluster] key_file is empty'
        except ZatoDaemonError as exc:
            key, problem = None, str(exc)
        if problem is not None and problem != self.cluster_key_problem:
            # Once per start, and again only when the reason changes at a reload.
            logger.warning('This member neither publishes nor accepts cluster deploys, nor dumps when its cluster '
                           'asks: %s', problem)
        self.cluster_key_problem = problem
        return key

    def follow_cluster_deploys(self, config, settings, key):
        """Starts or updates the thread taking modules deployed to the cluster (cluster/deploy.py)."""
        from zato_daemon.cluster.deploy import ClusterDeployer
        hot_deploy = config.pickup_config.hot_deploy
        enabled = config.server_config.component_enabled.hot_deploy
        # The pickup thread sees a file within a poll_interval and probes it for at most import_timeout.
        outcome_wait = hot_deploy.import_timeout + 2 * hot_deploy.poll_interval + 5
        if self.cluster_deployer is not None:
            self.cluster_deployer.update(settings, key, self.server_dir, enabled, outcome_wait)
            return
        deployer = ClusterDeployer(settings, key, self.server_dir, enabled, outcome_wait, logger)
        try:
            self.cluster_deployer = deployer.start()
        except RuntimeError as exc:
            logger.error('Cannot start the thread that takes cluster deploys: %s', exc)

    def follow_cluster_diagnostics(self, settings, key):
        """Starts or updates the thread shipping slow calls and samples to the cluster and taking
        its dump requests (cluster/diagnostics.py)."""
        from zato_daemon.cluster.diagnostics import ClusterDiagnostics
        if self.cluster_diagnostics is not None:
            self.cluster_diagnostics.update(settings, key, self.server_dir)
            return
        # DumpTrigger.request() may be called from any thread and returns at once; the dump
        # thread forwards it to the workers (forward_dump_request), as for SIGURG.
        diagnostics = ClusterDiagnostics(settings, key, self.server_dir, self.request_dump, self.pid, logger)
        try:
            self.cluster_diagnostics = diagnostics.start()
        except RuntimeError as exc:
            logger.error('Cannot start the thread that ships diagnostics to the cluster: %s', exc)

    def request_dump(self):
        if self.dump_trigger is not None:
            self.dump_trigger.request()

    def cluster_threads(self):
        """The threads of the cluster running now: none for a single host."""
        return [thread for thread in (self.membership, self.cluster_deployer, self.cluster_diagnostics)
                if thread is not None]

    def cluster_identity(self):
        from zato_daemon.cluster.membership import Identity
        return Identity(pid=self.pid, version=__version__, listen=self.in_effect().listen_text,
                        started_at=self.started_at)

    def on_cluster_change(self):
        """From the cluster thread: master.json follows the link's state on the next tick."""
        self.cluster_changed = True
        self.wake_up()

    def wait_for_first_scan(self):
        """Before the first workers spawn: the pickup thread's first scan, so that they boot with
        the current set, for at most FIRST_SCAN_WAIT; the loop hears signals meanwhile. Files
        still being checked after it reach the workers as they are accepted."""
        if self.pickup is None:
            return
        deadline = time.monotonic() + FIRST_SCAN_WAIT
        while not self.pickup.first_scan_done.is_set() and time.monotonic() < deadline:
            self.wait_for_events(0.1)
            sd.watchdog()
            self.dispatch_signals()

    def do_RetireGeneration(self, action):
        """The reload is complete: the previous generation's resources go."""
        previous = self.generations.pop(action.previous)
        if previous.listener is not self.listener:
            previous.listener.close()
        self.metrics.reconfigure(self.config)
        self.metrics.serve(self.generations[self.generation].metrics_listener)
        if previous.metrics_listener not in (None, self.generations[self.generation].metrics_listener):
            previous.metrics_listener.close()
        configure_logging(self.config, self.server_dir, 'master', self.foreground)
        self.cluster_admin_socket = self.server_dir.admin_socket
        self.follow_cluster(self.config)
        if self.dump_trigger is not None:
            reconfigure_dump(self.dump_trigger, self.config, self.server_dir, self.foreground)
        summary = self.summary()
        logger.info('Reload complete: %s; the previous workers are draining', summary,
                    extra=levels.RELOAD_COMPLETE.extra)
        if self.lifecycle.ready:
            sd.ready(summary)

    def do_RevertGeneration(self, action):
        failed = self.generations.pop(action.failed)
        if failed.listener is not self.listener:
            failed.listener.close()
        if failed.metrics_listener not in (None, self.generations[self.generation].metrics_listener):
            failed.metrics_listener.close()
        if self.lifecycle.ready:
            sd.ready(self.summary())

    def do_ReloadFinished(self, action):
        # master.json is readable by the server's group: the reason (a callable's exception,
        # quoting a DSN, say) goes through the redaction policy as any log line does.
        self.last_reload = {'started_at': self.reload_started_at, 'finished_at': time.time(),
                            'outcome': action.outcome, 'reason': redaction.redact_text(action.reason),
                            'exit_status': action.exit_status}
        self.metrics.aggregate.count('reloads', action.outcome)
        self.write_status()
        if action.outcome == 'refused' and self.lifecycle.ready:
            # systemd heard RELOADING=1 when the reload began: it waits for READY=1.
            sd.ready(self.summary())

    # ---- workers

    def spawn_worker(self, number):
        """Forks one worker; the child never returns from here. A failed fork is the
        lifecycle's to retry: the master does not halt for a process limit.

        The worker signals stay blocked across fork until the child has its own handlers:
        a TERM arriving in between would otherwise hit the master's enqueue-only handler
        in the child and be lost.
        """
        main = self.config.server_config.main
        request_limit = draw_request_limit(main.max_requests, main.max_requests_jitter, self.rng)
        try:
            read_fd, write_fd = os.pipe()
        except OSError as exc:
            return self.lifecycle.spawn_failed(number, f'pipe() failed: {exc.strerror}', time.monotonic())
        try:
            report_read, report_write = self.metrics.pipe(self.config.server_config.metrics.enabled)
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            return self.lifecycle.spawn_failed(number, f'pipe() failed: {exc.strerror}', time.monotonic())
        load_slot = self.load_table.take()
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
            for fd in (read_fd, write_fd, report_read, report_write):
                if fd is not None:
                    os.close(fd)
            self.load_table.release(load_slot)
            return self.lifecycle.spawn_failed(number, f'fork() failed: {exc.strerror}', time.monotonic())
        if pid == 0:
            self._become_worker(number, read_fd, write_fd, request_limit, load_slot, report_read, report_write)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        os.close(write_fd)
        if report_write is not None:
            os.close(report_write)
        self.metrics.spawned(pid, report_read)
        self.status_fds[pid] = read_fd
        self.load_slots[pid] = load_slot
        return self.lifecycle.spawned(pid, number, time.monotonic(), request_limit)

    def _become_worker(self, number, read_fd, write_fd, request_limit, load_slot, report_read, report_write):
        # Child branch: whatever happens, the child ends here with os._exit, so that it
        # never runs the master's loop or its cleanup.
        status = EXIT_SOFTWARE
        try:
            os.close(read_fd)
            if report_read is not None:
                os.close(report_read)
            for fd in self.status_fds.values():
                os.close(fd)
            self.metrics.close_in_child()
            for thread in self.cluster_threads():
                thread.close_in_child()
            signal.set_wakeup_fd(-1)
            if self.dump_trigger is not None:
                self.dump_trigger.discard_after_fork()
            for fd in (self._wakeup_read, self._wakeup_write, *self.private_fds,
                       *self.runtime_files.private_fds()):
                os.close(fd)
            for generation in self.generations.values():
                if generation.listener is not self.listener:
                    generation.listener.close()
                if generation.metrics_listener is not None:
                    generation.metrics_listener.close()
            from zato_daemon.worker.process import WorkerSpec, run_worker
            spec = WorkerSpec(number=number, generation=self.generation, boot_id=self.boot_id, master_pid=self.pid,
                              config=self.config, callables=self.callables, server_dir=self.server_dir,
                              listener=self.listener,
                              admin_listener=self.admin_listener, status_fd=write_fd,
                              foreground=self.foreground, request_limit=request_limit,
                              load_table=self.load_table, load_slot=load_slot, metrics_fd=report_write)
            status = run_worker(spec)
        except BaseException:
            logger.exception('Worker %d failed', number)
        finally:
            logging.shutdown()
            os._exit(status)

    def read_worker_message(self, pid):
        """Reads what a worker wrote on its pipe; end of file means it is gone."""
        fd = self.status_fds[pid]
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b''
        if not data:
            os.close(self.status_fds.pop(pid))
            return
        self.on_worker_message(pid, data)

    def on_worker_message(self, pid, data):
        """Feeds the messages of worker/channel.py in `data` to the lifecycle, in the order a worker sends them."""
        worker = self.workers.get(pid)
        if worker is None:
            return
        # One-byte messages, except a boot failure: its prefix and text are the last thing a
        # worker writes, so whatever follows the prefix is text, whatever precedes it codes.
        data, failed, text = data.partition(BOOT_FAILED_PREFIX)
        if failed:
            self.lifecycle.boot_failure_text(pid, text.decode('utf-8', 'replace'))
        elif worker.boot_failure:
            self.lifecycle.boot_failure_text(pid, data.decode('utf-8', 'replace'))
            return
        now = time.monotonic()
        if HEARTBEAT_MESSAGE in data:
            self.lifecycle.heartbeat(pid, now)
        if DUMPED_MESSAGE in data:
            self.metrics.aggregate.count('dumps')
            self.execute(self.lifecycle.dumped(pid))
        if READY_MESSAGE in data:
            self.execute(self.lifecycle.reported_ready(pid, now))
        if LIMIT_REACHED_MESSAGE in data:
            main = self.config.server_config.main
            self.execute(self.lifecycle.recycle(
                pid, WorkerEvent.REACHED_LIMIT, levels.WORKER_RECYCLED,
                'Worker %d (pid %d) reached its limit of %d requests (max_requests %d plus jitter); replacing it',
                (worker.number, pid, worker.request_limit, main.max_requests)))

    def reap_workers(self):
        """Collects exited workers, by pid, and feeds each exit to the lifecycle."""
        for pid in list(self.workers):
            try:
                reaped, wait_status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                reaped, wait_status = pid, 0
            if reaped == pid:
                self.on_worker_exit(pid, wait_status)

    def on_worker_exit(self, pid, wait_status):
        """Reads a worker's last words (a boot failure), then lets the lifecycle decide."""
        while pid in self.status_fds:
            self.read_worker_message(pid)
        # A worker killed while serving left its count: it must not hold the others back.
        self.load_table.release(self.load_slots.pop(pid, None))
        self.metrics.gone(pid)
        worker = self.workers.get(pid)
        if worker is None:
            return
        now = time.monotonic()
        self.execute(self.lifecycle.exited(pid, describe_exit(wait_status), os.waitstatus_to_exitcode(wait_status),
                                           now - worker.spawned_at, now))

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
        for worker in list(self.workers.values()):
            if worker.state != WorkerState.READY:
                continue
            rss = read_rss(worker.pid)
            if should_recycle_for_memory(rss, limit, now - worker.spawned_at):
                self.execute(self.lifecycle.recycle(
                    worker.pid, WorkerEvent.OVER_MEMORY, levels.WORKER_MEMORY_RECYCLED,
                    'Worker %d (pid %d) uses %s of resident memory, over max_worker_memory %s; replacing it',
                    (worker.number, worker.pid, format_size(rss), format_size(limit))))

    def kill_worker(self, pid, signum):
        """Signals one worker; one that is already gone is reaped by the loop."""
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    def kill_workers(self, signum):
        for pid in list(self.workers):
            self.kill_worker(pid, signum)

    def summary(self):
        """One line on what the server serves, for STATUS= and the log."""
        main = self.config.server_config.main
        return (f'{main.workers} worker(s) serving on http://{self.generations[self.generation].listen_text}, '
                f'config {self.server_dir.base}')

    # ---- reload

    def check_preparation(self):
        """A reload's preparation ended (or overran its time limit): the lifecycle decides."""
        preparation = self.preparation
        if preparation is None:
            return
        overdue = preparation.overdue()
        if overdue is not None:
            self.preparation = None
            logger.error('%s; the reload is refused and the callable left running', overdue,
                         extra=levels.STARTUP_CALLABLE_FAILED.extra)
            self.execute(self.lifecycle.reload_refused(overdue, EXIT_SOFTWARE))
            return
        if not preparation.finished.is_set():
            return
        self.preparation = None
        if preparation.error is not None:
            self.execute(self.lifecycle.reload_refused(str(preparation.error), preparation.error.exit_status))
            return
        config, callables, server_dir = preparation.result
        try:
            listener = self.listener_for(config)
        except ZatoDaemonError as exc:
            self.execute(self.lifecycle.reload_refused(str(exc), exc.exit_status))
            return
        try:
            metrics_listener = self.metrics_listener_for(config)
        except ZatoDaemonError as exc:
            if listener is not self.listener:
                listener.close()
            self.execute(self.lifecycle.reload_refused(str(exc), exc.exit_status))
            return
        self.prepared_generation = Generation(config, callables, server_dir, listener,
                                              configured_names=preparation.configured_names,
                                              metrics_listener=metrics_listener)
        self.execute(self.lifecycle.reload_prepared(config.server_config.main.workers))

    def listener_for(self, config):
        """The current listener, or a new one if host or port changed (never one systemd passed)."""
        main = config.server_config.main
        if _configured_address(config) == _configured_address(self.config):
            return self.listener
        if self.activated:
            logger.warning('server.conf now names %s:%s, but the socket systemd passed (%s) is kept: change '
                           'ListenStream= in the socket unit and restart the socket to move it', main.host,
                           main.port, self.generations[self.generation].listen_text)
            return self.listener
        return bind_tcp(main.host, main.port, main.backlog)

    def metrics_listener_for(self, config):
        """The current metrics listener, a new one if [metrics] moved it, or None when it is off."""
        settings = config.server_config.metrics
        current = self.generations[self.generation]
        if not settings.enabled:
            return None
        if current.metrics_listener is not None and _metrics_address(config) == _metrics_address(current.config):
            return current.metrics_listener
        return bind_metrics(settings)

    # ---- runtime files

    def check_runtime_files(self):
        """Recreates the runtime files someone deleted: pidfile, master.json, admin socket."""
        now = time.monotonic()
        if now < self.next_runtime_check:
            return
        self.next_runtime_check = now + LOOP_TICK
        for repaired in self.runtime_files.repair(self.server_dir, self.write_status, now):
            logger.warning('%s', repaired, extra=levels.RUNTIME_REPAIRED.extra)
        if self.runtime_files.admin_listener is not None:
            # Workers accept on the socket they inherited: the ones serving are replaced
            # (the new one first) by workers that inherit the new socket.
            old, self.admin_listener = self.admin_listener, self.runtime_files.take_admin_listener()
            old.close()
            self.execute(self.lifecycle.recycle_all(
                WorkerEvent.MUST_REBIND, None,
                'Worker %d (pid %d) serves a deleted admin socket; replacing it'))

    # ---- stop

    def halt(self, halt):
        """Stops every worker (gracefully or not), then removes the runtime files."""
        how = 'gracefully' if halt.graceful else 'quickly'
        logger.info('Stopping %s: %s', how, halt.reason)
        sd.stopping(f'stopping {how}')
        if self.pickup is not None:
            self.pickup.stop()
        # The membership's record goes now (joined in cleanup): `cluster` stops listing this
        # member at once.
        for thread in self.cluster_threads():
            thread.stop()
        # A reload's preparation may be checking modules in disposable processes: not past the stop.
        kill_running()
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
        self.lifecycle.stop()
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
            for pid in list(self.workers):
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
                self.workers.pop(pid, None)

    def _quick_stop_requested(self):
        # A second Ctrl-C during a graceful stop means "now".
        return take_quick_stop_request(self.signal_queue)

    def close_listeners(self):
        """Closes the master's copies of the sockets; the workers close theirs as they drain."""
        for generation in self.generations.values():
            generation.listener.close()
        self.admin_listener.close()
        # Scrapes answer until the workers are gone; the endpoint stops in cleanup().

    def cleanup(self):
        """Removes the runtime files `info` and the CLI rely on; the pidfile goes last, in launch."""
        self.metrics.stop()
        for thread in self.cluster_threads():
            thread.join()
        for generation in self.generations.values():
            if generation.metrics_listener is not None:
                generation.metrics_listener.close()
        for path in (self.server_dir.status_file, self.server_dir.admin_socket):
            try:
                os.unlink(path)
            except OSError:
                pass

    def write_status(self):
        """Publishes pids, states, paths and the last reload for `info` and the CLI; a failure
        to write is logged, never fatal."""
        in_effect = self.in_effect().server_dir
        status = {
            'master_proc_pid': self.pid,
            'started_at': self.started_at,
            'version': __version__,
            'config_dir': str(self.server_dir.base),
            'listen': self.in_effect().listen_text,
            # Where Prometheus scrapes this server; None when [metrics] is off.
            'metrics': self.metrics.url,
            # [cluster]: the cluster, this member, whether Redis answers and its last error
            # (the URL redacted); None for a single host.
            'cluster': self.membership.status() if self.membership is not None else None,
            # As FS_CONFIG_ONLY left them: the CLI's dump, slow and samples read these instead
            # of the files, which a startup callable may have overridden. Until a reload
            # completes, the master logs and dumps as its previous config says.
            'server_log': str(in_effect.server_log),
            'diagnostics_database': str(in_effect.diagnostics_database),
            'paths': in_effect.as_dict(),
            'workers': sorted(({'number': worker.number, 'generation': worker.generation, 'pid': worker.pid,
                                'state': worker.state.value, 'started_at': self.started_at_of(worker)}
                               for worker in self.workers.values()),
                              key=lambda worker: (worker['generation'], worker['number'])),
            RELOAD_STATUS_KEY: {'last': self.last_reload,
                                'running': self.lifecycle.reload != lifecycle.ReloadState.IDLE,
                                'queued': self.lifecycle.reload_queued},
        }
        try:
            write_status(self.server_dir.status_file, status)
        except OSError as exc:
            if self.status_write_failures.occurred(time.monotonic()):
                logger.warning('Cannot write %s: %s', self.server_dir.status_file, exc.strerror)

    def started_at_of(self, worker):
        """A worker's start as wall-clock time (the lifecycle keeps monotonic times)."""
        return time.time() - (time.monotonic() - worker.spawned_at)


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


def _metrics_address(config):
    settings = config.server_config.metrics
    return settings.enabled, settings.host, settings.port


def bind_metrics(settings):
    """The listener of /metrics ([metrics] host and port); AddressInUse names them. Not inherited:
    only the master serves it."""
    sock = bind_tcp(settings.host, settings.port, METRICS_BACKLOG, settings='[metrics] port or host')
    sock.set_inheritable(False)
    return sock


def _configured_address(config):
    # Compared as written in the config: 'localhost' stays 'localhost', whatever it resolved to.
    main = config.server_config.main
    return main.host, main.port


def describe_exit(wait_status):
    """'exited with status 3' or 'was killed by SIGKILL', for the log."""
    if os.WIFSIGNALED(wait_status):
        return f'was killed by {signal.Signals(os.WTERMSIG(wait_status)).name}'
    return f'exited with status {os.WEXITSTATUS(wait_status)}'

