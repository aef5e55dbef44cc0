"""`zato-daemon diagnose`: several dumps of every process, compared (issue 19).

run() takes --dumps rounds --interval seconds apart. A round sends SIGURG to the master, which
dumps itself and has every worker dump; each dump also writes its JSON record to the runtime
directory's dumps/ (record.py). The round waits, at most ROUND_TIMEOUT, until the master and
every serving worker that master.json lists when the signal is sent (and still lists) has
written a record taken after the round began; a master that exits meanwhile ends the run.
analysis.py then compares each process's records; this module prints what it found.

Why the rounds are spaced by the records' own times as well: a process folds a SIGURG that
comes within its trigger's quiet period (1 s) of the start of its previous dump into that dump
(trigger.py), so a round sent sooner would get no new dump at all. The next round is sent no
sooner than the quiet period after the latest dump of the previous round began.
"""

import argparse
import datetime
import json
import os
import time

from zato_daemon.dump import analysis
from zato_daemon.dump.record import read_records
from zato_daemon.dump.trigger import DEFAULT_QUIET_PERIOD
from zato_daemon.errors import EXIT_OK, EXIT_UNAVAILABLE, NoPermission, NotRunning, ZatoDaemonError
from zato_daemon.logs.levels import DUMP_WRITTEN
from zato_daemon.status import read_status

DEFAULT_DUMPS = 3
DEFAULT_INTERVAL = 2.0
# One dump cannot show what does not move; each process keeps its newest 20 records (record.py).
MIN_DUMPS, MAX_DUMPS = 2, 20
MIN_INTERVAL, MAX_INTERVAL = 1.0, 600.0
# How long a round waits for every process's record: a dump takes milliseconds, 10,000
# greenlets about a second; a journald that has fallen behind can delay a worker's.
ROUND_TIMEOUT = 10.0
POLL_INTERVAL = 0.05
# Beyond the quiet period, for the time a signal takes to reach a worker through the master.
FOLD_MARGIN = 0.1
# Worker states whose workers are expected to answer (master.json): a booting worker may not
# have its trigger yet, a draining one may exit before it writes.
EXPECTED_STATES = ('ready', 'recycling')
# Frames of a stack shown in the details, innermost ones; waiters of one object.
DETAIL_FRAMES = 12
DETAIL_WAITERS = 20

LABELS = {analysis.DEADLOCK: 'DEADLOCK', analysis.HUB_BLOCKED: 'HUB BLOCKED', analysis.STUCK: 'STUCK',
          analysis.LOCK_WAIT: 'LOCK WAIT', analysis.GROWTH: 'GROWTH', analysis.IN_FLIGHT: 'IN FLIGHT'}


class DumpsMissing(ZatoDaemonError):
    """A process wrote no record of a round in time."""

    exit_status = EXIT_UNAVAILABLE


def _bounded(kind, low, high, why=''):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            noun = 'whole number' if kind is int else 'number of seconds'
            reason = why if value is not None and value < low else ''
            raise argparse.ArgumentTypeError(f'{text!r} is not a {noun} from {low:g} to {high:g}{reason}')
        return value
    return parse


def add_arguments(parser):
    parser.add_argument('--dumps', type=_bounded(int, MIN_DUMPS, MAX_DUMPS, ' (one dump cannot show what does '
                                                 'not move)'), default=DEFAULT_DUMPS, metavar='N',
                        help=f'dumps to take of every process, {MIN_DUMPS} to {MAX_DUMPS} (default {DEFAULT_DUMPS})')
    parser.add_argument('--interval', type=_bounded(float, MIN_INTERVAL, MAX_INTERVAL), default=DEFAULT_INTERVAL,
                        metavar='S', help=f'seconds between two dumps, {MIN_INTERVAL:g} to {MAX_INTERVAL:g} '
                                          f'(default {DEFAULT_INTERVAL:g})')
    parser.add_argument('--json', action='store_true', help='print JSON, with stable keys, for scripts')


def run(args, server_dir, pid, paths, signal_master):
    """Takes the dumps, analyses them, prints the report; returns 0 (nothing found) or 1.

    `signal_master()` sends the master SIGURG (the CLI's own signalling, with its errors)."""
    directory = paths.dump_records
    _check_readable(directory)
    started = time.time()
    records = []
    round_records = []
    for number in range(args.dumps):
        if number:
            _sleep_until(next_round_at(started, number, args.interval, round_records))
        round_records = take_round(server_dir, pid, directory, signal_master)
        records.extend(round_records)
    report = analysis.analyse(records)
    context = {'server_dir': str(server_dir.base), 'master_pid': pid, 'dumps': args.dumps,
               'interval': args.interval, 'started': started, 'server_log': str(paths.server_log),
               'journal': journal_command(started)}
    print(format_json(report, context) if args.json else format_text(report, context))
    return 1 if report['problems'] else EXIT_OK


def _check_readable(directory):
    """A dumps/ directory this user may not read (77), or a file in its place (69), is said now,
    not as records never written."""
    try:
        os.listdir(directory)
    except FileNotFoundError:
        pass  # made by the first dump
    except NotADirectoryError as exc:
        # Said now: every process's record would fail to be written, and the run end in 69 anyway.
        raise DumpsMissing(f'{directory} is not a directory, so no dump can write its record there; remove it '
                           '(the next dump makes the directory)') from exc
    except PermissionError as exc:
        raise NoPermission(f'{directory}: permission denied; run as root, or as a member of the server\'s '
                           'group') from exc


def next_round_at(started, number, interval, previous):
    """When round `number` (from 0) may send its signal: `interval` after the previous one, and
    no sooner than the quiet period after the latest dump of the previous round began
    (`previous`: its records), which would fold the request into that dump. Pure."""
    latest = max((record['time'] for record in previous), default=started)
    return max(started + number * interval, latest + DEFAULT_QUIET_PERIOD + FOLD_MARGIN)


def _sleep_until(moment):
    delay = moment - time.time()
    if delay > 0:
        time.sleep(delay)


def expected_pids(status, master_pid):
    """{pid: role} of the processes that must answer a round, from master.json's content. Pure."""
    expected = {master_pid: 'master'}
    if status and status.get('master_proc_pid') == master_pid:
        for worker in status.get('workers', ()):
            if worker.get('state') in EXPECTED_STATES:
                expected[worker['pid']] = f'worker-{worker.get("number")}'
    return expected


def missing_message(missing, timeout, directory):
    """The one line for processes that wrote no record of a round in time. Pure."""
    names = ', '.join(f'{role} pid {pid}' for pid, role in sorted(missing.items(), key=lambda item: item[1]))
    return (f'no dump record from {names} within {timeout:g} s in {directory}; a server started before this '
            'version writes none (restart it), a process whose dumps fail says why in server.log (DUMP_FAILED), '
            'and one whose main thread is inside C code that holds the interpreter (a long regular expression, '
            'a C extension) cannot dump until it returns')


def take_round(server_dir, master_pid, directory, signal_master, timeout=ROUND_TIMEOUT):
    """One SIGURG to the master, then its records and its workers': returns the round's records.

    Raises DumpsMissing (69) naming the processes that wrote nothing in time. Only the
    processes master.json lists when the signal is sent are waited for, and of those only the
    ones it still lists: a worker that leaves meanwhile (it exited, or was replaced) may write
    nothing, and one that became ready after the master passed the signal on never got it.
    A dump begun up to the quiet period before the signal counts: the signal was folded into
    it (someone else's `zato-daemon dump`, a hung worker's own dump), and run() keeps the
    previous round's dumps out of that window. A record dated after the moment it is read for
    was not written by this round (a planted file, a clock stepped back): it is not read."""
    round_start = time.time()
    signalled = expected_pids(read_status(server_dir.status_file), master_pid)
    signal_master()
    since = round_start - DEFAULT_QUIET_PERIOD
    deadline = time.monotonic() + timeout
    found = {}
    while True:
        listed = expected_pids(read_status(server_dir.status_file), master_pid)
        missing = {pid: role for pid, role in listed.items() if pid in signalled and pid not in found}
        # Only the records still awaited are read: one of 10,000 greenlets is 2 MB of JSON.
        for record in read_records(directory, pids=missing, since=since, until=time.time()):
            found.setdefault(record['pid'], []).append(record)
        missing = {pid: role for pid, role in missing.items() if pid not in found}
        if not missing:
            return [record for records in found.values() for record in records]
        if master_pid in missing and not _is_alive(master_pid):
            # A stop or a crash: its record will never come, and master.json no longer says who serves.
            raise NotRunning(f'master pid {master_pid} exited during diagnose; no report')
        if time.monotonic() > deadline:
            raise DumpsMissing(missing_message(missing, timeout, directory))
        time.sleep(POLL_INTERVAL)


def _is_alive(pid):
    """False once `pid` exited, a zombie not yet reaped included (its parent may take its time)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # there, and another user's
    try:
        with open(f'/proc/{pid}/stat', 'rb') as stat_file:
            state = stat_file.read().rpartition(b')')[2].split()[:1]
    except OSError:
        return True  # no /proc to ask: kill() said it is there
    return state != [b'Z']


def journal_command(since):
    """The journalctl command that shows the dumps taken since `since` (time.time())."""
    moment = datetime.datetime.fromtimestamp(since).strftime('%Y-%m-%d %H:%M:%S')
    return f'journalctl -o cat MESSAGE_ID={DUMP_WRITTEN.message_id} --since "{moment}"'


# ---- the report

def format_json(report, context):
    """The report as JSON with sorted keys: what the text says, and every field of each finding."""
    return json.dumps({**context, **report}, indent=2, sort_keys=True)


def format_text(report, context):
    """Plain text: one headline, one line per finding (most important first), then the
    details per process, then where the full dumps are. Pure."""
    findings = report['findings']
    processes = report['processes']
    calls = sum(finding['kind'] == analysis.IN_FLIGHT for finding in findings)
    what = (f'{_count(report["problems"], "problem")}' if report['problems'] else 'nothing found') + \
           f', {_count(calls, "call")} in flight'
    lines = [f'zato-daemon: {what}; {_count(len(processes), "process", "processes")} of {context["server_dir"]}, '
             f'{context["dumps"]} dumps {context["interval"]:g} s apart']
    width = max((len(LABELS[finding['kind']]) for finding in findings), default=0)
    for finding in findings:
        lines.append(f'{LABELS[finding["kind"]]:<{width}}  {finding["role"]} pid {finding["pid"]}: '
                     f'{finding["summary"]}')
    for process in processes:
        lines.append('')
        lines.extend(_process_details(process, [finding for finding in findings if finding['pid'] == process['pid']]))
    lines.append('')
    lines.append(f'The full dumps (variables included) are in {context["server_log"]}, and in the journal:')
    lines.append(f'  {context["journal"]}')
    return '\n'.join(lines)


def _count(number, singular, plural=None):
    return f'{number} {singular if number == 1 else plural or singular + "s"}'


def _clock(moment):
    return datetime.datetime.fromtimestamp(moment).strftime('%H:%M:%S.%f')[:-3]


def _process_details(process, findings):
    head = (f'{process["role"]}, pid {process["pid"]}: {_count(process["dumps"], "dump")} from '
            f'{_clock(process["first"])} to {_clock(process["last"])}, {_count(process["threads"], "thread")}, '
            f'{_count(process["greenlets"], "greenlet")} in the last')
    problems = [finding for finding in findings if finding['kind'] in analysis.PROBLEMS]
    if not problems:
        return [f'{head}; nothing found']
    lines = [f'{head}:']
    for finding in problems:
        lines.append(f'  {LABELS[finding["kind"]]}: {finding["summary"]}')
        lines.extend(f'    {line}' for line in _finding_details(finding))
    return lines


def _finding_details(finding):
    kind = finding['kind']
    if kind in (analysis.STUCK, analysis.HUB_BLOCKED):
        return _stack_lines(finding.get('stack') or [])
    if kind == analysis.DEADLOCK:
        return [f'greenlet {step["greenlet"]:#x}{_service(step)} at {_place(step)} waits on {step["object"]}, held '
                f'{"" if step["exact"] else "probably "}by greenlet {step["held_by"]:#x}' for step in finding['cycle']]
    if kind == analysis.LOCK_WAIT:
        holder = finding['holder']
        lines = [f'holder: greenlet {holder["greenlet"]:#x}{_service(holder)} at {_place(holder)}'
                 f'{"" if holder["exact"] else " (probably: the dump saw it in its frames)"}' if holder
                 else 'holder: unknown (gevent does not record it for this kind)']
        waiters = finding['waiters']
        lines.extend(f'waiter: greenlet {waiter["greenlet"]:#x}{_service(waiter)} {waiter["operation"] or "waits"} '
                     f'at {_place(waiter)}' for waiter in waiters[:DETAIL_WAITERS])
        if len(waiters) > DETAIL_WAITERS:
            lines.append(f'and {len(waiters) - DETAIL_WAITERS} more waiters (--json lists them all)')
        return lines
    if kind == analysis.GROWTH:
        return [f'counts per dump: {", ".join(map(str, finding["counts"]))}']
    return []


def _service(item):
    if not item.get('service'):
        return ''
    age = f', {analysis.seconds(item["call_age"])} old' if item.get('call_age') is not None else ''
    return f' ({item["service"]}, cid {item["cid"]}{age})'


def _place(item):
    return f'{item["file"]}:{item["line"]} in {item["function"]}' if item.get('file') else 'an unknown place'


def _stack_lines(frames):
    shown = frames[-DETAIL_FRAMES:]
    lines = [f'({len(frames) - len(shown)} outer frames not shown)'] if len(shown) < len(frames) else []
    for frame in shown:
        lines.append(f'File "{frame["file"]}", line {frame["line"]}, in {frame["function"]}')
        if frame.get('source_line'):
            lines.append(f'  {frame["source_line"].strip()}')
    return lines
