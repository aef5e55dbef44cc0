"""A worker process, from just after fork until it exits.

Runs in the child only: the master imports this module inside its fork branch, so
gevent's monkey-patching happens here, after fork, and never in the master.

Signals (see worker/channel.py): SIGTERM drains for a stop, RETIRE_SIGNAL drains for a
reload, SIGINT and SIGQUIT stop now; SIGHUP is the master's business and ignored here
(a terminal hang-up reaches the whole process group).
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import gevent  # noqa: E402
import gevent.os  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.lock import Semaphore  # noqa: E402
from gevent.socket import socket as gevent_socket  # noqa: E402
from setproctitle import setproctitle  # noqa: E402

from zato_daemon.deploy.follower import ManifestFollower  # noqa: E402
from zato_daemon.diagnostics.recorder import make_recorder  # noqa: E402
from zato_daemon.diagnostics.store import SAMPLES_TABLE, SLOW_TABLE  # noqa: E402
from zato_daemon.deploy.sources import create_configured_caches, deploy_configured  # noqa: E402
from zato_daemon.errors import EXIT_OK, ServiceDeployError, StartupCallableError  # noqa: E402
from zato_daemon.forks import guard as guard_forks, in_forked_child  # noqa: E402
from zato_daemon.http.balance import NO_SLOT, Slot, listener_key  # noqa: E402
from zato_daemon.http.router import Router  # noqa: E402
from zato_daemon.http.server import HttpServer  # noqa: E402
from zato_daemon.logs.setup import configure_logging  # noqa: E402
from zato_daemon.metrics.counting import WorkerCounts  # noqa: E402
from zato_daemon.metrics.report import REPORT_INTERVAL, encode_report  # noqa: E402
from zato_daemon.services.host import ServiceHost  # noqa: E402
from zato_daemon.startup import run_after_started  # noqa: E402
from zato_daemon.logs.levels import WORKER_BOOT_FAILED  # noqa: E402
from zato_daemon.dump.setup import install_dump  # noqa: E402
from zato_daemon.worker.channel import (BOOT_FAILED_PREFIX, DUMPED_MESSAGE, HEARTBEAT_INTERVAL,  # noqa: E402
                                        HEARTBEAT_MESSAGE, LIMIT_REACHED_MESSAGE, READY_MESSAGE, RETIRE_SIGNAL,
                                        WORKER_SIGNALS)

logger = logging.getLogger('zato_daemon.worker')

# How often a worker checks that its master is still there; an orphaned worker
# would otherwise keep the port and the pidfile lock after a SIGKILL of the master.
PARENT_CHECK_INTERVAL = 1.0
# time.monotonic() of the last heartbeat this worker's hub sent, None before the first: a
# dump reads it (dump/collect.py, heartbeat_age) to tell how long the hub has been blocked.
last_heartbeat = None
# How long idle keep-alive connections may still send a request once a stop began.
STOP_IDLE_GRACE = 1.0


@dataclass
class WorkerSpec:
    """Everything a worker needs, prepared by the master before fork."""

    number: int
    generation: int
    boot_id: str
    master_pid: int
    config: object
    callables: list
    server_dir: object
    listener: object
    admin_listener: object
    status_fd: int
    foreground: bool
    # This worker's share of max_requests (0: no limit), drawn by the master with jitter:
    # the master names it in the log when the worker asks to be replaced.
    request_limit: int = 0
    # The table of the workers' connection counts (http/balance.py) and this worker's slot
    # in it (None: not counted, never refused).
    load_table: object = None
    load_slot: int = None
    # The write end of this worker's report pipe to the master (metrics/report.py); None
    # when [metrics] is off.
    metrics_fd: int = None


class Worker:
    """One worker's life: boot, serve, drain."""

    def __init__(self, spec):
        self.spec = spec
        self.stop_requested = Event()
        self.is_quick_stop = False
        self.is_retiring = False
        self.host = None
        self.http = None
        self.load_slot = NO_SLOT
        self.recorder = None
        self.counts = None
        # One report written at a time: the last one, after the drain, may start while the
        # periodic one waits for room in the pipe, and two frames must not interleave.
        self.report_lock = Semaphore()
        self.has_reported_ready = False
        self.has_reached_request_limit = False

    def boot(self):
        """Deploys services, starts serving, runs AFTER_STARTED.

        Raises ServiceDeployError when a configured service fails, StartupCallableError when
        a callable fails (with the fail policy): either way the worker never reports ready.
        """
        spec = self.spec
        config = spec.config
        self.host = ServiceHost(config, spec.server_dir, spec.number, spec.boot_id, spec.generation)
        if spec.metrics_fd is not None:
            self.counts = WorkerCounts(config.server_config.metrics.buckets)
            gevent.os.make_nonblocking(spec.metrics_fd)
            self.host.caches.count_with(self.counts)
        gevent.spawn(self.host.caches.run, gevent.sleep)
        create_configured_caches(self.host.caches, config)
        deploy_configured(self.host.store, config, spec.server_dir.service_paths, logger)
        if config.server_config.component_enabled.hot_deploy:
            self.start_pickup_watcher()
        main = config.server_config.main
        if spec.load_slot is not None:
            self.load_slot = Slot(spec.load_table, spec.load_slot, listener_key(spec.listener))
        self.http = HttpServer(main, self.host.dumps_json, logger, self.load_slot, self.counts)
        self.http.set_request_limit(spec.request_limit, self.report_request_limit)
        self.recorder = make_recorder(config, spec.server_dir, self.host.store, spec.number)
        if self.recorder is not None:
            gevent.spawn(self.recorder.store.run, gevent.sleep)
        self.http.add_listener(_adopt(spec.listener), Router(self.host, config.server_config.channels,
                                                             recorder=self.recorder, counts=self.counts),
                               balanced=True)
        self.http.add_listener(_adopt(spec.admin_listener), Router(self.host, {}, is_admin=True))
        # Only the gevent copies stay open: closing them at drain must close the socket in
        # this process, or the kernel would keep queueing connections nobody accepts.
        spec.listener.close()
        spec.admin_listener.close()
        guard_forks(lambda: [spec.status_fd, *([spec.metrics_fd] if spec.metrics_fd is not None else []),
                             *self.http.descriptors()])
        if self.counts is not None:
            self.count_figures()
            gevent.spawn(self.send_reports)
        self.http.start()
        # From the first accept: a worker serves while AFTER_STARTED runs.
        gevent.spawn(self.load_slot.keep_fresh, gevent.sleep)
        run_after_started(spec.callables, self.host, spec.number)

    def start_pickup_watcher(self):
        """Deploys the pickup directory's last-good set, then follows it. The master decides
        what is in it (deploy/pickup.py): a worker never imports a file nobody checked."""
        follower = ManifestFollower(self.host.store, self.spec.server_dir.deployed_dir, logger)
        follower.sync()
        gevent.spawn(follower.run, gevent.sleep, self.spec.config.pickup_config.hot_deploy.poll_interval)

    def serve(self):
        """Reports ready to the master and serves until a stop signal, then drains."""
        os.write(self.spec.status_fd, READY_MESSAGE)
        self.has_reported_ready = True
        if self.has_reached_request_limit:
            self.send_limit_reached()
        gevent.spawn(self.watch_master)
        gevent.spawn(self.send_heartbeats)
        self.stop_requested.wait()
        self.drain_http()
        # Changes still queued for the other workers (the database was busy) are written now.
        self.host.caches.close()
        if self.recorder is not None:
            self.recorder.store.close()
        if self.counts is not None:
            # The last counts, the drain's included, all of them: the master keeps them once this
            # worker is gone.
            self.send_report(full=True)
        logger.info('Worker %d stopped', self.spec.number)

    def drain_http(self):
        """Stops accepting and lets connections finish, as the stop requested says: at once
        (quick), keeping idle clients for the graceful period (retire), or with a short idle
        grace (stop, and a worker that failed to start after it began serving)."""
        graceful_timeout = self.spec.config.server_config.main.graceful_timeout
        # Not accepting any more: the other workers must not wait for this one.
        self.load_slot.clear()
        if self.is_quick_stop:
            self.http.drain(0, 0)
        else:
            self.http.drain(graceful_timeout, graceful_timeout if self.is_retiring else STOP_IDLE_GRACE)

    def request_stop(self, quick=False, retire=False):
        """Runs in the hub, from a signal callback: only sets flags."""
        self.is_quick_stop = self.is_quick_stop or quick
        self.is_retiring = retire and not self.stop_requested.is_set()
        self.stop_requested.set()

    def report_request_limit(self):
        """Runs in the worker, once, in the greenlet of the request that reached `request_limit`
        on the public listener: asks the master for a replacement, and keeps serving until
        the master sends RETIRE_SIGNAL.

        The worker serves while AFTER_STARTED runs, before it reports ready; a limit reached
        then is reported right after READY_MESSAGE, so the master never hears it from a
        booting worker.
        """
        self.has_reached_request_limit = True
        if self.has_reported_ready:
            self.send_limit_reached()

    def send_limit_reached(self):
        try:
            os.write(self.spec.status_fd, LIMIT_REACHED_MESSAGE)
        except OSError:
            pass  # the master is gone; watch_master stops this worker

    def send_heartbeats(self):
        """Runs on the hub: when the hub is blocked, the heartbeats stop and the master notices."""
        global last_heartbeat
        while not in_forked_child():
            try:
                os.write(self.spec.status_fd, HEARTBEAT_MESSAGE)
            except BrokenPipeError:
                return  # the master is gone; watch_master stops this worker
            last_heartbeat = time.monotonic()
            gevent.sleep(HEARTBEAT_INTERVAL)

    def count_dump_failure(self):
        """install_dump's count_failure, called in the dump thread: one failed part of a dump, for
        the metrics (uncounted before boot() made the counts, or with metrics off)."""
        counts = self.counts
        if counts is not None:
            counts.dump_failed()

    def count_figures(self):
        """The counts other parts keep, read into each report."""
        counts, http, recorder = self.counts, self.http, self.recorder
        counts.add_source('requests', lambda: http.requests_served)
        if recorder is not None:
            store = recorder.store
            counts.add_source('slow_stored', lambda: store.stored[SLOW_TABLE])
            counts.add_source('samples_stored', lambda: store.stored[SAMPLES_TABLE])
            counts.add_source('diagnostics_dropped', lambda: store.dropped)

    def send_reports(self):
        """Runs on the hub: the cumulative counts to the master every REPORT_INTERVAL."""
        while not in_forked_child():
            gevent.sleep(REPORT_INTERVAL)
            if not self.send_report():
                return

    def send_report(self, full=False):
        """One report, written whole (the pipe is non-blocking: gevent waits for room without
        blocking the hub). False when the master is gone."""
        with self.report_lock:
            data = encode_report(self.counts.report(full))
            try:
                while data:
                    data = data[gevent.os.nb_write(self.spec.metrics_fd, data):]
            except OSError:
                return False
        return True

    def watch_master(self):
        while os.getppid() == self.spec.master_pid:
            gevent.sleep(PARENT_CHECK_INTERVAL)
        if in_forked_child():
            return  # a service's child, whose parent is this worker, not the master
        logger.error('Master %d is gone; worker %d stops now', self.spec.master_pid, self.spec.number)
        self.request_stop(quick=True)


def _adopt(listener):
    """The gevent socket for a listening socket inherited from the master."""
    return gevent_socket(listener.family, listener.type, fileno=os.dup(listener.fileno()))


def _start_os_thread(function):
    # gevent's original: a patched start_new_thread would start a greenlet, which the
    # greenlet a dump is usually needed for (one spinning the CPU) would starve.
    monkey.get_original('_thread', 'start_new_thread')(function, ())


def _log_greenlet_failure(context, kind, value, traceback):
    """The hub's report of an exception that ended a greenlet, as an ERROR record instead of
    gevent's raw traceback on stderr, which under systemd is a journal entry without level,
    cid or MESSAGE_ID."""
    logger.error('A greenlet (%s) ended with %s', context, getattr(kind, '__name__', kind),
                 exc_info=(kind, value, traceback) if value is not None else None)


def _contain_greenlet_failures():
    """A greenlet a service spawned cannot end the worker: gevent raises SystemExit and
    KeyboardInterrupt from any greenlet again in the main one (Hub.SYSTEM_ERROR), so that
    `gevent.spawn(sys.exit)` stopped the worker and lost every request in flight on it.
    The worker's own stops come through signals (gevent.signal_handler), never that way."""
    hub = gevent.get_hub()
    hub.SYSTEM_ERROR = ()
    hub.print_exception = _log_greenlet_failure


def _install_signal_handlers(worker):
    """Replaces the master's handlers inherited through fork, then lets the signals in.

    SIGURG is left to the worker's dump trigger, installed before this.
    """
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, RETIRE_SIGNAL, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    # Resetting SIGCHLD (gevent's signal.signal) also removed the loop's own handler, which
    # a child watcher puts back only when it is created: the SIGCHLD of a child that a
    # service forked and that exited before its parent started watching it was lost, and
    # os.waitpid() on it waited for ever. Put it back now.
    gevent.get_hub().loop.install_sigchld()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    gevent.signal_handler(signal.SIGTERM, worker.request_stop)
    gevent.signal_handler(RETIRE_SIGNAL, worker.request_stop, False, True)
    gevent.signal_handler(signal.SIGINT, worker.request_stop, True)
    gevent.signal_handler(signal.SIGQUIT, worker.request_stop, True)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)


def run_worker(spec):
    """The worker's entry point after fork; returns its exit status."""
    server_dir = spec.server_dir
    setproctitle(f'zato-daemon: worker {spec.number} {server_dir.base}')
    config = spec.config
    configure_logging(config, server_dir, f'worker-{spec.number}', spec.foreground, spec.number)
    worker = Worker(spec)
    _contain_greenlet_failures()
    install_dump(config, server_dir, f'worker-{spec.number}', spec.foreground, _start_os_thread,
                 after_dump=lambda dump: os.write(spec.status_fd, DUMPED_MESSAGE),
                 count_failure=worker.count_dump_failure)
    _install_signal_handlers(worker)
    try:
        worker.boot()
    except (ServiceDeployError, StartupCallableError) as exc:
        if worker.http is not None:
            # AFTER_STARTED runs once the worker serves: finish what it accepted meanwhile.
            worker.drain_http()
        details = getattr(exc, 'details', '')
        logger.error('Worker %d cannot start: %s%s', spec.number, exc, f'\n{details.rstrip()}' if details else '',
                     extra=WORKER_BOOT_FAILED.extra)
        # One write under PIPE_BUF bytes arrives whole, in one read.
        os.write(spec.status_fd, BOOT_FAILED_PREFIX + ' '.join(str(exc).split()).encode()[:3000])
        return exc.exit_status
    worker.serve()
    return EXIT_OK
