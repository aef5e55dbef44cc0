"""The listening sockets: bound once by the master, inherited by every worker.

Binding in the master means a port in use is reported before anything forks, and a
reload can replace workers without ever closing the socket clients connect to.
"""

import errno
import os
import socket

from zato_daemon.errors import AddressInUse

ADMIN_SOCKET_MODE = 0o660


def listening_family(host):
    """The address family the server listens with for `host` (preflight checks the same)."""
    return socket.AF_INET6 if ':' in host else socket.AF_INET


def bind_tcp(host, port, backlog, settings='[main] port or host'):
    """A listening TCP socket, inheritable by workers; AddressInUse names the address and the
    `settings` that move it."""
    sock = socket.socket(listening_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        hint = 'another process listens there' if exc.errno == errno.EADDRINUSE else exc.strerror
        raise AddressInUse(f'cannot listen on {host}:{port}: {hint}; '
                           f'change {settings} in server.conf') from None
    sock.set_inheritable(True)
    return sock


def bind_unix(path, backlog=64):
    """The admin socket: mode 0660, so the server's group may use the CLI and others may not.

    The caller holds the pidfile lock, so a socket file already there is a leftover.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o117)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise AddressInUse(f'cannot create the admin socket {path}: {exc.strerror}') from None
    finally:
        os.umask(old_umask)
    os.chmod(path, ADMIN_SOCKET_MODE)
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def address_of(sock):
    """'host:port' of a TCP listener, as info and the logs show it."""
    return format_address(sock.getsockname())


def format_address(address):
    """'host:port', or '[v6]:port', of a (host, port, ...) tuple."""
    host, port = address[:2]
    return f'[{host}]:{port}' if ':' in host else f'{host}:{port}'
