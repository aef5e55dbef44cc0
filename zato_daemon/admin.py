"""The CLI's side of the admin socket: HTTP/1.1 over the server's Unix socket.

The server side is the ordinary HTTP router with `is_admin` set, served by every
worker on the socket the master bound in the runtime directory (mode 0660).
"""

import http.client
import json
import socket

from zato_daemon.errors import AdminCallError


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__('localhost', timeout=timeout)
        self._path = str(path)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def call_service(socket_path, name, payload=None, timeout=30.0):
    """Invokes a service through the admin socket; returns (HTTP status, cid, parsed body)."""
    body = b'' if payload is None else json.dumps(payload).encode()
    connection = _UnixConnection(socket_path, timeout)
    try:
        connection.request('POST', f'/services/{name}', body, {'Content-Type': 'application/json'})
        response = connection.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise AdminCallError(f'the server does not answer on {socket_path}: {exc}') from None
    finally:
        connection.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode('utf-8', 'replace')
    return response.status, response.getheader('X-Zato-CID'), parsed
