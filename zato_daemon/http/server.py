"""The worker's HTTP server: gevent glue around the pure protocol core.

Each connection runs in its own greenlet: read, feed the parser, answer every complete
request in order (pipelining), keep the connection while the client wants it. TCP_NODELAY
is set on every accepted TCP socket: a response leaves in one write, and without it
Nagle's algorithm against delayed ACKs costs ~40 ms a request.

Deadlines (http/deadlines.py): each connection knows its phase and until when it may wait
in it; one sweep a second closes those past their deadline, with a 408 when a request was
cut off. A worker with max_connections open connections answers new ones with 503 and
closes them; accept errors from a lack of descriptors are logged and retried
(http/listener.py).

Draining (stop or reload): stop accepting; a connection in the middle of a request
finishes it and gets `Connection: close`; an idle keep-alive connection is given a grace
to send one more request (answered with `Connection: close`), and then closed: short on
stop, the whole graceful timeout on reload, when clients idle between requests must not
see a connection dropped under them. Whatever is left at the deadline is killed. Every
handler greenlet lives in one pool from the moment it is spawned: a connection accepted
just before the listener closed may not have started running yet, and leaving it out
would close it unanswered.
"""

import logging
import socket
import sys
import time
from functools import partial

import gevent
from gevent.pool import Pool

from zato_daemon.errors import ConnectionAborted
from zato_daemon.forks import in_forked_child
from zato_daemon.http.deadlines import BODY, HEADERS, IDLE, SENDING, SERVICE, Deadlines
from zato_daemon.http.balance import NO_SLOT
from zato_daemon.http.listener import Listener
from zato_daemon.http.protocol import CONTINUE, CONTINUE_RESPONSE, ProtocolError, RequestParser, render_response
from zato_daemon.http.router import error_body
from zato_daemon.logs.levels import CONNECTIONS_LIMITED
from zato_daemon.logs.throttle import Throttle

RECEIVE_SIZE = 65536
DRAIN_POLL = 0.05
# Deadlines are enforced by one sweep a second instead of a timeout on every recv and
# send: a gevent socket timeout arms a Timeout object per call, measurable on the hot path
# (about 3 % of a worker's time under wrk).
SWEEP_INTERVAL = 1.0
# How long a refused (503) or timed-out (408) client has to read its answer and close,
# before the server closes anyway; closing with unread input would send it a reset
# instead, which can destroy the answer before the client reads it.
LINGER = 1.0
RETRY_AFTER = b'5'

logger = logging.getLogger('zato_daemon.http')


class Expired(ConnectionAborted):
    """Thrown into a connection's greenlet by the sweep; `status` is what to answer first, if any."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


class Connection:
    """One client connection: its greenlet, its phase (deadlines.PHASES), since when it is in
    it, and until when it may stay there (None: no limit)."""

    __slots__ = ('sock', 'greenlet', 'phase', 'since', 'deadline', 'expiry_status')

    def __init__(self, sock, greenlet, deadlines, now):
        self.sock = sock
        self.greenlet = greenlet
        self.enter(IDLE, now, deadlines)

    def enter(self, phase, now, deadlines, body_received=0):
        self.phase = phase
        self.since = now
        self.deadline, self.expiry_status = deadlines.expiry(phase, now, body_received)

    @property
    def is_busy(self):
        """True from a request's first byte until its response is sent."""
        return self.phase is not IDLE


class HttpServer:
    """Serves HTTP on one or more inherited listening sockets, each with its own router."""

    def __init__(self, main_config, dumps_json, logger, load_slot=NO_SLOT, counts=None):
        self.max_request_size = main_config.max_request_size
        self.max_connections = main_config.max_connections
        self.deadlines = Deadlines.from_config(main_config)
        # The table's deadlines of the two phases every request goes through, for the hot path.
        self.sending_timeout = self.deadlines.expiry(SENDING, 0.0)[0]
        self.idle_timeout = self.deadlines.expiry(IDLE, 0.0)[0]
        self.shares_listeners = main_config.workers > 1
        self.logger = logger
        self.dumps_json = dumps_json
        self.stream_servers = []
        self.handlers = Pool()
        self.connections = set()
        # Connections of the public listeners (not the admin socket), against max_connections.
        self.public_connections = 0
        # Where the other workers on the same listening socket read that count (http/balance.py).
        self.load_slot = load_slot
        self.is_draining = False
        self.refusals = Throttle()
        # Requests answered on the public listeners, and what to do when they reach a limit
        # (the worker asks the master to replace it: max_requests).
        self.requests_served = 0
        self.request_limit = 0
        self.on_request_limit = None
        # metrics/counting.WorkerCounts (None: [metrics] off): the answers the router never
        # sees (protocol errors, 408, 503) count here, for the public listeners.
        self.counts = counts

    def set_request_limit(self, limit, callback):
        """Calls `callback()` once, in the greenlet of the request that makes the public
        listeners' count reach `limit` (before its response is sent); 0 means never."""
        self.request_limit = limit
        self.on_request_limit = callback

    def add_listener(self, listener, router, balanced=False):
        """`balanced`: the public socket, whose connections are spread across the workers
        sharing it (http/balance.py); the admin socket never is, nor a socket no other
        worker accepts on."""
        def handle(sock, address):
            self.serve_connection(sock, router)
        gate = self.load_slot if balanced and self.shares_listeners else None
        stream_server = Listener(listener, handle, self.handlers, self.describe_load, gate)
        if self.shares_listeners and gate is None:
            # Every worker polls the same listening socket. Taking up to gevent's default
            # 100 connections per wake-up lets the first worker awake take a whole burst
            # of clients (wrk's 50 went to one worker of two in some runs: -40 % req/s);
            # one per wake-up spreads them, as nginx's default and gunicorn's gevent worker
            # do. A gated listener (balance.py) takes ACCEPT_BATCH instead.
            stream_server.max_accept = 1
        self.stream_servers.append(stream_server)

    def start(self):
        for stream_server in self.stream_servers:
            stream_server.start()
        gevent.spawn(self.close_expired_connections)

    def close_expired_connections(self):
        """Once a second: ends the connections past their phase's deadline, and reports the
        end of a burst of refused connections."""
        while True:
            gevent.sleep(SWEEP_INTERVAL)
            now = time.monotonic()
            for connection in list(self.connections):
                deadline = connection.deadline
                if deadline is not None and deadline < now:
                    self.end_connection_if(connection, _is_expired, Expired(connection.expiry_status))
            self.report_refusals(self.refusals.due(now))

    @staticmethod
    def end_connection_if(connection, condition, exception):
        """Throws `exception` into a connection's greenlet, on the hub, if `condition(connection)`
        still holds then.

        Checked again there, not by the caller: the greenlet may run in between (the last
        header bytes of a request arrive) and be calling a service by then, which neither a
        deadline nor a drain's idle close may interrupt. Nothing runs between the check
        and the throw.
        """
        def end():
            if connection.greenlet.dead or not condition(connection):
                return
            try:
                connection.greenlet.throw(exception)
            except BaseException:  # the hub must survive whatever the greenlet does
                gevent.get_hub().handle_error(connection.greenlet, *sys.exc_info())
        gevent.get_hub().loop.run_callback(end)

    def serve_connection(self, sock, router):
        """Runs in the connection's greenlet until the client or the server closes it."""
        is_public = not router.is_admin
        try:
            if in_forked_child():
                return  # a service's forked child runs this greenlet too; only the worker serves
            if is_public and self.public_connections >= self.max_connections:
                self.load_slot.publish(self.public_connections)  # the listener counted it at accept
                self.refuse(sock)
                return
            connection = Connection(sock, gevent.getcurrent(), self.deadlines, time.monotonic())
            self.connections.add(connection)
            self.public_connections += is_public
            self.load_slot.publish(self.public_connections)
            try:
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._exchange(connection, router, is_public)
            except Expired as expired:
                if expired.status is not None:
                    connection.deadline = None  # the next sweep must not cut the answer short
                    self.count_response(expired.status, is_public)
                    self.answer_and_linger(sock, expired.status, 'the request was not received in time '
                                                                '(header_timeout or body_timeout)')
            finally:
                self.connections.discard(connection)
                self.public_connections -= is_public
                self.load_slot.publish(self.public_connections)
        except (OSError, ConnectionAborted):
            pass  # the client went away, or the server ended the connection; nothing to answer
        finally:
            sock.close()

    def _exchange(self, connection, router, is_public):
        sock = connection.sock
        deadlines = self.deadlines
        parser = RequestParser(self.max_request_size)
        monotonic = time.monotonic
        receive = _Receiver(sock)
        data = sock.recv(RECEIVE_SIZE)  # a new client has usually sent its request already
        while data:
            try:
                events = parser.feed(data)
            except ProtocolError as exc:
                # The requests complete before the error are answered first, in order.
                if self._answer(connection, router, exc.events, is_public):
                    connection.enter(SENDING, monotonic(), deadlines)
                    self.count_response(exc.status, is_public)
                    self.send(connection, self.protocol_error(exc))
                return
            if events and not self._answer(connection, router, events, is_public):
                return
            phase = parser.phase
            if phase is IDLE:
                # Bytes that start no request (CRLFs between requests) do not move an idle deadline.
                if connection.phase is not IDLE:
                    connection.phase, connection.expiry_status = IDLE, None
                    connection.deadline = monotonic() + self.idle_timeout
            elif phase is not connection.phase:
                connection.enter(phase, monotonic(), deadlines, parser.body_received)
            elif phase is BODY:
                connection.deadline = deadlines.expiry(BODY, connection.since, parser.body_received, monotonic())[0]
            data = receive(len(data) == RECEIVE_SIZE)

    def _answer(self, connection, router, events, is_public):
        """Answers the events of one feed in order; False when the connection must close."""
        for event in events:
            if event is CONTINUE:
                self.send(connection, CONTINUE_RESPONSE)
                continue
            keep_alive = event.keep_alive and not self.is_draining
            connection.phase, connection.deadline = SERVICE, None
            response = router.respond(event, keep_alive)
            if is_public:
                self.requests_served += 1
                if self.requests_served == self.request_limit:
                    self.on_request_limit()
            # SENDING's and IDLE's deadlines are set inline, from the table's values:
            # deadlines.expiry would cost two calls a request.
            connection.phase, connection.expiry_status = SENDING, None
            connection.deadline = time.monotonic() + self.sending_timeout
            self.send(connection, response)
            if not keep_alive:
                return False
        return True

    def send(self, connection, data):
        """Sends all of `data`; usually one send() call, the one syscall a response needs.

        gevent's sendall() asks the kernel for SO_SNDBUF before every send (a getsockopt per
        response, a third of a worker's syscalls under wrk), and its send() is a Python layer
        over the real socket's; the real socket is tried first, gevent's send() waits when the
        buffers are full. A response bigger than the socket buffers leaves as the client reads
        it: each part sent moves the deadline, so the sweep closes a client that stopped
        reading, never one that reads slowly.
        """
        sock, view = connection.sock, memoryview(data)
        try:
            sent = sock._sock.send(view)
        except BlockingIOError:
            sent = 0
        while sent < len(view):
            connection.deadline = time.monotonic() + self.sending_timeout
            sent += sock.send(view[sent:])

    def count_response(self, status, is_public):
        if is_public and self.counts is not None:
            self.counts.responses[status // 100] += 1

    def protocol_error(self, exc):
        return render_response(exc.status, error_body(exc.status, exc.reason), keep_alive=False)

    def refuse(self, sock):
        """503 to a connection over max_connections; the WARNING at most once a minute."""
        self.report_refusals(self.refusals.occurred(time.monotonic()))
        self.count_response(503, True)
        self.answer_and_linger(sock, 503, f'this worker has max_connections ({self.max_connections}) '
                                          'connections open; try again later',
                               ((b'Retry-After', RETRY_AFTER),))

    def report_refusals(self, count):
        if count:
            logger.warning('%d connections open, max_connections: refused %d new connection(s) with 503 since '
                           'the last report', self.public_connections, count, extra=CONNECTIONS_LIMITED.extra)

    def answer_and_linger(self, sock, status, message, headers=()):
        """Sends a closing answer without waiting on the client, then reads and drops what it
        still sends for up to LINGER seconds, so that closing does not reset the connection
        before the client has read the answer."""
        sock.settimeout(0)
        try:
            sock.send(render_response(status, error_body(status, message), False, extra_headers=headers))
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(LINGER)
            deadline = time.monotonic() + LINGER
            while sock.recv(RECEIVE_SIZE) and time.monotonic() < deadline:
                pass
        except OSError:
            pass

    def descriptors(self):
        """The descriptors of the listeners and client connections, for forks.guard()."""
        listeners = [server.socket.fileno() for server in self.stream_servers if not server.closed]
        return [*listeners, *(connection.sock.fileno() for connection in self.connections)]

    def describe_load(self):
        return f'{self.public_connections} connection(s) open, max_connections {self.max_connections}'

    def drain(self, timeout, idle_grace):
        """Stops accepting and waits up to `timeout` seconds for connections to finish.

        Connections idle for `idle_grace` seconds after the drain began are closed.
        """
        self.is_draining = True
        for stream_server in self.stream_servers:
            stream_server.close()
        started = time.monotonic()
        deadline = started + timeout
        while len(self.handlers) and time.monotonic() < deadline:
            if time.monotonic() - started >= idle_grace:
                self._close_idle()
            gevent.sleep(DRAIN_POLL)
        if self.busy_count():
            self.logger.warning('%d connection(s) still busy after %.1f s; closing them',
                                self.busy_count(), timeout)
        for connection in list(self.connections):
            # A request still arriving gets its 408 rather than a reset.
            self.end_connection_if(connection, _is_receiving_request, Expired(408))
        self.handlers.kill(ConnectionAborted, block=False)

    def busy_count(self):
        return sum(1 for connection in self.connections if connection.is_busy)

    def _close_idle(self):
        for connection in list(self.connections):
            if not connection.is_busy:
                self.end_connection_if(connection, _is_idle, ConnectionAborted())


class _Receiver:
    """recv() for a connection that has just been answered: waits for the socket to be
    readable first, then reads the real socket once.

    gevent's recv() reads first and waits after EAGAIN; between requests of a keep-alive
    client that first read almost always fails (the client has not had the response yet),
    which costs a syscall and an exception a request. `likely_more` (the last read filled
    the buffer) reads at once instead, as gevent does.
    """

    __slots__ = ('sock', 'real_recv', 'wait_readable')

    def __init__(self, sock):
        self.sock = sock
        self.real_recv = sock._sock.recv
        self.wait_readable = partial(sock._wait, sock._read_event)

    def __call__(self, likely_more):
        if likely_more:
            return self.sock.recv(RECEIVE_SIZE)
        self.wait_readable()
        try:
            return self.real_recv(RECEIVE_SIZE)
        except BlockingIOError:  # woken with nothing to read after all
            return self.sock.recv(RECEIVE_SIZE)


def _is_expired(connection):
    return connection.deadline is not None and connection.deadline < time.monotonic()


def _is_idle(connection):
    return connection.phase is IDLE


def _is_receiving_request(connection):
    return connection.phase is HEADERS or connection.phase is BODY
