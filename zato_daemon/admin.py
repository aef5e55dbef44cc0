"""The CLI's side of the admin socket: HTTP/1.1 over the server's Unix socket.

The server side is the ordinary HTTP router with `is_admin` set, served by every
worker on the socket the master bound in the runtime directory (mode 0660).
"""

import http.client
import json
import os
import socket
import weakref

from zato_daemon.errors import AdminCallError

# The sockets of the calls under way in this process. One forked meanwhile must not keep a
# copy: the master forks workers while its cluster thread asks them for their services, and
# the worker that accepts that call, holding the client end too, would never see its end of
# file; drained at the next reload, it then waited for the connection until graceful_timeout.
_OPEN_SOCKETS = weakref.WeakSet()


def _close_inherited_sockets():
    for sock in list(_OPEN_SOCKETS):
        # detach(), not close(): the response's file object holds a reference, and close()
        # leaves the descriptor open while one does. This process's copy only: the parent's
        # call goes on.
        fd = sock.detach()
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


os.register_at_fork(after_in_child=_close_inherited_sockets)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__('localhost', timeout=timeout)
        self._path = str(path)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        _OPEN_SOCKETS.add(self.sock)
        self.sock.settimeout(self.timeout)
        try:
            self.sock.connect(self._path)
        except PermissionError as exc:
            # connect() names no file; the CLI tells the user which one they may not use.
            raise PermissionError(exc.errno, exc.strerror, self._path) from None


def encode_payload(payload):
    """The request body `call_service` sends for `payload`, so a caller can measure it first."""
    return b'' if payload is None else json.dumps(payload).encode()


def call_service(socket_path, name, payload=None, timeout=30.0):
    """Invokes a service through the admin socket; returns (HTTP status, cid, parsed body).

    Raises PermissionError (naming the socket) when this user may not connect, and
    AdminCallError when the server does not answer.
    """
    connection = _UnixConnection(socket_path, timeout)
    try:
        response = _exchange(connection, f'/services/{name}', encode_payload(payload))
        raw = response.read()
    except PermissionError:
        raise
    except (OSError, http.client.HTTPException) as exc:
        raise AdminCallError(f'the server does not answer on {socket_path}: {exc}') from None
    finally:
        connection.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode('utf-8', 'replace')
    return response.status, response.getheader('X-Zato-CID'), parsed


def _exchange(connection, path, body):
    try:
        connection.request('POST', path, body, {'Content-Type': 'application/json'})
    except (BrokenPipeError, ConnectionResetError) as sending_failed:
        # The server may have answered before the whole body was sent (413 for a body over
        # max_request_size) and closed: its answer is what the user needs, not "broken pipe".
        try:
            return connection.getresponse()
        except (OSError, http.client.HTTPException):
            raise sending_failed from None
    return connection.getresponse()
