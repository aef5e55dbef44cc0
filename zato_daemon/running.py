"""The CLI's view of a running server: which pid is the master of a server directory,
whether it is still there, and what it reports about a reload.

Finding the master, in order:

1. the pidfile's lock (pidfile.py): whoever holds it is the master;
2. when the pidfile is gone (deleted by hand, or the whole runtime directory: the master
   recreates them within a tick, but a command may come first), master.json's
   master_proc_pid, if that process's title names this directory;
3. else any process whose title names this directory. The master sets it with
   setproctitle: `zato-daemon: master DIR`, DIR as `start` made it absolute.

A process found by its title counts only when it runs as root, as the user of the command,
or as the owner of the server's directories: any user may give a process that title, and
`stop` must neither signal a stranger's process nor report a stop that did not happen.

The decisions (does a title name this directory, has a reload finished and how) are pure
functions; the rest reads /proc and the runtime files.
"""

import os
from dataclasses import dataclass

from zato_daemon.errors import EXIT_OK, EXIT_SOFTWARE
from zato_daemon.pidfile import running_pid
from zato_daemon.status import read_status

MASTER_TITLE_PREFIX = b'zato-daemon: master '


def master_title(base):
    """The title the master of server directory `base` (absolute) gives itself."""
    return MASTER_TITLE_PREFIX.decode() + str(base)


# ---- pure decisions

def directory_in_title(cmdline):
    """The directory a master's /proc/PID/cmdline names (bytes), or None for any other process.

    After setproctitle, cmdline holds the title and then padding, NULs or (with some
    versions) spaces; an ordinary process has its arguments separated by NULs, and a
    master that has not named itself yet reads `python3 -m zato_daemon start ...`.
    """
    title = cmdline.split(b'\0', 1)[0]
    if not title.startswith(MASTER_TITLE_PREFIX):
        return None
    return title[len(MASTER_TITLE_PREFIX):] or None


def title_names(cmdline, directories):
    """True when `cmdline` is the title of the master of one of `directories` (bytes), exactly:
    /srv/a is not /srv/ab, nor /srv/a/sub. Trailing spaces are padding, not part of the name
    (so a directory whose own name ends in spaces is not told apart from the one without)."""
    directory = directory_in_title(cmdline)
    if directory is None:
        return False
    return directory in directories or directory.rstrip(b' ') in directories


@dataclass(frozen=True)
class ReloadOutcome:
    """What `zato-daemon reload` prints and exits with: stdout for 0, stderr otherwise."""

    exit_status: int
    message: str


def reload_outcome(status, requested_at):
    """The outcome of the reload asked for at `requested_at` (wall time, taken before SIGHUP),
    or None while it has not finished. Pure: `status` is master.json as read (or None).

    The master notes `started_at` when it begins a reload, after the signal arrived, so a
    reload that started at or after `requested_at` read the configuration as it was when the
    command ran. One that started before (a reload already running when the signal came) does
    not count: the request was queued, and the reload after it answers. A reload that serves
    several requests answers each of them.
    """
    if not isinstance(status, dict):
        return None  # missing while the master recreates it, or never written
    if 'reload' not in status:
        return ReloadOutcome(EXIT_OK, 'reload requested; this server does not report the outcome of a reload '
                                      '(an older version): see its log')
    last = (status['reload'] or {}).get('last') if isinstance(status['reload'], dict) else None
    if not isinstance(last, dict):
        return None
    started_at = last.get('started_at')
    if not _is_number(started_at) or started_at < requested_at:
        return None
    reason = ' '.join(str(last.get('reason') or '').split()) or 'no reason given'
    outcome = last.get('outcome')
    if outcome == 'applied':
        took = last.get('finished_at')
        took = f' in {took - started_at:.1f} s' if _is_number(took) else ''
        return ReloadOutcome(EXIT_OK, f'reload applied{took}: {reason}')
    exit_status = last.get('exit_status')
    if not isinstance(exit_status, int) or isinstance(exit_status, bool) or not 0 < exit_status < 256:
        exit_status = EXIT_SOFTWARE
    if outcome in ('refused', 'failed'):
        return ReloadOutcome(exit_status, f'reload {outcome}, the server keeps its previous configuration: {reason}')
    return ReloadOutcome(EXIT_SOFTWARE, f'reload ended with an outcome this command does not know, {outcome!r}: '
                                        f'{reason}')


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---- reading the system

def find_master(server_dir):
    """The pid of the master of `server_dir` (a ServerDir), or None when none runs.

    Raises PermissionError when this user may not open the pidfile: a server may run, and
    whoever asks must be told they may not see it, not that nothing runs.
    """
    pid = running_pid(server_dir.pidfile)
    if pid is not None:
        return pid
    master = _Matcher(server_dir)
    status = read_status(server_dir.status_file)
    candidate = status.get('master_proc_pid') if isinstance(status, dict) else None
    if isinstance(candidate, int) and master.is_trusted(candidate):
        return candidate
    for pid in _all_pids():
        if pid != os.getpid() and master.is_trusted(pid):
            return pid
    return None


def is_master_of(pid, server_dir):
    """True while process `pid` is the master of `server_dir`: false once it has exited (a
    zombie has an empty cmdline), or if the pid now belongs to another process."""
    return _Matcher(server_dir).names(pid)


class _Matcher:
    """Does a process's title name this server directory, and does it run as a trusted user."""

    def __init__(self, server_dir):
        base = server_dir.base
        self.spellings = {os.fsencode(str(base)), os.fsencode(os.path.realpath(base))}
        self.server_dir = server_dir

    def names(self, pid):
        cmdline = _read_proc(pid, 'cmdline')
        if title_names(cmdline, self.spellings):
            return True
        # `start` given another spelling of the directory: a symlink to it, say.
        directory = directory_in_title(cmdline)
        return directory is not None and os.fsencode(os.path.realpath(directory.rstrip(b' '))) in self.spellings

    def is_trusted(self, pid):
        return self.names(pid) and process_owner(pid) in _trusted_uids(self.server_dir)


def _trusted_uids(server_dir):
    # Root, this user, and whoever owns the server's directories (zato, under systemd).
    uids = {0, os.getuid()}
    for path in (server_dir.base, server_dir.state, server_dir.runtime):
        try:
            uids.add(os.stat(path).st_uid)
        except OSError:
            pass
    return uids


def _read_proc(pid, name):
    try:
        with open(f'/proc/{pid}/{name}', 'rb') as proc_file:
            return proc_file.read()
    except OSError:
        return b''


def process_owner(pid):
    try:
        return os.stat(f'/proc/{pid}').st_uid
    except OSError:
        return None


def _all_pids():
    try:
        names = os.listdir('/proc')
    except OSError:
        return []
    return sorted(int(name) for name in names if name.isdigit())
