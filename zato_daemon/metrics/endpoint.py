"""/metrics over HTTP, served by the master from a thread, on a listener of its own.

prometheus_client does the format and the content negotiation (its MetricsHandler: text or
OpenMetrics, gzip); the standard library's http.server does HTTP. What is ours is the
bounds a master needs against careless or hostile clients: at most MAX_CLIENTS connections
served at once (more are closed at once, the master never holds a thread per client), and
CLIENT_TIMEOUT for each, in all, to send its request and read the answer (a client dripping a
byte at a time is cut off too). The handler threads never touch the master's loop: they read
the aggregate under its lock. The master forks workers while scrapes are answered: the
connections open then are closed in the worker at once (`close_in_child`).
"""

import http.server
import os
import socket
import socketserver
import threading

from prometheus_client.exposition import MetricsHandler

METRICS_PATH = '/metrics'
MAX_CLIENTS = 8
CLIENT_TIMEOUT = 10.0
NOT_FOUND = b'zato-daemon serves its metrics at /metrics\n'


class _Handler(MetricsHandler):
    timeout = CLIENT_TIMEOUT
    # One request per connection: a scraper reconnects each time, and a client keeping the
    # connection would hold one of MAX_CLIENTS.
    protocol_version = 'HTTP/1.0'
    server_version = 'zato-daemon'

    def version_string(self):
        return self.server_version  # not the Python version: nothing for a scanner to match

    def setup(self):
        super().setup()
        # The socket timeout bounds each read; this bounds the whole exchange.
        self.deadline = threading.Timer(self.timeout, _cut_off, (self.connection,))
        self.deadline.daemon = True
        self.deadline.start()

    def finish(self):
        self.deadline.cancel()
        super().finish()

    def do_GET(self):
        if self.path.split('?', 1)[0] != METRICS_PATH:
            self.send_response(404)
            self.send_header('Content-Type', 'text/plain; charset=utf-8')
            self.send_header('Content-Length', str(len(NOT_FOUND)))
            self.end_headers()
            self.wfile.write(NOT_FOUND)
            return
        super().do_GET()


def _cut_off(connection):
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, sock, handler):
        # The socket is bound already (by the master, before it daemonized): nothing to bind here.
        super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.clients = threading.BoundedSemaphore(MAX_CLIENTS)
        # The connections being answered, for a worker forked meanwhile to close.
        self.connections = set()
        self.connections_lock = threading.Lock()

    def get_request(self):
        request, address = super().get_request()
        with self.connections_lock:
            self.connections.add(request)
        return request, address

    def shutdown_request(self, request):
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def process_request(self, request, client_address):
        if not self.clients.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.clients.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.clients.release()

    def handle_error(self, request, client_address):
        pass  # a client that went away, or timed out: nothing for the log


class MetricsEndpoint:
    """Serves `registry` on `sock` from a daemon thread until `stop()`."""

    def __init__(self, sock, registry):
        self.sock = sock
        self.server = _Server(sock, type('Handler', (_Handler,), {'registry': registry}))
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={'poll_interval': 0.5},
                                       name='metrics', daemon=True)

    def start(self):
        self.thread.start()
        return self

    def close_in_child(self):
        """In a process forked from the master: closes its copies of the connections being answered."""
        for connection in list(self.server.connections):
            # close() only marks a socket whose file objects the handler still holds; detach
            # takes the descriptor from it (nothing closes it twice), and it is closed here.
            try:
                fd = connection.detach()
            except OSError:
                continue
            if fd >= 0:
                os.close(fd)

    def stop(self):
        """Stops serving and closes the socket; clients being answered finish on their own."""
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()
