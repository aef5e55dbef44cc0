"""What start would fail on once the configuration has loaded, checked before anything is bound.

`check(config, paths)` runs in start (after FS_CONFIG_ONLY, before the lock and the sockets),
at each reload, and in check-config, so that `check-config` saying OK means start does not
fail on these either:

- every `[services] paths` entry exists (exit 78);
- the listening host resolves, and each of its addresses is one of this machine's (78): a
  socket is bound to (address, 0) and closed, never to the configured port, which a running
  server holds;
- every path the server writes can be written, or created, by this user (exit 73): the
  state, logs and runtime directories, server.log, the diagnostics database and its
  directory, the pickup directory.

Nothing is created: check-config must leave no trace, and start creates the directories
itself right after. The decisions (which paths, what is wrong with one) are pure functions;
`check` and the `inspect_*` functions do the I/O.
"""

import errno
import os
import pwd
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from zato_daemon.errors import ConfigError, DirectoryError
from zato_daemon.sockets import listening_family

# How a missing target comes to exist at start: TREE, by mkdir with its missing parents
# (ServerDir.ensure, the pickup watcher, the diagnostics store); FILE, by open() in a
# directory that must already be there (server.log).
TREE = 'tree'
FILE = 'file'

PERMISSIONS_FIX = 'move what is in the way or fix the permissions, or run as the user the server runs as'


def check(config, paths):
    """Raises a ZatoDaemonError (one line) when start would fail on `config` and `paths`."""
    check_service_paths(paths.service_paths)
    check_host(config.server_config.main.host)
    user = user_name()
    for target in write_targets(config, paths):
        problem = write_problem(target, inspect_path(target.path), user)
        if problem is not None:
            raise DirectoryError(f'{problem}; {target.fix}')


# [services] paths #############################################################################


def check_service_paths(service_paths):
    """Raises ConfigError for the first configured service path that is not a file or a directory."""
    for path in service_paths:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise ConfigError(f'no such file or directory: {path}; fix [services] paths') from None
        except OSError as exc:
            raise ConfigError(f'cannot use {path}: {exc.strerror}; fix [services] paths') from None
        problem = service_path_problem(mode)
        if problem is not None:
            raise ConfigError(f'{path} is {problem}; fix [services] paths')


def service_path_problem(mode):
    """What is wrong with a [services] paths entry of this st_mode, or None. Pure."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return 'neither a file nor a directory'


# The listening host ###########################################################################


def check_host(host):
    """Raises ConfigError unless `host` resolves and each of its addresses can be bound here."""
    family = listening_family(host)
    try:
        found = socket.getaddrinfo(host, 0, family, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else 'not a valid host name'
        raise ConfigError(f'cannot resolve {host!r}: {reason}; write an address of this machine, or a '
                          'name it resolves', key='[main] host') from None
    for address in dict.fromkeys(sockaddr for *_, sockaddr in found):
        error = try_bind(family, address)
        if error is not None:
            raise ConfigError(f'{host_problem(host, address[0], error)}; write an address of this '
                              'machine, e.g. 127.0.0.1, or 0.0.0.0 for all of them', key='[main] host')


def try_bind(family, address):
    """Binds a new socket to `address` with port 0 and closes it; returns the OSError, or None."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((address[0], 0, *address[2:]))
    except OSError as exc:
        return exc
    return None


def host_problem(host, address, error):
    """What binding `address` (which `host` resolved to) failing with `error` means. Pure."""
    shown = repr(host) if host == address else f'{host!r} ({address})'
    if error.errno == errno.EADDRNOTAVAIL:
        return f'{shown} is not an address of this machine'
    if error.errno == errno.EAFNOSUPPORT:
        return f'cannot listen on {shown}: this machine has no IPv6'
    return f'cannot listen on {shown}: {error.strerror or error}'


# Paths the server writes ######################################################################


@dataclass(frozen=True)
class Target:
    """A path the server writes: `is_file` or a directory, how start makes it if missing
    (TREE or FILE), and the fix an error about it suggests."""

    path: Path
    is_file: bool
    made_by: str
    fix: str


@dataclass(frozen=True)
class Found:
    """What the file system holds at a target: the target itself, or its nearest existing
    ancestor (`existing`); whether that is a directory and writable by this user; or the
    `error` that stopped the look."""

    existing: Path
    is_dir: bool = False
    writable: bool = False
    error: str = None
    # A regular file, or /dev/null (a log thrown away on purpose): not a FIFO, which would
    # block the start, nor a device such as /dev/full.
    is_plain_file: bool = True


def write_targets(config, paths):
    """Every path start and the workers write, in the order start writes them. Pure."""
    def directory(path, fix=PERMISSIONS_FIX):
        return Target(path, False, TREE, fix)

    created = (paths.state, paths.logs, paths.runtime, paths.deployed_dir)
    targets = [directory(path) for path in created]
    # server.log is opened where it is: only a directory start creates may be missing.
    log_made_by = TREE if paths.server_log.parent in created else FILE
    targets.append(Target(paths.server_log, True, log_made_by,
                          'fix [logging] server_log, or the permissions of its directory'))
    enabled = config.server_config.component_enabled
    if enabled.samples or enabled.slow_responses:
        fix = 'fix [diagnostics] database, or the permissions of its directory'
        # SQLite writes its -wal and -shm files beside the database: the directory too.
        targets += [directory(paths.diagnostics_database.parent, fix),
                    Target(paths.diagnostics_database, True, TREE, fix)]
    if enabled.hot_deploy:
        targets.append(directory(paths.pickup_dir, 'fix pickup_dir in pickup.conf, or its permissions'))
    return targets


def write_problem(target, found, user):
    """What stops `user` writing `target`, given what `found` there, or None. Pure."""
    path = target.path
    if found.error is not None:
        return f'cannot use {path}: {found.error}'
    if found.existing == path:
        if target.is_file and found.is_dir:
            return f'{path} is a directory'
        if target.is_file and not found.is_plain_file:
            return f'{path} is not a regular file (a FIFO, a socket or a device)'
        if not target.is_file and not found.is_dir:
            return f'{path} is not a directory'
        if not found.writable:
            return f'{path} is not writable by user {user}'
        return None
    if target.made_by == FILE and found.existing != path.parent:
        return f'cannot create {path}: no such directory {path.parent}'
    if not found.is_dir:
        return f'cannot create {path}: {found.existing} is not a directory'
    if not found.writable:
        return f'cannot create {path}: {found.existing} is not writable by user {user}'
    return None


def inspect_path(path):
    """Found for `path`: itself if it exists, else its nearest existing ancestor."""
    existing = Path(path)
    while True:
        try:
            mode = os.stat(existing).st_mode
            break
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            # Missing, under a file, or under a directory this user may not search: the
            # ancestor says why it cannot be created.
            if existing.parent == existing:
                return Found(existing, error='its root cannot be read')
            existing = existing.parent
        except OSError as exc:
            return Found(existing, error=exc.strerror or str(exc))
    is_dir = stat.S_ISDIR(mode)
    # A directory is written through by creating entries in it: write and search.
    wanted = os.W_OK | os.X_OK if is_dir else os.W_OK
    is_plain_file = is_dir or stat.S_ISREG(mode) or str(existing) == os.devnull
    return Found(existing, is_dir, _access(existing, wanted), is_plain_file=is_plain_file)


def _access(path, mode):
    # The effective user is the one that opens the files (the same as the real one unless
    # someone runs the server set-uid).
    effective = os.access in os.supports_effective_ids
    return os.access(path, mode, effective_ids=effective)


def user_name():
    """This process's effective user, by name where it has one."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
