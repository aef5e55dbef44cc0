"""The worker's HTTP server: gevent StreamServer glue around the pure protocol core.

Each connection runs in its own greenlet: read, feed the parser, answer every
complete request in order (pipelining), keep the connection while the client wants
it. TCP_NODELAY is set on every accepted TCP socket: a response leaves in one write,
and without it Nagle's algorithm against delayed ACKs costs ~40 ms a request.

Draining (stop or reload): stop accepting; a connection in the middle of a request
finishes it and gets `Connection: close`; an idle keep-alive connection is given a
grace to send one more request (answered with `Connection: close`), and then closed:
short on stop, the whole graceful timeout on reload, when clients idle between
requests must not see a connection dropped under them.
Whatever is left at the deadline is killed. Every handler greenlet lives in one pool
from the moment it is spawned: a connection accepted just before the listener closed
may not have started running yet, and leaving it out would close it unanswered.
"""

import socket
import time

import gevent
from gevent.pool import Pool
from gevent.server import StreamServer

from zato_daemon.http.protocol import CONTINUE, CONTINUE_RESPONSE, ProtocolError, RequestParser, render_response

RECEIVE_SIZE = 65536
DRAIN_POLL = 0.05
# Idle and stalled connections are found by one sweep a second instead of a timeout on
# every recv and send: a gevent socket timeout arms a Timeout object per call, measurable
# on the hot path (about 3 % of a worker's time under wrk).
SWEEP_INTERVAL = 1.0


class Connection:
    """One client connection: its greenlet, whether a request is in progress, and since when
    it waits on the client (None while a service runs)."""

    __slots__ = ('sock', 'greenlet', 'is_busy', 'waiting_since')

    def __init__(self, sock, greenlet):
        self.sock = sock
        self.greenlet = greenlet
        self.is_busy = False
        self.waiting_since = time.monotonic()


class HttpServer:
    """Serves HTTP on one or more inherited listening sockets, each with its own router."""

    def __init__(self, main_config, dumps_json, logger):
        self.max_request_size = main_config.max_request_size
        self.keep_alive_timeout = main_config.keep_alive_timeout
        self.shares_listeners = main_config.workers > 1
        self.logger = logger
        self.dumps_json = dumps_json
        self.stream_servers = []
        self.handlers = Pool()
        self.connections = set()
        self.is_draining = False
        # Requests answered on the public listeners, and what to do when they reach a limit
        # (the worker asks the master to replace it: max_requests).
        self.requests_served = 0
        self.request_limit = 0
        self.on_request_limit = None

    def set_request_limit(self, limit, callback):
        """Calls `callback()` once, on the hub, when the public listeners answered `limit`
        requests; 0 means never."""
        self.request_limit = limit
        self.on_request_limit = callback

    def add_listener(self, listener, router):
        def handle(sock, address):
            self.serve_connection(sock, router)
        stream_server = StreamServer(listener, handle, spawn=self.handlers)
        if self.shares_listeners:
            # Every worker polls the same listening socket. Taking up to gevent's default
            # 100 connections per wake-up lets the first worker awake take a whole burst
            # of clients (wrk's 50 went to one worker of two in some runs: -40 % req/s);
            # one per wake-up spreads them, as nginx's default and gunicorn's gevent worker do.
            stream_server.max_accept = 1
        self.stream_servers.append(stream_server)

    def start(self):
        for stream_server in self.stream_servers:
            stream_server.start()
        gevent.spawn(self.close_stalled_connections)

    def close_stalled_connections(self):
        """Closes connections that waited on their client longer than keep_alive_timeout:
        idle keep-alive ones, and clients that stopped sending or reading mid-request."""
        while True:
            gevent.sleep(SWEEP_INTERVAL)
            deadline = time.monotonic() - self.keep_alive_timeout
            for connection in list(self.connections):
                waiting_since = connection.waiting_since
                if waiting_since is not None and waiting_since < deadline:
                    connection.greenlet.kill(block=False)

    def serve_connection(self, sock, router):
        """Runs in the connection's greenlet until the client or the server closes it."""
        connection = Connection(sock, gevent.getcurrent())
        self.connections.add(connection)
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._exchange(connection, router)
        except OSError:
            pass  # the client went away or timed out; nothing to answer
        finally:
            self.connections.discard(connection)
            sock.close()

    def _exchange(self, connection, router):
        sock = connection.sock
        parser = RequestParser(self.max_request_size)
        monotonic = time.monotonic
        while True:
            connection.waiting_since = monotonic()
            data = sock.recv(RECEIVE_SIZE)
            if not data:
                return
            connection.is_busy = True
            try:
                events = parser.feed(data)
            except ProtocolError as exc:
                self.send(connection, self.protocol_error(exc))
                return
            for event in events:
                if event is CONTINUE:
                    self.send(connection, CONTINUE_RESPONSE)
                    continue
                keep_alive = event.keep_alive and not self.is_draining
                connection.waiting_since = None
                response = router.respond(event, keep_alive)
                connection.waiting_since = monotonic()
                self.send(connection, response)
                if not keep_alive:
                    return
            connection.is_busy = parser.has_partial_request

    @staticmethod
    def send(connection, data):
        """Sends all of `data`; usually one send() call, the one syscall a response needs.

        gevent's sendall() asks the kernel for SO_SNDBUF before every send (a getsockopt per
        response, a third of a worker's syscalls under wrk). A response bigger than the
        socket buffers leaves as the client reads it: each part sent counts as progress, so
        the sweep closes a client that stopped reading, never one that reads slowly.
        """
        sock, view = connection.sock, memoryview(data)
        sent = sock.send(view)
        while sent < len(view):
            connection.waiting_since = time.monotonic()
            sent += sock.send(view[sent:])

    def protocol_error(self, exc):
        body = self.dumps_json({'error': exc.reason, 'status': exc.status}).encode()
        return render_response(exc.status, body, keep_alive=False)

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
        self.handlers.kill(block=False)

    def busy_count(self):
        return sum(1 for connection in self.connections if connection.is_busy)

    def _close_idle(self):
        for connection in list(self.connections):
            if not connection.is_busy:
                connection.greenlet.kill(block=False)
