"""The `zato-daemon` command: start, stop, reload, info, invoke, check-config.

`main()` is the one place that turns exceptions into exit statuses (see errors.py);
nothing imports this module.
"""

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from zato_daemon import __version__, redaction, sd
from zato_daemon.admin import call_service
from zato_daemon.config import load_config
from zato_daemon.diagnostics.report import format_samples, format_slow
from zato_daemon.diagnostics.store import list_samples, list_slow
from zato_daemon.errors import EXIT_OK, EXIT_SOFTWARE, EXIT_UNAVAILABLE, NotRunning, UsageError, ZatoDaemonError
from zato_daemon.logs import journal
from zato_daemon.logs.levels import DUMP_WRITTEN, START_FAILED
from zato_daemon.paths import DEFAULT_SERVER_DIR, ServerDir, ServerPaths
from zato_daemon.pidfile import running_pid
from zato_daemon.services.registry import sha256_of
from zato_daemon.status import read_status

# How long `stop` waits beyond graceful_timeout, and `start` beyond worker_boot_timeout.
STOP_MARGIN = 10.0
START_MARGIN = 10.0
# When the config cannot be read, `stop` still has to wait for something.
FALLBACK_GRACEFUL_TIMEOUT = 30.0


def build_parser():
    parser = argparse.ArgumentParser(prog='zato-daemon', description='A gevent service server for Debian.')
    parser.add_argument('--version', action='version', version=f'zato-daemon {__version__}')
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    def command(name, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument('server_dir', nargs='?', default=str(DEFAULT_SERVER_DIR), metavar='DIR',
                         help=f'server directory holding server.conf (default: {DEFAULT_SERVER_DIR})')
        return sub

    start = command('start', 'Start a server (in the background unless --fg or under systemd).')
    start.add_argument('--fg', action='store_true', help='stay in the foreground, logging to stdout')
    command('stop', 'Stop a running server gracefully and wait until it has exited.')
    command('reload', 'Reload a running server: re-read its config, replace its workers without dropping requests.')
    command('dump', 'Make every process of a running server write a dump of its threads and greenlets.')
    info = command('info', 'Show pids, version, directories, address, uptime and deployed services.')
    info.add_argument('--json', action='store_true', help='print JSON')
    check = command('check-config', 'Validate the configuration files without starting.')
    check.set_defaults(json=False)
    slow = command('slow', 'List stored slow calls, newest first.')
    slow.add_argument('service', nargs='?', metavar='SERVICE', help='only this service')
    slow.add_argument('--since', metavar='TIME', help='only calls since this ISO 8601 time (UTC unless it says)')
    slow.add_argument('--json', action='store_true', help='print JSON, in a stable order, to diff environments')
    samples = command('samples', 'List the stored sample requests and responses of a service, newest first.')
    samples.add_argument('service', metavar='SERVICE')
    samples.add_argument('--json', action='store_true', help='print JSON, in a stable order, to diff environments')
    hashes = commands.add_parser('hash', help='Print the SHA-256 of local files, as info shows deployed modules.',
                                 description='Print the SHA-256 of local files, as info shows deployed modules.')
    hashes.add_argument('files', nargs='+', metavar='FILE')
    verify = commands.add_parser('verify', help='Say whether the deployed module of a service is a local file.',
                                 description='Compare the SHA-256 of the module a service was deployed from with '
                                             'a local file: exit 0 when they match, 1 when they do not.')
    verify.add_argument('server_dir', metavar='DIR')
    verify.add_argument('service', metavar='SERVICE')
    verify.add_argument('file', metavar='FILE')
    invoke = commands.add_parser('invoke', help='Call a service and print its response.',
                                 description='Call a service and print its response.')
    invoke.add_argument('server_dir', metavar='DIR')
    invoke.add_argument('service', metavar='SERVICE')
    invoke.add_argument('payload', nargs='?', metavar='PAYLOAD',
                        help='JSON request payload, or - to read it from stdin')
    invoke.add_argument('--json', action='store_true', help='print the response as compact JSON')
    return parser


def main(argv=None):
    """Runs one command; returns the process exit status."""
    args = build_parser().parse_args(argv)
    handler = COMMANDS[args.command]
    try:
        return handler(args)
    except ZatoDaemonError as exc:
        report_error(args, exc)
        return exc.exit_status
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
    print(f'zato-daemon: started, master pid {pid}, listening on http://{main.host}:{main.port}')
    return EXIT_OK


def _master_pid(server_dir):
    pid = running_pid(server_dir.pidfile)
    if pid is None:
        raise NotRunning(f'no server is running in {server_dir.base} (no lock on {server_dir.pidfile})')
    return pid


def command_stop(args):
    server_dir = ServerDir(args.server_dir)
    pid = running_pid(server_dir.pidfile)
    if pid is None:
        print(f'zato-daemon: not running in {server_dir.base}')
        return EXIT_OK
    wait = _graceful_timeout(args.server_dir) + STOP_MARGIN
    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    while running_pid(server_dir.pidfile) is not None:
        if time.monotonic() - started > wait:
            print(f'zato-daemon: master pid {pid} still running after {wait:.0f} s', file=sys.stderr)
            return EXIT_UNAVAILABLE
        time.sleep(0.05)
    print(f'zato-daemon: stopped master pid {pid} in {time.monotonic() - started:.1f} s')
    return EXIT_OK


def _graceful_timeout(base_dir):
    try:
        return load_config(base_dir).server_config.main.graceful_timeout
    except ZatoDaemonError:
        return FALLBACK_GRACEFUL_TIMEOUT


def command_reload(args):
    server_dir = ServerDir(args.server_dir)
    pid = _master_pid(server_dir)
    os.kill(pid, signal.SIGHUP)
    print(f'zato-daemon: reload requested from master pid {pid}; see {server_dir.server_log}')
    return EXIT_OK


def command_dump(args):
    """SIGURG to the master, which dumps itself and has every worker dump."""
    server_dir = ServerDir(args.server_dir)
    pid = _master_pid(server_dir)
    log_path = paths_in_use(server_dir).server_log
    since = time.strftime('%Y-%m-%d %H:%M:%S')
    os.kill(pid, signal.SIGURG)
    print(f'zato-daemon: dump requested from master pid {pid} and its workers; they are in {log_path}, and in '
          f'the journal:\n  journalctl -o cat MESSAGE_ID={DUMP_WRITTEN.message_id} --since "{since}"')
    return EXIT_OK


def command_info(args):
    server_dir = ServerDir(args.server_dir)
    pid = _master_pid(server_dir)
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
    lines.append(f'services: {len(info["services"])}')
    for service in info['services']:
        lines.append(f'  {service["name"]}  {service["sha256"] or "-"}  {service["path"]}')
    return '\n'.join(lines)


def format_duration(seconds):
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return (f'{days}d ' if days else '') + f'{hours:02d}:{minutes:02d}:{seconds:02d}'


def command_invoke(args):
    server_dir = ServerDir(args.server_dir)
    payload = _read_payload(args.payload)
    _master_pid(server_dir)
    status, cid, response = call_service(server_dir.admin_socket, args.service, payload)
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


def command_slow(args):
    """Reads the diagnostics database directly: it works while the server is stopped too."""
    _configure_redaction(args.server_dir)
    try:
        rows = list_slow(_diagnostics_database(args.server_dir), args.service, args.since)
    except ValueError as exc:
        raise UsageError(f'--since: {exc}') from None
    print(format_slow(rows, as_json=args.json))
    return EXIT_OK


def command_samples(args):
    _configure_redaction(args.server_dir)
    print(format_samples(list_samples(_diagnostics_database(args.server_dir), args.service), as_json=args.json))
    return EXIT_OK


def _configure_redaction(base_dir):
    """The redaction policy with the server's [logging] secret_names, for what this command prints."""
    try:
        redaction.configure(load_config(base_dir).server_config.logging.secret_names)
    except ZatoDaemonError:
        pass  # the built-in names still apply; the command reports a broken config on its own


def _diagnostics_database(base_dir):
    return paths_in_use(ServerDir(base_dir)).diagnostics_database


def paths_in_use(server_dir):
    """The paths the running master published in its status file (startup callables may have
    moved files), or, with no server running, the configuration's, resolved the same way."""
    status = read_status(server_dir.status_file)
    pid = running_pid(server_dir.pidfile)
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
    server_dir = ServerDir(args.server_dir)
    _master_pid(server_dir)
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


COMMANDS = {
    'start': command_start,
    'stop': command_stop,
    'reload': command_reload,
    'dump': command_dump,
    'info': command_info,
    'invoke': command_invoke,
    'check-config': command_check_config,
    'slow': command_slow,
    'samples': command_samples,
    'hash': command_hash,
    'verify': command_verify,
}
