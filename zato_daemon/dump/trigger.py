"""SIGURG -> one dump, made by a real OS thread that needs neither the hub nor the main thread.

Rule 1: the signal handler writes one byte to a pipe and returns. No logging, no dump, no
lock: it runs between two bytecodes of whatever the main thread was doing - a greenlet
spinning the CPU, code holding logging's lock - and a handler that dumped there could lose
the dump, freeze the hub, or nest.
Rule 2: one thread dumps, so dumps never nest. It reads every pending byte before it dumps:
a storm of requests gives a few dumps, and requests that arrive within `quiet_period` of the
start of the previous dump are folded into it, so a worker reached both by `systemctl kill`
and by the master's fan-out dumps once.
Rule 3: no gevent here. The caller passes the thread starter: gevent's original
`_thread.start_new_thread` in a worker (a patched one would start a greenlet, which a
spinning greenlet starves), threading's in the master.

Theory of operation. install() opens a pipe, starts the dump thread blocked in os.read() on
it, then sets the handler (a Python-level signal.signal handler: it runs while a greenlet
spins, which gevent.signal_handler callbacks do not). Each wake-up calls on_dump() once,
from the dump thread; on_dump collects, renders and writes (sink.py) and reports its own
failures; one it lets through goes to on_error, and the thread goes on. uninstall()
restores the previous handler and closes the pipe; the thread finishes a dump in progress
and exits.
"""

import faulthandler
import os
import signal
import time

# A pipe holds 64 KiB by default: one read this big takes every pending request at once.
READ_SIZE = 65536
# A request this soon after the start of the previous dump is folded into it.
DEFAULT_QUIET_PERIOD = 1.0
# How long the dump thread waits at most for the signal handler to return before it
# collects: otherwise, in half the dumps of a spinning greenlet, the main thread's innermost
# frame was the handler's os.write, not the code it interrupted (what the blocking summary
# of a hung worker names).
HANDLER_WAIT = 0.05


class DumpTrigger:
    """Turns SIGURG (and request()) into calls of on_dump() from one dedicated OS thread.

    Args:
        on_dump: called with no arguments in the dump thread, once per wake-up; never
            concurrently with itself. It must not use logging or anything the main thread
            may hold, and reports its own failures (sink.DumpWriter does).
        start_thread: `start_thread(function)` runs `function` in a new OS thread.
        on_error: `on_error(exception)` for an exception on_dump raised anyway, in the dump
            thread, under the same rules; without one, a line on stderr (os.write, fd 2).
        signum: the signal to handle, SIGURG by default (its default action is to ignore it).
        faulthandler_file: when set (a file object or an fd), faulthandler also writes an
            immediate traceback of every thread there at each signal, from C, even while the
            GIL is held; chained to the Python handler, which still runs. Each signal of a
            storm writes one: point it at a regular file such as server.log, never a pipe
            that may fill up (the handler would block).
        quiet_period: seconds after the start of a dump during which requests are folded
            into it; 0 turns folding off (requests pending at a wake-up are still merged).
    """

    def __init__(self, on_dump, start_thread, signum=signal.SIGURG, faulthandler_file=None,
                 quiet_period=DEFAULT_QUIET_PERIOD, on_error=None):
        self.on_dump = on_dump
        self.start_thread = start_thread
        self.on_error = on_error
        self.signum = signum
        self.faulthandler_file = faulthandler_file
        self.quiet_period = quiet_period
        self.dumps = 0
        self._read_fd = self._write_fd = None
        self._previous_handler = None
        self._is_serving = False
        self._last_dump_started = None
        self._is_handling = False

    @property
    def is_installed(self):
        """True between install() and uninstall()."""
        return self._write_fd is not None

    def install(self):
        """Starts the dump thread and handles the signal. Runs in the main thread, at start.

        Install after anything else that sets a handler for the same signal: a later
        signal.signal() replaces faulthandler's too.
        """
        if self.is_installed:
            raise RuntimeError('the dump trigger is already installed')
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)  # a full pipe drops a request instead of blocking the handler
        try:
            self._previous_handler = signal.signal(self.signum, self.handle_signal)  # ValueError off the main thread
            self._start_serving()
        except BaseException:
            self._close_pipe()
            raise
        if self.faulthandler_file is not None:
            # After signal.signal: faulthandler saves the handler in place and chains to it.
            faulthandler.register(self.signum, file=self.faulthandler_file, all_threads=True, chain=True)

    def _start_serving(self):
        # A signal that came in meanwhile waits in the pipe for the thread.
        self._is_serving = True
        try:
            self.start_thread(self._serve)
        except BaseException:
            self._is_serving = False
            self._restore_handler()
            raise

    def handle_signal(self, signum, frame):
        """Signal handler: one byte to the dump thread's pipe, nothing else (Rule 1)."""
        self._is_handling = True
        try:
            self.request()
        finally:
            self._is_handling = False

    def request(self):
        """Asks for a dump and returns at once; from any thread, or a signal handler.

        For code that wants a dump of its own process without a signal (tests, an admin
        command). A no-op once uninstalled; do not race it against uninstall().
        """
        fd = self._write_fd
        if fd is None:
            return
        try:
            os.write(fd, b'!')
        except OSError:  # full: dumps are pending anyway
            pass

    def uninstall(self, timeout=5.0):
        """Restores the previous handler and stops the dump thread. Runs in the main thread.

        A dump in progress, and one already requested, are finished first. Returns True
        when the thread ended within `timeout` seconds (it is polled, so under gevent this
        yields to the hub).
        """
        if not self.is_installed:
            return not self._is_serving
        if self.faulthandler_file is not None:
            faulthandler.unregister(self.signum)
        self._restore_handler()
        fd, self._write_fd = self._write_fd, None
        os.close(fd)  # end of file wakes the dump thread, which closes the read end
        return self._wait_stopped(timeout)

    def discard_after_fork(self):
        """In a child forked from the installing process: drops the inherited trigger.

        The dump thread did not survive fork(); this closes the inherited pipe, so the inherited
        handler does nothing until the child installs its own trigger (and so a signal to the
        child is never handed to the parent's thread). Leaves the signal disposition alone.
        """
        if self.faulthandler_file is not None and self.is_installed:
            faulthandler.unregister(self.signum)
        self._write_fd, write_fd = None, self._write_fd
        self._read_fd, read_fd = None, self._read_fd
        self._is_serving = False
        for fd in (write_fd, read_fd):
            if fd is not None:
                os.close(fd)

    def _serve(self):
        # The dump thread's whole life (Rule 2).
        read_fd = self._read_fd
        try:
            while os.read(read_fd, READ_SIZE):
                if not self._is_folded():
                    self._dump()
        finally:
            os.close(read_fd)
            self._is_serving = False

    def _is_folded(self):
        started = self._last_dump_started
        return started is not None and time.monotonic() - started < self.quiet_period

    def _dump(self):
        self._last_dump_started = time.monotonic()
        self._wait_for_handler()
        self.dumps += 1
        try:
            self.on_dump()
        except Exception as error:  # the thread must live on to serve the next dump
            self._report_error(error)

    def _report_error(self, error):
        try:
            if self.on_error is not None:
                self.on_error(error)
            else:
                os.write(2, f'zato-daemon: a dump failed: {type(error).__name__}: {error}\n'.encode('utf-8', 'replace'))
        except Exception:  # nothing is left to tell
            pass

    def _wait_for_handler(self):
        # The handler's os.write woke this thread; it returns as soon as the main thread has
        # the GIL again, which os.sched_yield gives up (time.sleep may be gevent's: Rule 3).
        deadline = self._last_dump_started + HANDLER_WAIT
        while self._is_handling and time.monotonic() < deadline:
            os.sched_yield()

    def _restore_handler(self):
        # None: the previous handler was not set from Python; SIGURG's default is to ignore it.
        previous = self._previous_handler
        signal.signal(self.signum, signal.SIG_DFL if previous is None else previous)

    def _wait_stopped(self, timeout):
        deadline = time.monotonic() + timeout
        while self._is_serving and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._is_serving

    def _close_pipe(self):
        for fd in (self._read_fd, self._write_fd):
            os.close(fd)
        self._read_fd = self._write_fd = None
