"""The `zato-daemon` command line.

Commands: start, stop, reload, dump, info, top, invoke, check-config, slow, samples, hash,
verify, cluster, deploy and undeploy; `zato-daemon COMMAND --help` describes each, with an example and its exit statuses.

`main()` is the one place that turns exceptions into exit statuses (errors.py holds them,
README.md documents them); nothing imports this module. Which pid is a directory's master
is running.py's to say, so every command finds it the same way, pidfile deleted or not.
"""

import argparse
import contextlib
import grp
import json
import os
import pwd
import shutil
import signal
import sys
import textwrap
import time
from pathlib import Path

from zato_daemon import __version__, redaction, sd
from zato_daemon.admin import call_service, encode_payload
from zato_daemon.config import load_config
from zato_daemon.config.settings import find_setting
from zato_daemon.diagnostics.report import format_samples, format_slow
from zato_daemon.diagnostics.store import list_samples, list_slow
from zato_daemon.errors import (EXIT_NOPERM, EXIT_OK, EXIT_SOFTWARE, EXIT_UNAVAILABLE, EXIT_USAGE, AdminCallError,
                                ConfigError, DirectoryError, NoPermission, NotAServerDirectory, NotRunning, UsageError,
                                ZatoDaemonError)
from zato_daemon.logs import journal
from zato_daemon.logs.levels import DUMP_WRITTEN, START_FAILED
from zato_daemon.metrics import top
from zato_daemon.metrics.live import SNAPSHOT_VERSION
from zato_daemon.paths import DEFAULT_SERVER_DIR, ServerDir, ServerPaths
from zato_daemon.pidfile import running_pid
from zato_daemon.running import find_master, is_master_of, process_owner, reload_outcome
from zato_daemon.services.registry import sha256_of
from zato_daemon.status import read_status

# How long `stop` waits beyond graceful_timeout, `start` beyond worker_boot_timeout, and
# `reload` beyond startup_callable_timeout plus worker_boot_timeout.
STOP_MARGIN = 10.0
START_MARGIN = 10.0
RELOAD_MARGIN = 15.0
# When the config cannot be read, `stop` and `reload` still have to wait for something.
FALLBACK_GRACEFUL_TIMEOUT = 30.0
FALLBACK_CALLABLE_TIMEOUT = 60.0
# How often stop and reload look again.
POLL_INTERVAL = 0.05
# How long top waits for one view: a server that takes longer is shown as not answering,
# and the view stays responsive to q. A new master publishes its first view within a
# second; top waits that long for it, and a little more.
TOP_CALL_TIMEOUT = 2.0
TOP_FIRST_VIEW_WAIT = 3.0
# --once prints as wide as the terminal, or this wide into a pipe or a file.
TOP_ONCE_WIDTH = 100

# How long deploy and undeploy wait for every member's outcome.
DEPLOY_TIMEOUT = 30.0
# How long `dump --cluster` waits for every member's answer: each takes a request within
# about a second of its publication.
DUMP_TIMEOUT = 10.0

# ---- help: what each command does, an example, its exit statuses

STATUS_MEANINGS = {
    0: 'success',
    64: 'bad command line',
    66: 'DIR is not a server directory: no server.conf there',
    69: 'no server runs in DIR, or it does not answer',
    70: 'internal error',
    77: "permission denied: run as root, or as a member of the server's group",
}


class Help:
    """One command's --help: a summary (the top-level list), a description, examples and exit
    statuses, each (code, meaning) or a bare code meaning what STATUS_MEANINGS says."""

    def __init__(self, summary, description, examples, statuses):
        self.summary = summary
        self.description = description
        self.examples = examples
        self.statuses = [status if isinstance(status, tuple) else (status, STATUS_MEANINGS[status])
                         for status in statuses]

    def full_description(self):
        return '\n\n'.join(textwrap.fill(' '.join(paragraph.split()), 78)
                           for paragraph in f'{self.summary}\n\n{self.description}'.split('\n\n'))

    def epilog(self):
        examples = '\n'.join(f'  {example}' for example in self.examples)
        statuses = '\n'.join(f'  {code:<3} {meaning}' for code, meaning in self.statuses)
        return f'example:\n{examples}\n\nexit status:\n{statuses}'


HELP = {
    'start': Help(
        'Start the server of DIR.',
        """Validates the configuration, runs the FS_CONFIG_ONLY startup callables, takes the
        directory's lock, binds the listening socket and starts the workers. Without --fg
        the server detaches (its pidfile in the runtime directory) and the command returns
        once every worker serves; --fg stays in the foreground, logging to stdout, and
        Ctrl-C stops it. Under systemd it never detaches.""",
        ['zato-daemon start /srv/crm', 'zato-daemon start /srv/crm --fg'],
        [(0, 'started (with --fg: stopped cleanly)'),
         (69, 'a server already runs in DIR, or the port is in use'),
         (70, 'a startup callable raised, or an internal error'),
         (73, 'a state, logs or runtime directory, or server.log, cannot be written'), 77,
         (78, 'bad configuration (no server.conf included), a startup callable name that does not '
              'resolve, a configured service that does not deploy')]),
    'stop': Help(
        'Stop the server of DIR gracefully and wait until it has exited.',
        """Sends SIGTERM to the master: in-flight requests finish within graceful_timeout.
        The master is found by the pidfile's lock or, when the pidfile was deleted, by
        master.json or its process title.""",
        ['zato-daemon stop /srv/crm'],
        [(0, 'stopped, or no server runs in DIR'), 66,
         (69, 'the master still runs after graceful_timeout plus a margin'), 77]),
    'reload': Help(
        'Reload the server of DIR and print the outcome.',
        """Sends SIGHUP to the master: it reads the configuration again, starts new workers
        and drains the old ones without dropping a request. The command waits until that
        reload has finished. A configuration that does not load is refused, and a startup
        callable or a new worker that fails makes the reload fail: either way the previous
        workers serve on, and the reason is printed. A reload asked for while another one
        runs is applied after it.""",
        ['zato-daemon reload /srv/crm'],
        [(0, 'the new configuration serves'), 66,
         (69, 'no server runs in DIR, it stopped meanwhile, no outcome within the time limit, or the '
              'reload was refused because the new address cannot be bound'),
         (70, 'the reload failed: a startup callable or a new worker failed'), 77,
         (78, 'the reload was refused: the configuration does not load')]),
    'dump': Help(
        'Make every process of the server of DIR dump its threads and greenlets.',
        """Sends SIGURG to the master, which dumps itself and has every worker dump: frames,
        source lines, arguments and locals, secrets redacted, to server.log and one journal
        entry per process, even while a greenlet spins the CPU. Prints the journalctl
        command that shows them. With --cluster, every live member of the cluster of DIR
        dumps (a request signed with the cluster key, [cluster] key_file, through its
        Redis): one line per member with its master pid, its server.log and the journalctl
        command to run on that host; waits --timeout seconds for every answer.""",
        ['zato-daemon dump /srv/crm', 'zato-daemon dump /etc/zato-daemon --cluster'],
        [(0, 'the dump was requested; with --cluster, every live member dumped'),
         (1, 'with --cluster: a member refused or did not answer in time, or no member is live'), 66,
         (69, "no server runs in DIR; with --cluster, the cluster's Redis cannot be reached"), 77,
         (78, 'with --cluster: DIR has no [cluster] redis_url or no usable cluster key file')]),
    'diagnose': Help(
        'Take several dumps of the server of DIR and say what is wrong: stuck, blocked, waiting, leaking.',
        """Has every process of the server dump --dumps times, --interval seconds apart
        (as `dump` does, to server.log and the journal too), then compares the dumps of
        each process: greenlets and threads stuck on the same stack in every dump (with
        the service, cid and age of their call), a greenlet keeping the hub from running,
        waits on gevent locks, semaphores, events and queues grouped by object with the
        holder where it can be known (wait cycles reported as deadlocks), greenlet counts
        per spawn site that rose in every dump, and every call in flight, oldest first.
        Most important first, one line per finding, then details; --json for scripts.""",
        ['zato-daemon diagnose /srv/crm', 'zato-daemon diagnose /srv/crm --dumps 5 --interval 1 --json'],
        [(0, 'nothing was found'), (1, 'something was found: see the report'),
         (64, 'bad command line'), 66,
         (69, 'no server runs in DIR, or a process did not write its dumps in time'), 77]),
    'info': Help(
        'Show the pids, version, directories, address, uptime and services of the server of DIR.',
        """Asks a worker through the admin socket: master and worker pids, version,
        directories, listen address, uptime, and every deployed service with its module
        path and SHA-256. --json prints the same as JSON.""",
        ['zato-daemon info /srv/crm --json'],
        [0, 66, 69, 77]),
    'top': Help(
        'Show what the server of DIR does, live: calls, errors, latencies, workers.',
        """A view of the master's metrics, refreshed every second: per service, calls and
        errors per second, p50 and p99 latency, calls in flight and in total, busiest
        first; per worker, its pid, generation, state, memory, CPU time, open files and
        requests. A view more than 5 s old is marked STALE. While the server does not
        answer, the view says why and tries again every second. q or Ctrl-C quits. --once
        prints one view and exits, as wide as the terminal (100 columns into a pipe), or
        with --json as one JSON object with sorted keys, for scripts. Needs [metrics]
        enabled (the default).""",
        ['zato-daemon top /srv/crm', 'zato-daemon top /srv/crm --once --json'],
        [(0, 'quit with q or Ctrl-C, or the view was printed'),
         (64, 'bad command line: --json without --once, or no terminal and no --once'), 66,
         (69, 'no server runs in DIR, or it does not answer'), 77,
         (78, '[metrics] enabled is false in server.conf')]),
    'invoke': Help(
        'Call a service of the server of DIR and print its response.',
        """Calls the service through the admin socket, built-in zato.* services included.
        PAYLOAD is JSON, or - to read it from stdin; a payload over the server's
        max_request_size is refused before it is sent.""",
        ['zato-daemon invoke /srv/crm demo.echo \'{"hello": "world"}\'',
         'echo \'{"name": "demo.echo"}\' | zato-daemon invoke /srv/crm zato.service.get-source-info -'],
        [(0, 'the service answered'), (1, 'the service failed: its status and cid are printed'),
         (64, 'bad command line, a payload that is not JSON or is over max_request_size'), 66, 69, 77]),
    'check-config': Help(
        'Validate the configuration of DIR without starting.',
        """Checks what start checks before it binds anything: every file, section and key,
        and the startup callable names (resolved, not run).""",
        ['zato-daemon check-config /etc/zato-daemon'],
        [(0, 'the configuration is OK'), 77,
         (78, 'bad configuration (file, line and key in the message), no server.conf included')]),
    'slow': Help(
        'List the stored slow calls of the server of DIR, newest first.',
        """The calls that took longer than their slow threshold, with request and response
        (redacted), read from the diagnostics database: works while the server is stopped
        too. --json prints them in a stable order. With --cluster, every member's, as
        shipped to the cluster's Redis, with a HOST column (a host key in --json).""",
        ['zato-daemon slow /srv/crm crm.customer.get --since 2026-01-31T08:00',
         'zato-daemon slow /etc/zato-daemon --cluster'],
        [0, (64, 'bad command line, or a --since that is not a time'), 66,
         (69, "the diagnostics database cannot be read; with --cluster, the cluster's Redis cannot be reached"), 77,
         (78, 'with --cluster: DIR has no [cluster] redis_url')]),
    'samples': Help(
        'List the stored sample calls of SERVICE of the server of DIR, newest first.',
        """Samples of the calls of one service, with request and response (redacted), read
        from the diagnostics database: works while the server is stopped too. --json is
        stable, to diff two environments. With --cluster, every member's, as shipped to the
        cluster's Redis, with a HOST column (a host key in --json).""",
        ['zato-daemon samples /srv/crm crm.customer.get --json',
         'zato-daemon samples /etc/zato-daemon crm.customer.get --cluster'],
        [0, (64, 'bad command line: DIR and SERVICE are both needed'), 66,
         (69, "the diagnostics database cannot be read; with --cluster, the cluster's Redis cannot be reached"), 77,
         (78, 'with --cluster: DIR has no [cluster] redis_url')]),
    'hash': Help(
        'Print the SHA-256 of local files, as info shows deployed modules.',
        """One `SHA256  FILE` line per file, in the form info and verify use.""",
        ['zato-daemon hash services/crm.py'],
        [0, (1, 'a file cannot be read (the others are printed)')]),
    'verify': Help(
        'Say whether the deployed module of SERVICE in the server of DIR is the local FILE.',
        """Compares the SHA-256 of the module the service was deployed from with that of
        FILE, and prints both.""",
        ['zato-daemon verify /srv/crm crm.customer.get services/crm.py'],
        [(0, 'they match'), (1, 'they do not match'), (64, 'bad command line, or FILE cannot be read'), 66,
         (69, 'no server runs in DIR, or it has no such service'), 77]),
    'cluster': Help(
        'List the members of the cluster of DIR and compare the services they deploy.',
        """Reads the cluster's Redis directly (DIR's [cluster] redis_url and password_file;
        the server of DIR need not run): every member whose heartbeat has not expired, with
        its pid, version, listen address, uptime and last heartbeat, then every service with
        the SHA-256 of its module on each member, differences first. A deploy pipeline can
        gate on the exit status.""",
        ['zato-daemon cluster /etc/zato-daemon', 'zato-daemon cluster /etc/zato-daemon --json'],
        [(0, 'every member deploys the same services from the same modules'),
         (1, 'they differ, a member has not listed its services yet, or no member is registered'),
         64, 66, (69, "the cluster's Redis cannot be reached or refuses the password"),
         (78, 'DIR has no [cluster] redis_url, or its configuration (password_file included) is bad '
              'or cannot be read')]),
    'deploy': Help(
        'Deploy modules to every member of the cluster of DIR, or to the server of DIR alone.',
        """With a cluster ([cluster] redis_url): each FILE is signed with the cluster key
        ([cluster] key_file) and published to Redis, where it stays as the latest version of
        its name (a member that was away takes it when it returns). Every member verifies the
        signature with its own key and puts the module in its pickup directory, which checks
        it in a disposable process as any pickup file; the command prints one line per live
        member and module. Without a cluster: each FILE is moved into DIR's pickup directory
        (atomically) and the command waits for the running server's outcome.""",
        ['zato-daemon deploy /etc/zato-daemon services/crm.py',
         'zato-daemon deploy /etc/zato-daemon crm.py billing.py --timeout 60 --json'],
        [(0, 'every live member deployed every module within --timeout'),
         (1, 'a member refused one (its reason shown), reported nothing in time, or no member is live'),
         (64, 'bad command line, or a FILE that cannot be read, is not UTF-8 or not a .py file name'), 66,
         (69, "the cluster's Redis cannot be reached; without a cluster, no server runs in DIR"),
         (78, 'no usable cluster key file, or a bad configuration; without a cluster, hot deploy is off')]),
    'undeploy': Help(
        'Remove modules from every member of the cluster of DIR, or from the server of DIR alone.',
        """Publishes a signed removal of each NAME (a pickup file name, e.g. crm.py) as deploy
        publishes a module: every member removes that file from its pickup directory, now or
        when it returns; without a cluster the file goes from DIR's pickup directory. Prints
        one line per live member and name.""",
        ['zato-daemon undeploy /etc/zato-daemon crm.py'],
        [(0, 'every live member removed every module within --timeout'),
         (1, 'a member refused, reported nothing in time, or no member is live'),
         64, 66, (69, "the cluster's Redis cannot be reached; without a cluster, no server runs in DIR"),
         (78, 'no usable cluster key file, or a bad configuration; without a cluster, hot deploy is off')]),
}

TOP_LEVEL_EPILOG = ('Run "zato-daemon COMMAND --help" for what a command does, an example and\n'
                    'its exit statuses.\n\n'
                    'exit status:\n' + '\n'.join(f'  {code:<3} {meaning}' for code, meaning in (
                        (0, STATUS_MEANINGS[0]),
                        (1, 'invoke: the service failed; verify: the module is not that file; '
                            'cluster: the members differ; deploy, undeploy, dump --cluster: a live member '
                            'refused or did not answer in time; '
                            'diagnose: something was found'),
                        *((code, STATUS_MEANINGS[code]) for code in (64, 66, 69, 70)),
                        (73, 'a directory or file the server must write cannot be written'),
                        (77, STATUS_MEANINGS[77]),
                        (78, 'bad configuration'))))


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on a bad command line; the BSD status for it is 64 (EX_USAGE)."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f'{self.prog}: error: {message}\n')


def build_parser():
    parser = Parser(prog='zato-daemon', description='A gevent service server for Debian.',
                    epilog=TOP_LEVEL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--version', action='version', version=f'zato-daemon {__version__}')
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    def command(name, server_dir='optional'):
        text = HELP[name]
        sub = commands.add_parser(name, help=text.summary, description=text.full_description(),
                                  epilog=text.epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
        if server_dir == 'optional':
            sub.add_argument('server_dir', nargs='?', default=str(DEFAULT_SERVER_DIR), metavar='DIR',
                             help=f'server directory holding server.conf (default: {DEFAULT_SERVER_DIR})')
        elif server_dir == 'required':
            sub.add_argument('server_dir', metavar='DIR', help='server directory holding server.conf')
        return sub

    command('start').add_argument('--fg', action='store_true', help='stay in the foreground, logging to stdout')
    command('stop')
    command('reload')
    dump = command('dump')
    dump.add_argument('--cluster', action='store_true', help='every live member of the cluster of DIR dumps')
    dump.add_argument('--timeout', type=_positive_seconds, default=DUMP_TIMEOUT, metavar='S',
                      help=f'with --cluster: wait this long for every member\'s answer (default {DUMP_TIMEOUT:g})')
    dump.add_argument('--json', action='store_true', help='with --cluster: print JSON')
    from zato_daemon.dump import diagnose
    diagnose.add_arguments(command('diagnose'))
    command('info').add_argument('--json', action='store_true', help='print JSON')
    top_command = command('top')
    top_command.add_argument('--once', action='store_true', help='print one view and exit, without curses')
    top_command.add_argument('--json', action='store_true', help='with --once: print the view as JSON')
    invoke = command('invoke', 'required')
    invoke.add_argument('service', metavar='SERVICE')
    invoke.add_argument('payload', nargs='?', metavar='PAYLOAD',
                        help='JSON request payload, or - to read it from stdin')
    invoke.add_argument('--json', action='store_true', help='print the response as compact JSON')
    command('check-config').set_defaults(json=False)
    slow = command('slow')
    slow.add_argument('service', nargs='?', metavar='SERVICE', help='only this service')
    slow.add_argument('--since', metavar='TIME', help='only calls since this ISO 8601 time (UTC unless it says)')
    # DIR is required here: with one operand it is DIR, never a SERVICE taken for it.
    samples = command('samples', 'required')
    samples.add_argument('service', metavar='SERVICE')
    for sub in (slow, samples):
        sub.add_argument('--json', action='store_true', help='print JSON, in a stable order, to diff environments')
        sub.add_argument('--cluster', action='store_true',
                         help="every member's, from the cluster's Redis, with a host column")
    command('hash', None).add_argument('files', nargs='+', metavar='FILE')
    verify = command('verify', 'required')
    verify.add_argument('service', metavar='SERVICE')
    verify.add_argument('file', metavar='FILE')
    command('cluster').add_argument('--json', action='store_true', help='print JSON')
    for name, operand, text in (('deploy', 'files', 'a module to deploy (a .py file)'),
                                ('undeploy', 'names', 'the pickup file name of a module to remove')):
        sub = command(name, 'required')
        sub.add_argument(operand, nargs='+', metavar=operand[:-1].upper(), help=text)
        sub.add_argument('--timeout', type=_positive_seconds, default=DEPLOY_TIMEOUT, metavar='S',
                         help=f'wait this long for every member\'s outcome (default {DEPLOY_TIMEOUT:g})')
        sub.add_argument('--json', action='store_true', help='print JSON')
    return parser


def _positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = 0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number of seconds over 0 and at most 3600')
    return value


def main(argv=None):
    """Runs one command; returns the process exit status."""
    args = build_parser().parse_args(argv)
    handler = COMMANDS[args.command]
    try:
        return handler(args)
    except ZatoDaemonError as exc:
        report_error(args, exc)
        return exc.exit_status
    except PermissionError as exc:
        # Whichever file of the server this user may not read: one line, never a traceback.
        report_error(args, no_permission(exc))
        return EXIT_NOPERM
    except KeyboardInterrupt:
        return EXIT_SOFTWARE
    except BrokenPipeError:
        # `zato-daemon info DIR | head`: the reader left; say nothing more, not even at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def report_error(args, exc):
    """Prints the one-line error; a start under systemd sends it to the journal as START_FAILED.

    Through the redaction policy: a startup callable's exception may quote a DSN or a URL
    with its credentials."""
    message = redaction.redact_text(f'zato-daemon: {exc}')
    if args.command == 'start' and journal.stream_is_journal(2) and journal.is_available():
        # stderr is the journal too: one entry, at the right priority, with its MESSAGE_ID.
        journal.send_event(START_FAILED, message, ZATO_SERVER_DIR=args.server_dir)
    else:
        print(message, file=sys.stderr)
    details = getattr(exc, 'details', '')
    if details:
        print(redaction.redact_text(details.rstrip()), file=sys.stderr)


# ---- what a user may not do, in one line with what to do about it

def permission_message(path, group, reason='Permission denied'):
    """'PATH: permission denied; run as root, or ...': the server's files are the server user's
    and its group's (the admin socket 0660, the rest 0640 in 0750 directories). Pure."""
    where = f'{path}: ' if path else ''
    advice = 'run as root'
    if group and group != 'root':
        advice += f', or as a member of group {group} (adduser $USER {group}, then log in again)'
    elif not group:
        advice += ", or as a member of the server's group"
    return f'{where}{(reason or "Permission denied").lower()}; {advice}'


def no_permission(exc):
    """The NoPermission to report for a PermissionError, naming its file and group."""
    return NoPermission(permission_message(exc.filename, _group_of(exc.filename), exc.strerror))


def signal_permission_message(pid, owner):
    """Only root or the master's own user may signal it, whatever the groups. Pure."""
    as_user = '' if owner in (None, 'root') else f' or as user {owner}'
    running_as = f' (it runs as user {owner})' if owner else ''
    return f'may not send a signal to master pid {pid}{running_as}; run as root{as_user}'


def _group_of(path):
    """The group of `path` or of its nearest ancestor this user may see, or None."""
    if not path:
        return None
    for candidate in (Path(path), *Path(path).parents):
        try:
            return grp.getgrgid(os.stat(candidate).st_gid).gr_name
        except (OSError, KeyError):
            continue
    return None


def _signal(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        raise NotRunning(f'master pid {pid} exited before it got {signal.Signals(signum).name}') from None
    except PermissionError:
        owner = process_owner(pid)
        try:
            owner = pwd.getpwuid(owner).pw_name if owner is not None else None
        except KeyError:
            pass
        raise NoPermission(signal_permission_message(pid, owner)) from None


def _is_there(path):
    """True when `path` exists, False when it does not; PermissionError (naming it) when this
    user may not read it. Non-blocking: a FIFO in its place must not hang the command."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
    except (FileNotFoundError, NotADirectoryError):
        return False
    except PermissionError:
        raise
    except OSError:
        pass  # there, but not a file one reads (a socket, say): whoever uses it says why
    return True


# ---- finding the server

def not_a_server_directory_message(base, exists, is_dir):
    """One line for a DIR that cannot be a server directory. Pure."""
    if not exists:
        return f'{base}: no such directory; pass the server directory that holds server.conf'
    if not is_dir:
        return f'{base}: not a directory; pass the server directory that holds server.conf'
    return f'{base} is not a server directory: it holds no server.conf'


def _locate(base, tolerate_permission=False):
    """(ServerDir, master pid or None). NotAServerDirectory when DIR holds no server.conf and
    no master runs for it (a master still runs if server.conf was deleted under it).

    `tolerate_permission`: a runtime directory this user may not enter counts as no server
    (slow and samples read the database, which may be readable anyway)."""
    server_dir = ServerDir(base)
    has_config = _is_there(server_dir.base / 'server.conf')
    try:
        pid = find_master(server_dir)
    except PermissionError:
        if not tolerate_permission:
            raise
        pid = None
    if pid is None and not has_config:
        raise NotAServerDirectory(not_a_server_directory_message(
            server_dir.base, server_dir.base.exists(), server_dir.base.is_dir()))
    return server_dir, pid


def _require_master(base):
    server_dir, pid = _locate(base)
    if pid is None:
        raise NotRunning(f'no server is running in {server_dir.base}')
    return server_dir, pid


def _still_running(pid, server_dir):
    """The master is gone when its title is (exited, or the pid reused) and it holds no lock."""
    if is_master_of(pid, server_dir):
        return True
    try:
        return running_pid(server_dir.pidfile) == pid
    except PermissionError:
        return False


def _server_config(base):
    """server.conf as the files say now, or None when the configuration does not load."""
    try:
        return load_config(base).server_config
    except ZatoDaemonError:
        return None


# ---- commands

def command_start(args):
    # Imported here: `info` or `invoke` need neither python-daemon nor the master.
    from zato_daemon.master.launch import prepare, serve
    prepared = prepare(args.server_dir)
    if args.fg or sd.is_notify_unit():
        # Under systemd, stdout is the journal: log there and never detach.
        return serve(prepared, foreground=True)
    from zato_daemon.daemonize import start_in_background
    main = prepared.config.server_config.main
    pid, failure = start_in_background(prepared, main.worker_boot_timeout + START_MARGIN)
    if failure is not None:
        status, reason = failure
        print(redaction.redact_text(f'zato-daemon: the server did not start: {reason}; see '
                                    f'{prepared.server_dir.server_log}'), file=sys.stderr)
        return status
    address = prepared.activation.address or f'{main.host}:{main.port}'  # the socket systemd passed, if any
    print(f'zato-daemon: started, master pid {pid}, listening on http://{address}')
    return EXIT_OK


def command_stop(args):
    server_dir, pid = _locate(args.server_dir)
    if pid is None:
        print(f'zato-daemon: not running in {server_dir.base}')
        return EXIT_OK
    config = _server_config(server_dir.base)
    wait = (config.main.graceful_timeout if config else FALLBACK_GRACEFUL_TIMEOUT) + STOP_MARGIN
    started = time.monotonic()
    _signal(pid, signal.SIGTERM)
    while _still_running(pid, server_dir):
        if time.monotonic() - started > wait:
            print(f'zato-daemon: master pid {pid} still running after {wait:.0f} s', file=sys.stderr)
            return EXIT_UNAVAILABLE
        time.sleep(POLL_INTERVAL)
    print(f'zato-daemon: stopped master pid {pid} in {time.monotonic() - started:.1f} s')
    return EXIT_OK


def reload_wait_limit(server_config):
    """How long `reload` waits for the outcome: the FS_CONFIG_ONLY callables' limit plus a new
    worker's boot limit plus a margin, as the configuration says (the one the reload reads),
    or their defaults when it does not load (then the reload is refused at once anyway)."""
    if server_config is None:
        boot = find_setting('server.conf', 'main', 'worker_boot_timeout').default_value()
        return FALLBACK_CALLABLE_TIMEOUT + boot + RELOAD_MARGIN
    return server_config.misc.startup_callable_timeout + server_config.main.worker_boot_timeout + RELOAD_MARGIN


def command_reload(args):
    """SIGHUP, then master.json until it reports a reload that started after the request."""
    server_dir, pid = _require_master(args.server_dir)
    _is_there(server_dir.status_file)  # a status file this user may not read would never show the outcome
    limit = reload_wait_limit(_server_config(server_dir.base))
    requested_at = time.time()
    deadline = time.monotonic() + limit
    _signal(pid, signal.SIGHUP)
    while True:
        outcome = reload_outcome(read_status(server_dir.status_file), requested_at)
        if outcome is not None:
            message = redaction.redact_text(f'zato-daemon: {outcome.message}')
            print(message, file=sys.stdout if outcome.exit_status == EXIT_OK else sys.stderr)
            return outcome.exit_status
        if not _still_running(pid, server_dir):
            print(f'zato-daemon: master pid {pid} stopped before the reload finished; see {server_dir.base}',
                  file=sys.stderr)
            return EXIT_UNAVAILABLE
        if time.monotonic() > deadline:
            print(f'zato-daemon: no outcome of the reload from master pid {pid} within {limit:.0f} s; it may '
                  'still be running: see the server log', file=sys.stderr)
            return EXIT_UNAVAILABLE
        time.sleep(POLL_INTERVAL)


def command_dump(args):
    """SIGURG to the master, which dumps itself and has every worker dump; with --cluster,
    a request through Redis that every member's master takes as if it got the signal."""
    if args.cluster:
        return _dump_cluster(args)
    if args.json:
        raise UsageError('--json needs --cluster: a dump of one server goes to server.log and the journal')
    server_dir, pid = _require_master(args.server_dir)
    log_path = paths_in_use(server_dir, pid).server_log
    since = time.strftime('%Y-%m-%d %H:%M:%S')
    _signal(pid, signal.SIGURG)
    print(f'zato-daemon: dump requested from master pid {pid} and its workers; they are in {log_path}, and in '
          f'the journal:\n  journalctl -o cat MESSAGE_ID={DUMP_WRITTEN.message_id} --since "{since}"')
    return EXIT_OK


def command_diagnose(args):
    from zato_daemon.dump import diagnose
    server_dir, pid = _require_master(args.server_dir)
    return diagnose.run(args, server_dir, pid, paths_in_use(server_dir, pid),
                        signal_master=lambda: _signal(pid, signal.SIGURG))


def command_info(args):
    server_dir, pid = _require_master(args.server_dir)
    status, _, info = call_service(server_dir.admin_socket, 'zato.server.info')
    if status != 200:
        print(f'zato-daemon: master pid {pid} is running but info failed: {info}', file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(json.dumps(info, indent=2, sort_keys=True) if args.json else format_info(info))
    return EXIT_OK


def format_info(info):
    """The human form of `info`: one `key: value` per line, then one line per service."""
    lines = [f'{key}: {info[key]}' for key in (
        'master_proc_pid', 'version', 'config_dir', 'state_dir', 'logs_dir', 'runtime_dir', 'listen')]
    lines.append('worker_pids: ' + ' '.join(str(pid) for pid in info['worker_pids']))
    lines.append(f'uptime: {format_duration(info["uptime_seconds"])}')
    if info.get('cluster'):
        lines.append(f'cluster: {format_cluster_state(info["cluster"])}')
    lines.append(f'services: {len(info["services"])}')
    for service in info['services']:
        lines.append(f'  {service["name"]}  {service["sha256"] or "-"}  {service["path"]}')
    return '\n'.join(lines)


def format_cluster_state(cluster):
    """One line: the cluster, this member, the redacted URL and whether Redis answers."""
    line = f'{cluster["name"]} as {cluster["host_name"]} on {cluster["redis_url"]}: {cluster["state"]}'
    return line + (f' ({cluster["last_error"]})' if cluster['state'] == 'unreachable' else '')


def format_duration(seconds):
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return (f'{days}d ' if days else '') + f'{hours:02d}:{minutes:02d}:{seconds:02d}'


class ViewPending(AdminCallError):
    """The master has not published its first view yet (a server that has just started)."""


def metrics_off_message(server_dir):
    """Pure."""
    return (f'the server of {server_dir} counts nothing: [metrics] enabled is false in server.conf; '
            'set it to true and reload to use top')


def view_or_error(status, answer, socket_path, server_dir):
    """The view in the answer of zato.server.metrics, or the error to raise instead. Pure."""
    error = answer.get('error', answer) if isinstance(answer, dict) else answer
    if status == 404:
        return ConfigError(metrics_off_message(server_dir))
    if status == 503:
        return ViewPending(f'no view yet from the server on {socket_path}: {error}')
    if status != 200 or not isinstance(answer, dict):
        return AdminCallError(f'the server on {socket_path} answered {status} to zato.server.metrics: {error}')
    if answer.get('version') != SNAPSHOT_VERSION:
        return AdminCallError(f'the server on {socket_path} sent a view of version {answer.get("version")!r}; '
                              f'this zato-daemon reads version {SNAPSHOT_VERSION}')
    return answer


def fetch_view(server_dir):
    """The master's last view through the admin socket; raises a ZatoDaemonError whose
    message is the one line to show (top's screen shows it too, so no PermissionError)."""
    try:
        status, _, answer = call_service(server_dir.admin_socket, 'zato.server.metrics', timeout=TOP_CALL_TIMEOUT)
    except PermissionError as exc:
        raise no_permission(exc) from None
    outcome = view_or_error(status, answer, server_dir.admin_socket, server_dir.base)
    if isinstance(outcome, ZatoDaemonError):
        raise outcome
    return outcome


def _first_view(server_dir):
    deadline = time.monotonic() + TOP_FIRST_VIEW_WAIT
    while True:
        try:
            return fetch_view(server_dir)
        except ViewPending:
            if time.monotonic() > deadline:
                raise
            time.sleep(POLL_INTERVAL)


def command_top(args):
    if args.json and not args.once:
        raise UsageError('--json prints one view: use it with --once')
    if not args.once and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError('top draws on a terminal, and this is not one; use --once to print one view '
                         '(--once --json for scripts)')
    server_dir, _ = _require_master(args.server_dir)
    if args.once:
        view = _first_view(server_dir)
        if args.json:
            print(json.dumps(view, sort_keys=True))
        else:
            width = shutil.get_terminal_size((TOP_ONCE_WIDTH, 24)).columns
            print('\n'.join(top.screen(view, width, None, str(server_dir.base))))
        return EXIT_OK
    try:
        # Problems before the first view end the command with their status; after it, the
        # view shows them and tries again.
        view = _first_view(server_dir)
        return top.run(lambda: fetch_view(server_dir), str(server_dir.base), view)
    except KeyboardInterrupt:
        return EXIT_OK


def payload_too_large_message(size, limit):
    """The one line for a payload the server would answer 413 to. Pure."""
    over = f', over max_request_size {limit}' if limit is not None else ', over the max_request_size of the server'
    return f'the payload is {size} bytes{over}; send less, or raise [main] max_request_size and reload'


def command_invoke(args):
    payload = _read_payload(args.payload)
    server_dir, _ = _require_master(args.server_dir)
    size = len(encode_payload(payload))
    config = _server_config(server_dir.base)
    limit = config.main.max_request_size if config else None
    if limit is not None and size > limit:
        raise UsageError(payload_too_large_message(size, limit))
    status, cid, response = call_service(server_dir.admin_socket, args.service, payload)
    if status == 413:
        # The server's limit differs from the file's: changed since the last reload.
        raise UsageError(payload_too_large_message(size, None))
    text = json.dumps(response, separators=(',', ':')) if args.json else json.dumps(response, indent=2)
    if status >= 400:
        print(f'zato-daemon: {args.service} answered {status} (cid {cid}): {text}', file=sys.stderr)
        return 1
    if response is not None:
        print(text)
    return EXIT_OK


def _read_payload(text):
    if text is None:
        return None
    if text == '-':
        text = sys.stdin.read()
    try:
        return json.loads(text) if text.strip() else None
    except ValueError as exc:
        raise UsageError(f'the payload is not valid JSON: {exc}') from None


def _dump_cluster(args):
    from zato_daemon.cluster import diagnostics_command, dumps
    config, settings = _cluster_of(args.server_dir)
    key = _cluster_key(config)
    with _cluster_client(settings, 'ask cluster {name} to dump') as client:
        hosts, answers = diagnostics_command.request_dump(client, settings, key, args.timeout)
    status, lines, data = dumps.summarize(hosts, answers)
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else '\n'.join(lines))
    return status


def command_slow(args):
    """Reads the diagnostics database directly: it works while the server is stopped too."""
    if args.cluster:
        return _cluster_records(args, 'slow', args.service)
    database = _diagnostics_database(args.server_dir)
    _configure_redaction(args.server_dir)
    try:
        rows = list_slow(database, args.service, args.since)
    except ValueError:
        raise bad_since(args.since) from None
    print(format_slow(rows, as_json=args.json))
    return EXIT_OK


def command_samples(args):
    if args.cluster:
        return _cluster_records(args, 'samples', args.service)
    database = _diagnostics_database(args.server_dir)
    _configure_redaction(args.server_dir)
    print(format_samples(list_samples(database, args.service), as_json=args.json))
    return EXIT_OK


def bad_since(text):
    return UsageError(f'--since: {text!r} is not an ISO 8601 time (e.g. 2026-01-31T08:00, UTC unless it says)')


def _cluster_records(args, kind, service):
    """`slow --cluster`, `samples --cluster`: every member's records from Redis, with their host."""
    from zato_daemon.cluster import diagnostics_command, records
    from zato_daemon.diagnostics.report import SAMPLE_COLUMNS, SLOW_COLUMNS, format_json, format_table, redacted_rows
    from zato_daemon.diagnostics.store import SAMPLES_KEEP, SLOW_KEEP, to_epoch
    try:
        since = to_epoch(args.since) if getattr(args, 'since', None) else None
    except ValueError:
        raise bad_since(args.since) from None
    _, settings = _cluster_of(args.server_dir)
    with _cluster_client(settings, 'read the records of cluster {name}') as client:
        notes = []
        entries = diagnostics_command.read_entries(client, settings, kind, service, since, notes)
    for note in notes:
        print(f'zato-daemon: warning: {note}', file=sys.stderr)
    # Each member's newest, as many as `slow` and `samples` list of one server.
    per_host = SLOW_KEEP if kind == records.SLOW else SAMPLES_KEEP
    rows = redacted_rows(records.merge(entries, per_host, service, since))
    if args.json:
        print(format_json(rows))
    elif not rows:
        print(f'No {"slow responses" if kind == records.SLOW else "samples"} shipped by any member of cluster '
              f'{settings.name}.')
    else:
        columns = SLOW_COLUMNS if kind == records.SLOW else SAMPLE_COLUMNS
        print(format_table(rows, (columns[0], 'host', *columns[1:])))
    return EXIT_OK


def _cluster_of(base_dir):
    """(configuration, ClusterSettings) of DIR, the redaction policy configured with its
    secret names; ConfigError (78) for a single host."""
    from zato_daemon.cluster.settings import from_config
    _locate(base_dir, tolerate_permission=True)
    config = load_config(base_dir)
    redaction.configure(config.server_config.logging.secret_names)
    settings = from_config(config)
    if settings is None:
        raise ConfigError(f'[cluster] redis_url is empty in {config.server_config.path}: this server is a single '
                          'host; set it to the Redis of the cluster')
    return config, settings


def _cluster_key(config):
    """The cluster key [cluster] key_file names; ConfigError (78) without a usable one."""
    from zato_daemon.cluster.modules import KEY_FILE_KEY, read_key
    key_file = config.server_config.cluster.key_file
    if not key_file:
        raise ConfigError(f'[cluster] key_file is empty in {config.server_config.path}: cluster requests are '
                          'signed with the cluster key', key=KEY_FILE_KEY)
    return read_key(config.resolve_path(key_file))


@contextlib.contextmanager
def _cluster_client(settings, what):
    """A client of the cluster's Redis, closed after; a Redis that cannot be used is
    ClusterUnreachable (69), saying what could not be done (`what`, {name} the cluster's)."""
    from zato_daemon.cluster import connection
    client = connection.connect(settings)
    try:
        yield client
    except connection.REDIS_ERRORS as exc:
        raise ClusterUnreachable(f'cannot {what.format(name=settings.name)}: '
                                 f'{connection.describe_error(exc, settings)}') from None
    finally:
        client.close()


def _configure_redaction(base_dir):
    """The redaction policy with the server's [logging] secret_names, for what this command prints."""
    try:
        redaction.configure(load_config(base_dir).server_config.logging.secret_names)
    except ZatoDaemonError:
        pass  # the built-in names still apply; the command reports a broken config on its own


def _diagnostics_database(base_dir):
    server_dir, pid = _locate(base_dir, tolerate_permission=True)
    database = paths_in_use(server_dir, pid).diagnostics_database
    # The store reports a database it may not open as "cannot read" (69); this user is told why.
    _is_there(database)
    return database


def paths_in_use(server_dir, pid):
    """The paths the running master `pid` published in its status file (startup callables may
    have moved files), or, with no server running, the configuration's, resolved the same way."""
    status = read_status(server_dir.status_file)
    if status is not None and pid is not None and status.get('master_proc_pid') == pid:
        try:
            return ServerPaths.from_dict(status['paths'])
        except (KeyError, TypeError):
            pass  # written by another version: the files say the same unless a callable moved them
    return server_dir.resolve(load_config(server_dir.base))


def command_hash(args):
    """`SHA256  FILE` lines, the hash in the form `info` and get-source-info show."""
    status = EXIT_OK
    for name in args.files:
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            print(f'zato-daemon: {name}: {exc.strerror}', file=sys.stderr)
            status = 1
            continue
        print(f'{sha256_of(data)}  {name}')
    return status


def command_verify(args):
    server_dir, _ = _require_master(args.server_dir)
    try:
        local = sha256_of(Path(args.file).read_bytes())
    except OSError as exc:
        raise UsageError(f'{args.file}: {exc.strerror}') from None
    status, _, info = call_service(server_dir.admin_socket, 'zato.service.get-source-info', {'name': args.service})
    if status != 200:
        print(f'zato-daemon: {args.service}: {info.get("error", info) if isinstance(info, dict) else info}',
              file=sys.stderr)
        return EXIT_UNAVAILABLE
    matches = info['sha256'] == local
    print(f'{"match" if matches else "MISMATCH"}: {args.service}\n'
          f'  deployed {info["sha256"]}  {info["path"]}\n  local    {local}  {args.file}')
    return EXIT_OK if matches else 1


def command_check_config(args):
    from zato_daemon.master.launch import check_configuration
    config = check_configuration(args.server_dir)
    print(f'zato-daemon: configuration OK: {", ".join(str(path) for path in config.paths_read)}')
    return EXIT_OK


def command_cluster(args):
    """Reads Redis itself: the answer must not depend on this host's server running."""
    from zato_daemon.cluster import view
    from zato_daemon.cluster.membership import read_members
    _, settings = _cluster_of(args.server_dir)
    with _cluster_client(settings, 'read the members of cluster {name}') as client:
        members = read_members(client, settings.name)
    now = time.time()
    if args.json:
        print(json.dumps(view.as_json(settings.name, settings.shown_url, members, now), indent=2, sort_keys=True))
    else:
        print(view.render(settings.name, settings.shown_url, members, now, format_duration))
    return EXIT_OK if view.compare(members).consistent else 1


def command_deploy(args):
    """Publishes to the cluster, or, for a single host, uses the local pickup directory."""
    from zato_daemon.cluster import deploy_command
    items = ([deploy_command.read_item(path) for path in args.files] if args.command == 'deploy'
             else [deploy_command.undeploy_item(name) for name in args.names])
    server_dir, _ = _locate(args.server_dir, tolerate_permission=True)
    config = load_config(args.server_dir)
    redaction.configure(config.server_config.logging.secret_names)
    from zato_daemon.cluster.settings import from_config
    settings = from_config(config)
    if settings is None:
        hosts = _deploy_locally(server_dir, config, items, args.timeout)
    else:
        hosts = _deploy_to_cluster(config, settings, items, args.timeout)
    status, lines, data = deploy_command.report(hosts, items)
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else '\n'.join(lines))
    return status


def _deploy_to_cluster(config, settings, items, timeout):
    from zato_daemon.cluster import deploy_command
    key = _cluster_key(config)
    with _cluster_client(settings, 'publish to cluster {name}') as client:
        return deploy_command.to_cluster(client, settings, key, items, timeout)


def _deploy_locally(server_dir, config, items, timeout):
    from zato_daemon.cluster import deploy_command
    from zato_daemon.cluster.settings import machine_name
    if not config.server_config.component_enabled.hot_deploy:
        raise ConfigError(f'hot deploy is off in {config.server_config.path} ([component_enabled] hot_deploy): '
                          'nothing would take the file; turn it on and reload')
    server_dir, pid = _require_master(server_dir.base)
    paths = paths_in_use(server_dir, pid)
    try:
        return deploy_command.to_pickup(paths, machine_name(), items, timeout)
    except OSError as exc:
        raise DirectoryError(f'cannot write to the pickup directory {paths.pickup_dir}: {exc.strerror or exc}') \
            from None


class ClusterUnreachable(ZatoDaemonError):
    """The cluster's Redis does not answer, or refuses us."""

    exit_status = EXIT_UNAVAILABLE


COMMANDS = {
    'start': command_start,
    'stop': command_stop,
    'reload': command_reload,
    'dump': command_dump,
    'diagnose': command_diagnose,
    'info': command_info,
    'top': command_top,
    'invoke': command_invoke,
    'check-config': command_check_config,
    'slow': command_slow,
    'samples': command_samples,
    'hash': command_hash,
    'verify': command_verify,
    'cluster': command_cluster,
    'deploy': command_deploy,
    'undeploy': command_deploy,
}
