"""Socket activation: the listening socket systemd passes (zato-daemon.socket), used instead of
binding one.

With the socket held by systemd, a restart or a package upgrade leaves no moment without a
listening socket: connections arriving while no master runs wait in the kernel's backlog
and are served by the next one, instead of being refused. The master takes what systemd
passed (LISTEN_FDS and LISTEN_PID, checked by python-systemd's listen_fds_with_names;
the variables are removed from the environment so that no worker or service sees them),
uses the one listening TCP stream socket among them, and says in the journal what it got.
Several listening TCP sockets are refused (78): the kernel completes connections on each,
and those on a socket nobody accepts on would hang. Anything else passed is closed here
(systemd keeps its own copy), so that no worker inherits it. server.conf's host and port then only serve to
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

LISTEN_VARIABLES = ('LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES')
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
    if len(usable) > 1:
        # The kernel completes connections on every listening socket: one nobody accepts on
        # would leave its clients hanging instead of refused.
        described = ', '.join(item.address for item in usable)
        raise ConfigError(f'systemd passed {len(usable)} listening TCP sockets ({described}); the server serves '
                          'one: keep one ListenStream= in the socket unit')
    chosen = usable[0]
    infos = [f'Listening on {chosen.address}, the socket systemd passed '
             f'({chosen.name or "unnamed"}): restarts and upgrades queue connections instead of refusing them']
    warnings = [f'systemd also passed {item.name or "unnamed"} ({item.address}), which is not a listening TCP '
                'socket; closed' for item in passed if item is not chosen]
    if chosen.address not in {configured_address, *(configured_addresses or ())}:
        warnings.append(f'server.conf names {configured_address} but systemd passed {chosen.address}: serving '
                        'on what systemd passed; make [main] host and port or ListenStream= agree')
    return Choice(chosen.fd, chosen.address, tuple(infos), tuple(warnings))


def describe(fd, name):
    """A Passed for one descriptor, read from the kernel (a file or a FIFO is described as such)."""
    try:
        probe = socket.socket(fileno=fd)
    except OSError as exc:
        return Passed(fd, name, 0, 0, False, f'not a socket: {exc.strerror or exc}')
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
    """([Passed] for the descriptors systemd passed to this very process, [warnings])."""
    variables = {name: os.environ[name] for name in LISTEN_VARIABLES if name in os.environ}
    if _daemon is None or not variables:
        return [], []
    try:
        # Reads the C environment, and unsets the variables there.
        named = _daemon.listen_fds_with_names(unset_environment=True)
    except (OSError, ValueError):
        named = {}
    for name in variables:
        # And from os.environ too, which python-systemd leaves alone: no worker, service or
        # child process may see them.
        os.environ.pop(name, None)
    if not named and variables.get('LISTEN_PID') == str(os.getpid()):
        return [], [f'LISTEN_FDS={variables.get("LISTEN_FDS", "")!r} names no descriptor passed to this process; '
                    'binding [main] host and port as configured']
    return [describe(fd, name or '') for fd, name in sorted(named.items())], []


def activated_listener(host, port):
    """(listening socket, Choice) from systemd, or (None, Choice()) when it passed nothing.

    The socket is inheritable, as the one bind_tcp makes: the workers accept on it."""
    passed, warnings = passed_by_systemd()
    choice = choose(passed, format_address((host, port)), resolved_addresses(host, port) if passed else ())
    if warnings:
        choice = Choice(choice.fd, choice.address, choice.infos, (*choice.warnings, *warnings))
    for item in passed:
        if item.fd != choice.fd:
            # Closing this process's copy leaves systemd's open; the workers must not inherit it.
            try:
                os.close(item.fd)
            except OSError:
                pass
    if choice.fd is None:
        return None, choice
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
