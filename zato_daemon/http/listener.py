"""A worker's accept loop, made to survive running out of file descriptors.

gevent's StreamServer handles a failing accept() by printing a traceback to stderr through
the hub and pausing accept for up to a second. When a worker has no descriptor left
(EMFILE) that is one raw traceback per attempt, nothing in server.log or the journal, and
health checks refused for up to a second after the flood stops. Here an accept error that
comes from a resource limit is one WARNING with a MESSAGE_ID at most once a minute, with
the count, and accepting resumes by itself within RETRY_MAX_DELAY; any other error is left
to gevent.

A listener that shares its socket with other workers may also be given a gate
(http/balance.py): asked before each accept, it says whether this worker holds few enough
connections to take one more, or the queue is long enough that everyone must take some.
When it says no, the connection stays in the backlog for another worker, and this listener
stops watching the socket for BALANCE_RETRY_DELAY: the socket stays readable until someone
accepts, and watching it would spin the CPU. The gate counts each connection accepted.

Runs in a worker, on its hub.
"""

import errno
import logging
import resource
import time

from gevent.server import StreamServer

from zato_daemon.forks import in_forked_child
from zato_daemon.http.balance import ACCEPT_BATCH, accept_queue_length
from zato_daemon.logs.levels import ACCEPT_FAILED
from zato_daemon.logs.throttle import Throttle

logger = logging.getLogger('zato_daemon.http')

# What accept() raises when the process or the system is out of a resource, not because of
# the listening socket: waiting and trying again is the whole cure.
RESOURCE_ERRORS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
RETRY_MIN_DELAY = 0.01
RETRY_MAX_DELAY = 0.25
# Short: the worker refused is asked again as soon as the others may have taken the
# connection waiting, and a connection that nobody else takes waits no longer than this.
BALANCE_RETRY_DELAY = 0.005


class Listener(StreamServer):
    """A StreamServer whose resource errors on accept are logged, not printed, and retried.

    `describe_load()` returns text on the worker's connections for the WARNING; `gate`, when
    given (a balance.Slot), is asked before each accept and told of each connection accepted
    (None: this listener always accepts).
    """

    def __init__(self, listener, handle, spawn, describe_load, gate=None):
        super().__init__(listener, handle, spawn=spawn)
        self.describe_load = describe_load
        self.gate = gate
        if gate is not None:
            self.max_accept = ACCEPT_BATCH
        self.accept_errors = Throttle()
        self.retry_delay = RETRY_MIN_DELAY
        self.is_retrying = False
        self.retry_timer = None

    def do_read(self):
        if in_forked_child():
            self.stop_accepting()  # see forks.py: a service's child accepts nothing
            return None
        gate = self.gate
        if gate is not None and not gate.may_accept(self.queue_length):
            self.pause_accepting(BALANCE_RETRY_DELAY)
            return None
        try:
            accepted = super().do_read()
        except OSError as exc:
            if exc.errno not in RESOURCE_ERRORS:
                raise
            self.on_resource_error(exc)
            return None
        if self.is_retrying:
            self.on_recovered()
        if gate is not None and accepted is not None:
            gate.accepted()
        return accepted

    def queue_length(self):
        return accept_queue_length(self.socket)

    def on_resource_error(self, exc):
        """Logs (throttled), stops watching the socket and tries again after a short delay:
        the socket stays readable, so watching it would spin the CPU on failing accepts."""
        count = self.accept_errors.occurred(time.monotonic())
        if count:
            logger.warning('Cannot accept connections: %s (%s, %d time(s) since the last report); %s; '
                           'descriptor limit %d. Accepting resumes by itself; raise LimitNOFILE= or lower '
                           'max_connections', exc.strerror, errno.errorcode.get(exc.errno, exc.errno), count,
                           self.describe_load(), _descriptor_limit(), extra=ACCEPT_FAILED.extra)
        self.is_retrying = True
        if self.gate is not None:
            self.gate.set_available(False)
        self.pause_accepting(self.retry_delay)
        self.retry_delay = min(RETRY_MAX_DELAY, self.retry_delay * 2)

    def pause_accepting(self, delay):
        self.stop_accepting()
        self.cancel_retry()
        self.retry_timer = self.loop.timer(delay)
        self.retry_timer.start(self.resume_accepting)

    def resume_accepting(self):
        self.cancel_retry()
        if self.started and not self.closed:
            self.start_accepting()

    def on_recovered(self):
        self.is_retrying = False
        if self.gate is not None:
            self.gate.set_available(True)
        self.retry_delay = RETRY_MIN_DELAY
        missed = self.accept_errors.unreported()
        logger.info('Accepting connections again%s', f' after {missed} more failed attempt(s)' if missed else '')

    def cancel_retry(self):
        timer, self.retry_timer = self.retry_timer, None
        if timer is not None:
            timer.close()

    def close(self):
        self.cancel_retry()
        super().close()


def _descriptor_limit():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
