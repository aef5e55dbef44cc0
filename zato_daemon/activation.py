"""Socket activation: the listening socket systemd passes (zato-daemon.socket), used instead of
binding one.

With the socket held by systemd, a restart or a package upgrade leaves no moment without a
listening socket: connections arriving while no master runs wait in the kernel's backlog
and are served by the next one, instead of being refused. The master takes what systemd
passed (LISTEN_FDS and LISTEN_PID, checked by python-systemd's listen_fds_with_names,
which also removes them from the environment so that no worker takes them too), uses the
TCP stream socket named "http" (FileDescriptorName= in the socket unit) or else the first
one, and says in the journal what it got. server.conf's host and port then only serve to
warn when they name another address: the socket unit decides. A reload keeps the socket;
a stop closes only the master's copies, so systemd's stays open and keeps queueing.

`choose` decides from plain descriptions of the passed sockets; `activated_listener` does
the system calls.
"""

import os
import socket
from dataclasses import dataclass

from zato_daemon.errors import ConfigError
from zato_daemon.sockets import format_address

try:
    from systemd import daemon as _daemon
except ImportError:  # a development venv without systemd-python binds as usual
    _daemon = None

PREFERRED_NAME = 'http'
STREAM_FAMILIES = (socket.AF_INET, socket.AF_INET6)


@dataclass(frozen=True)
class Passed:
    """One descriptor systemd passed, as the choice needs it."""

    fd: int
    name: str
    family: int
    type: int
    listening: bool
    address: str      # 'host:port', '[::1]:port', or the text of another kind of address

    @property
    def is_usable(self):
        return self.family in STREAM_FAMILIES and self.type == socket.SOCK_STREAM and self.listening


@dataclass(frozen=True)
class Choice:
    """Which passed descriptor to serve on (None: bind as without systemd), and what to log."""

    fd: int = None
    address: str = ''
    infos: tuple = ()
    warnings: tuple = ()


def choose(passed, configured_address, configured_addresses=None):
    """The descriptor to listen on among those systemd passed, with the lines to log. Pure.

    `configured_address` is server.conf's host:port as written; `configured_addresses` what
    it resolves to (the passed address matching any of them is no reason to warn).

    Raises ConfigError when systemd passed descriptors and none is a listening TCP socket:
    serving on an address nobody asked for would hide the mistake."""
    if not passed:
        return Choice()
    usable = [item for item in passed if item.is_usable]
    if not usable:
        described = ', '.join(f'{item.name or "unnamed"} ({item.address})' for item in passed)
        raise ConfigError(f'systemd passed {described}, none a listening TCP stream socket; '
                          'fix ListenStream= in the socket unit')
    named = [item for item in usable if item.name == PREFERRED_NAME]
    chosen = (named or usable)[0]
    infos = [f'Listening on {chosen.address}, the socket systemd passed '
             f'({chosen.name or "unnamed"}): restarts and upgrades queue connections instead of refusing them']
    warnings = [f'systemd also passed {item.name or "unnamed"} ({item.address}); only one socket is served, '
                'it is ignored' for item in passed if item is not chosen]
    if chosen.address not in {configured_address, *(configured_addresses or ())}:
        warnings.append(f'server.conf names {configured_address} but systemd passed {chosen.address}: serving '
                        'on what systemd passed; make [main] host and port or ListenStream= agree')
    return Choice(chosen.fd, chosen.address, tuple(infos), tuple(warnings))


def describe(fd, name):
    """A Passed for one descriptor, read from the kernel."""
    probe = socket.socket(fileno=fd)
    try:
        try:
            listening = bool(probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        except OSError:
            listening = False
        try:
            local = probe.getsockname()
        except OSError:
            local = '?'
        address = format_address(local) if probe.family in STREAM_FAMILIES else str(local or probe.family)
        return Passed(fd, name, probe.family, probe.type, listening, address)
    finally:
        probe.detach()  # the descriptor stays open: it is systemd's socket


def passed_by_systemd():
    """[Passed] for the descriptors systemd passed to this very process, [] otherwise."""
    if _daemon is None:
        return []
    try:
        named = _daemon.listen_fds_with_names(unset_environment=True)
    except (OSError, ValueError):
        return []
    return [describe(fd, name or '') for fd, name in sorted(named.items())]


def activated_listener(host, port):
    """(listening socket, Choice) from systemd, or (None, Choice()) when it passed nothing.

    The socket is inheritable, as the one bind_tcp makes: the workers accept on it."""
    passed = passed_by_systemd()
    choice = choose(passed, format_address((host, port)), resolved_addresses(host, port) if passed else ())
    if choice.fd is None:
        return None, choice
    for item in passed:
        if item.fd != choice.fd:
            # Left open (it is systemd's), but not handed down to the workers.
            os.set_inheritable(item.fd, False)
    listener = socket.socket(fileno=choice.fd)
    listener.set_inheritable(True)
    return listener, choice


def resolved_addresses(host, port):
    """The 'host:port' texts `host` resolves to; none when it does not resolve."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return ()
    return tuple(format_address(sockaddr) for _, _, _, _, sockaddr in found)
