"""Reading the configuration and running FS_CONFIG_ONLY where user code cannot freeze the master.

Startup callables and the modules they live in are user code: one may block for ever or
call sys.exit(). At a reload they used to run in the master's loop, which then replaced no
dead worker and heard no stop until they returned. Here they run in a thread of the master
(a plain thread: the master has no gevent), the loop goes on supervising, and checks
`overdue()` each time it wakes: a callable running past startup_callable_timeout refuses
the reload with its name and the phase. The thread itself cannot be killed; it is left
behind, a daemon thread, and whatever it returns later is ignored.

At start, `prepare_blocking` runs the same thing and waits with the same limit, so a
hanging callable makes `start` fail with one line instead of hanging without output.

FS_CONFIG_ONLY runs in the master on purpose (the callables change the config objects the
master then uses), so a thread and not a child process; a callable calling os._exit()
still ends the master, which nothing in-process can prevent.
"""

import threading
import time

from zato_daemon.deploy.probe import kill_running
from zato_daemon.errors import EXIT_SOFTWARE, StartupCallableError, ZatoDaemonError
from zato_daemon.startup import load_config_and_run_fs_config_only


def describe_overdue(progress, now):
    """The one-line reason when the callable running has passed its time limit, else None. Pure."""
    running = progress.get('running')
    if running is None:
        return None
    name, phase, started = running
    limit = progress['time_limit']  # set once the configuration is read, before any callable runs
    if now - started <= limit:
        return None
    return (f'startup callable {name} is still running in phase {phase} after {limit:g} s '
            '([misc] startup_callable_timeout)')


class Preparation:
    """One run of "read the configuration, run FS_CONFIG_ONLY, check it", in a thread.

    `check(config, paths)` runs after the callables (start's checks before binding);
    `wake()` is called from the thread when it ends, to wake the master's loop.
    """

    def __init__(self, base_dir, check, wake=lambda: None, clock=time.monotonic):
        self.base_dir = base_dir
        self.check = check
        self.wake = wake
        self.clock = clock
        self.progress = {}
        self.result = None
        self.configured_names = frozenset()
        self.error = None
        self.finished = threading.Event()

    def start(self):
        """Starts the thread; raises RuntimeError when no thread can be started."""
        threading.Thread(target=self._run, name='zato-daemon: FS_CONFIG_ONLY', daemon=True).start()
        return self

    def _run(self):
        try:
            config, callables, paths = load_config_and_run_fs_config_only(self.base_dir, self.progress)
            # The service names configured modules define (deploy/probe.vet_configured): a pickup
            # file may not redefine them.
            self.configured_names = frozenset(self.check(config, paths) or ())
            self.result = config, callables, paths
        except ZatoDaemonError as exc:
            self.error = exc
        except BaseException as exc:  # user code: anything, SystemExit and KeyboardInterrupt too
            self.error = StartupCallableError(f'reading the configuration failed: {exc!r}', EXIT_SOFTWARE)
        finally:
            self.finished.set()
            self.wake()

    def overdue(self):
        """The reason to give up on this preparation (a callable past its limit), or None."""
        if self.finished.is_set():
            return None
        return describe_overdue(self.progress, self.clock())


def prepare_blocking(base_dir, check, poll=0.1):
    """What start runs before binding: returns (config, callables, paths) or raises the
    ZatoDaemonError the preparation ended with, or a StartupCallableError (70) for a
    callable past its time limit."""
    preparation = Preparation(base_dir, check).start()
    try:
        while not preparation.finished.wait(poll):
            reason = preparation.overdue()
            if reason is not None:
                raise StartupCallableError(reason, EXIT_SOFTWARE)
    except BaseException:
        # Ctrl-C, or a callable past its limit: a module being checked in a disposable
        # process (its own session, out of the terminal's reach) must not outlive the start.
        kill_running()
        raise
    if preparation.error is not None:
        raise preparation.error
    return (*preparation.result, preparation.configured_names)
