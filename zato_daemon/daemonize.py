"""`start` without --fg, outside systemd: detach with python-daemon and report the outcome.

python-daemon's detach makes the original process exit at once, too early to say
whether the server came up. So the CLI forks first: the child daemonizes and runs the
master, the parent waits on a pipe for the master's "ready" line (or the pipe's end,
meaning it failed) and reports. Never used under systemd: python-daemon closes every
descriptor, systemd's sockets included, and points stdout at /dev/null.
"""

import os
import select
import time

import daemon

from zato_daemon.errors import EXIT_SOFTWARE
from zato_daemon.master.launch import serve

READY_PREFIX = b'READY '
FAIL_PREFIX = b'FAIL '


def start_in_background(prepared, wait_seconds):
    """Starts the prepared server detached.

    Returns (master pid, None) once it serves, or (None, (exit status, reason)) when it
    stopped before that or did not report within `wait_seconds`.
    """
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_fd)
        _run_daemon(prepared, write_fd)
    os.close(write_fd)
    _close_in_parent(prepared)
    os.waitpid(child, 0)
    line = _read_line(read_fd, wait_seconds)
    os.close(read_fd)
    if line.startswith(READY_PREFIX):
        return int(line[len(READY_PREFIX):]), None
    if line.startswith(FAIL_PREFIX):
        status, _, reason = line[len(FAIL_PREFIX):].decode('utf-8', 'replace').partition(' ')
        return None, (int(status), reason)
    return None, (EXIT_SOFTWARE, f'no word from the server within {wait_seconds:.0f} s; it may still be '
                                 'starting (zato-daemon info DIR says)')


def _run_daemon(prepared, write_fd):
    status = 1
    try:
        context = daemon.DaemonContext(
            working_directory=str(prepared.server_dir.base),
            umask=0o027,
            pidfile=prepared.pidfile,
            files_preserve=[*prepared.preserved_fds(), write_fd],
            signal_map={},
            detach_process=True,
        )
        context.open()

        def tell_parent(line):
            # The parent may have stopped waiting (its time limit passed) and exited: the
            # server it started serves on all the same, it just has nobody to tell.
            try:
                os.write(write_fd, line)
            except OSError:
                pass

        def report_ready(arbiter):
            tell_parent(READY_PREFIX + str(arbiter.pid).encode() + b'\n')

        def report_halt(halt):
            # Read only if READY never came: the parent stops at the first line.
            reason = ' '.join(str(halt.reason).split())
            tell_parent(FAIL_PREFIX + f'{halt.exit_status} {reason}\n'.encode())

        status = serve(prepared, foreground=False, on_ready=report_ready, on_halt=report_halt,
                       private_fds=(write_fd,))
    finally:
        os._exit(status)


def _close_in_parent(prepared):
    # The parent must not keep the lock or the sockets: the daemon owns them now.
    os.close(prepared.pidfile.fd)
    prepared.pidfile.fd = None
    prepared.listener.close()
    prepared.admin_listener.close()


def _read_line(fd, wait_seconds):
    deadline = time.monotonic() + wait_seconds
    data = b''
    while b'\n' not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            break
        chunk = os.read(fd, 256)
        if not chunk:
            break
        data += chunk
    return data.split(b'\n', 1)[0]
