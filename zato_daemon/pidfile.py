"""A pidfile that is also the "one server per directory" lock.

The lock is flock(2) on the open file, so it disappears with the process even after
SIGKILL: a stale file left behind never blocks a start. The object is a context
manager, which is what python-daemon expects of its `pidfile` argument.
"""

import fcntl
import os

from zato_daemon.errors import AlreadyRunning


class PidFile:
    """Acquire before binding anything; the descriptor must survive daemonizing."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def acquire(self):
        """Takes the lock or raises AlreadyRunning naming the running master's pid."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = read_pid(self.path)
            raise AlreadyRunning(f'a server is already running in this directory (master pid {pid}, '
                                 f'pidfile {self.path})') from None
        self.fd = fd
        return self

    def write_pid(self, pid=None):
        """Records the pid of the process that now holds the lock (after a fork, the child)."""
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f'{pid or os.getpid()}\n'.encode(), 0)

    def release(self):
        """Removes the file and drops the lock; only the master calls it, at exit."""
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        if self.fd is None:
            self.acquire()
        self.write_pid()
        return self

    def __exit__(self, *exc_info):
        self.release()


def read_pid(path):
    """The pid in a pidfile, or None."""
    try:
        with open(path, encoding='ascii') as pid_file:
            return int(pid_file.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def running_pid(path):
    """The pid of the server holding the lock on `path`, or None when nobody holds it.

    Raises PermissionError when this user may not open the file or enter its directory:
    that is not "no server runs", and the CLI must say which it is.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except PermissionError:
        raise
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_pid(path)
    finally:
        os.close(fd)
    return None
