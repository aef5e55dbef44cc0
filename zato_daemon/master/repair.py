"""Runtime files deleted under a running master, noticed and recreated within a tick.

A clean-up job, a hand or `rm -rf /run/...` may remove the runtime directory of a
running server. Left alone, `stop` found no pidfile and said "not running" while the
server served, `start` then failed with "port in use", and the CLI could not reach the
admin socket. The master checks once a tick (a few stat calls) and recreates what is gone:
the directory, the pidfile (a new file, locked again: the lock on the deleted one no longer
guards the path), master.json, and the admin socket. Workers accept on the admin socket
they inherited, so after re-binding it the arbiter replaces them, the new ones first.

`needed_repairs` decides from what was observed; `RuntimeFiles` observes and acts.
"""

import fcntl
import os
import stat

from zato_daemon.errors import ZatoDaemonError
from zato_daemon.logs.throttle import Throttle
from zato_daemon.sockets import bind_unix

# In the order they are repaired: the directory first, the socket last (it needs workers replaced).
REPAIRS = ('runtime directory', 'pidfile', 'status file', 'admin socket')


def needed_repairs(runtime_dir_exists, pidfile_in_place, status_file_exists, admin_socket_in_place):
    """The names in REPAIRS to carry out, in order. Pure.

    `*_in_place` is None when there is nothing to compare (no pidfile held, no socket
    identity known): nothing is repaired then. A missing directory means everything in it
    is missing too."""
    if not runtime_dir_exists:
        return tuple(name for name, known in zip(REPAIRS, (True, pidfile_in_place, True, admin_socket_in_place))
                     if known is not None)
    observed = {'pidfile': pidfile_in_place, 'status file': status_file_exists,
                'admin socket': admin_socket_in_place}
    return tuple(name for name in REPAIRS[1:] if observed[name] is False)


def identity(path):
    """(device, inode) of the file at `path`, or None when there is none."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def is_socket(path):
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


class RuntimeFiles:
    """The master's watch over its runtime files. `repair()` once a tick."""

    def __init__(self, pidfile, admin_listener_path):
        self.pidfile = pidfile
        self.admin_identity = identity(admin_listener_path) if is_socket(admin_listener_path) else None
        # Descriptors of pidfiles recreated here: workers close them after fork, like the first one.
        self.new_fds = []
        # A re-bound admin socket, for the arbiter to take (and replace its workers).
        self.admin_listener = None
        # A repair that keeps failing (a file where the directory must be) is reported once a minute.
        self.failures = {name: Throttle() for name in REPAIRS}

    def private_fds(self):
        return list(self.new_fds)

    def take_admin_listener(self):
        listener, self.admin_listener = self.admin_listener, None
        return listener

    def observe(self, paths):
        pidfile_in_place = None
        if self.pidfile is not None and self.pidfile.fd is not None:
            held = os.fstat(self.pidfile.fd)
            pidfile_in_place = identity(paths.pidfile) == (held.st_dev, held.st_ino)
        admin_in_place = None
        if self.admin_identity is not None:
            admin_in_place = identity(paths.admin_socket) == self.admin_identity
        return needed_repairs(paths.runtime.is_dir(), pidfile_in_place, paths.status_file.exists(), admin_in_place)

    def repair(self, paths, write_status, now):
        """Recreates what is missing; returns one sentence per repair (or repeated failure), for the log."""
        reports = []
        for name in self.observe(paths):
            try:
                getattr(self, '_repair_' + name.replace(' ', '_'))(paths, write_status)
            except (OSError, ZatoDaemonError) as exc:
                count = self.failures[name].occurred(now)
                if count:
                    again = f' ({count} attempts since the last report)' if count > 1 else ''
                    reports.append(f'The {name} was deleted and cannot be recreated: {exc}{again}')
                continue
            reports.append(f'The {name} {_where(paths, name)} was deleted while the server ran; recreated it')
        return reports

    def _repair_runtime_directory(self, paths, write_status):
        paths.runtime.mkdir(parents=True, exist_ok=True)

    def _repair_pidfile(self, paths, write_status):
        fd = os.open(paths.pidfile, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OSError(f'another process holds the lock on a new {paths.pidfile}') from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
        # The old descriptor keeps its lock on the deleted file until exit; the PidFile now
        # releases (and unlinks) the new one.
        self.new_fds.append(fd)
        self.pidfile.fd = fd

    def _repair_status_file(self, paths, write_status):
        write_status()  # logs its own failure, and says nothing: look
        if not paths.status_file.exists():
            raise OSError(f'{paths.status_file} could not be written')

    def _repair_admin_socket(self, paths, write_status):
        listener = bind_unix(paths.admin_socket)
        self.admin_identity = identity(paths.admin_socket)
        if self.admin_listener is not None:
            self.admin_listener.close()
        self.admin_listener = listener


def _where(paths, name):
    return {'runtime directory': paths.runtime, 'pidfile': paths.pidfile, 'status file': paths.status_file,
            'admin socket': paths.admin_socket}[name]
