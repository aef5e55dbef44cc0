"""Where a dump goes, each place on its own: server.log, the dump record, stdout in --fg, the
journal; then the report to the master.

Runs in the dump thread (dump/trigger.py), so it uses no logging and no lock the main
thread may hold: server.log is opened for each dump with O_APPEND and written with
os.write (which also follows a rotation), the record is written with os calls only
(record.py), the journal gets one entry through logs.journal.sendv (which moves an entry of
hundreds of KiB out of band, and lets the other threads run while a slow journald makes it
wait), and stdout gets plain os.write. server.log comes first: the dump is on disk even
while journald does not take entries.

Each place fails on its own: its error is caught, counted (`count_failure`, for the metrics)
and reported as DUMP_FAILED in the journal and in server.log (failures.py: at most a line a
minute per place), and the next place is written. The report to the master comes last,
whatever failed before it.
"""

import os
import sys
import time

from zato_daemon.dump import record
from zato_daemon.dump.collect import collect
from zato_daemon.dump.failures import describe_error, failure_message, log_line
from zato_daemon.dump.render import render_text
from zato_daemon.logs import journal
from zato_daemon.logs.levels import DUMP_FAILED, DUMP_WRITTEN
from zato_daemon.logs.throttle import Throttles


class DumpWriter:
    """The on_dump of a DumpTrigger: collects this process, renders it, writes it out.

    `main_thread_ident` is the OS ident of this process's main thread (collect.os_thread_ident()
    read in it). `before_dump()` and `after_dump(dump)` are called around each dump, in the
    dump thread: the master forwards the request to its workers, a worker tells the master
    its dump is over (`dump` is None when it could not be collected). `count_failure()` is
    called once per failed part, in the dump thread: the metrics' count.
    """

    def __init__(self, role, server_dir, main_thread_ident, dump_records, server_log, budget_bytes, to_journal,
                 to_stdout, before_dump=None, after_dump=None, count_failure=None, clock=time.monotonic):
        self.role = role
        self.server_dir = server_dir
        self.main_thread_ident = main_thread_ident
        self.dump_records = dump_records
        self.before_dump = before_dump
        self.after_dump = after_dump
        self.count_failure = count_failure
        self.clock = clock
        self.throttle = Throttles()  # one per part of a dump
        self.configure(server_log, budget_bytes, to_journal, to_stdout)

    def configure(self, server_log, budget_bytes, to_journal, to_stdout):
        """Where and how big the next dumps are; a reload of the master calls it again.

        Each is one attribute assignment, so a dump in progress in the dump thread sees
        either value of each, never a broken one.
        """
        self.server_log = server_log
        self.budget_bytes = budget_bytes
        self.to_journal = to_journal and journal.is_available()
        self.to_stdout = to_stdout

    def __call__(self):
        if self.before_dump is not None:
            self._attempt('forward', None, self.before_dump)
        dump = text = None
        try:
            dump = collect(self.main_thread_ident, self.role, str(self.server_dir))
            text = render_text(dump, self.budget_bytes)
        except Exception as error:
            self.failed('collect', error, dump)
        if dump is not None:
            for part, write in self._places(text is not None):
                self._attempt(part, dump, write, dump, text)
        # Last: the master kills a hung worker as soon as it hears its dump is over, so
        # everything must be out by then. A journald that has fallen behind delays that, up
        # to the master's HUNG_DUMP_WAIT, rather than lose the journal entry.
        if self.after_dump is not None:
            self._attempt('report', dump, self.after_dump, dump)

    def _places(self, has_text):
        # Read once per dump: a reload may change them meanwhile.
        places = [('server.log', self.write_server_log)] if has_text else []
        places.append(('record', self.write_record))
        if has_text and self.to_stdout:
            places.append(('stdout', self.write_stdout))
        if has_text and self.to_journal:
            places.append(('journal', self.send_to_journal))
        return places

    def _attempt(self, part, dump, function, *args):
        try:
            function(*args)
        except Exception as error:
            self.failed(part, error, dump)

    def write_server_log(self, dump, text):
        append_text(self.server_log, text)

    def write_record(self, dump, text):
        # record.write_record makes the directory (0750) when it is missing: the runtime
        # directory may have been deleted under the server.
        record.write_record(dump, self.dump_records)

    def write_stdout(self, dump, text):
        write_text_to_fd(1, text)

    def send_to_journal(self, dump, text):
        blocking = None
        try:
            blocking = record.blocking_summary(dump)
        except Exception as error:  # the entry goes without it
            self.failed('summary', error, dump)
        journal.sendv(*journal_fields(dump, text, blocking))

    def failed(self, part, error, dump=None):
        """Reports one failed part of a dump: counted always, told (DUMP_FAILED in the journal,
        a line in server.log and on stdout in --fg) at most once a minute per part. Never raises:
        it runs where nothing is left to tell."""
        if self.count_failure is not None:
            try:
                self.count_failure()
            except Exception:  # a broken counter must not stop the report
                pass
        count = self.throttle.occurred(part, self.clock())
        if not count:
            return
        pid = os.getpid() if dump is None else dump.pid
        dump_id = None if dump is None else dump.dump_id
        error_text = describe_error(error)
        message = failure_message(self.role, pid, part, error_text, count, dump_id)
        # Each on its own, like the places: a journal that failed may take this small entry,
        # a server.log too big for a dump may take a line.
        if self.to_journal:
            _quietly(journal.sendv, *failure_fields(self.role, self.server_dir, pid, part, error_text, message,
                                                    dump_id))
        line = log_line(time.time(), self.role, pid, sys._getframe().f_lineno, message)
        _quietly(append_text, self.server_log, line)
        if self.to_stdout:
            _quietly(write_text_to_fd, 1, line)


def _quietly(function, *args):
    try:
        function(*args)
    except Exception:  # reporting a failure: there is no one left to tell about this one
        pass


def summary_line(dump):
    """One line saying which process wrote which dump; the journal entry's first line."""
    return (f'zato-daemon {dump.role} (pid {dump.pid}) wrote dump {dump.dump_id}: '
            f'{dump.counts["threads"]:,} threads, {dump.counts["greenlets"]:,} greenlets')


def journal_fields(dump, text, blocking=None):
    """The fields of the one journal entry a dump becomes, as 'NAME=value' strings.

    MESSAGE is the summary line and the whole text; MESSAGE_ID is DUMP_WRITTEN's, so
    `journalctl MESSAGE_ID=...` or `journalctl ZATO_DUMP_ID=...` finds it. `blocking`
    (record.blocking_summary: what keeps a hung worker's hub) ends the first line and is
    ZATO_BLOCKING. One entry per dump: line by line, a dump of thousands of lines would run
    into journald's rate limit (journald.conf RateLimitBurst=, on Debian 12 10,000 entries
    per 30 s per service, scaled by the free disk space), which drops the interval's further
    entries, parts of the dump and other records alike. Send it with logs.journal.sendv,
    which takes entries past the datagram limit.
    """
    first = summary_line(dump) if blocking is None else f'{summary_line(dump)}; blocking: {blocking}'
    return journal.event_entry(DUMP_WRITTEN, f'{first}\n{text}', (
        ('ZATO_DUMP_ID', dump.dump_id), ('ZATO_ROLE', dump.role), ('ZATO_DUMP_PID', dump.pid),
        ('ZATO_SERVER_DIR', dump.server_dir), ('ZATO_BLOCKING', blocking)))


def failure_fields(role, server_dir, pid, part, error_text, message, dump_id=None):
    """The DUMP_FAILED entry of a failed part of a dump, as 'NAME=value' strings."""
    return journal.event_entry(DUMP_FAILED, message, (
        ('ZATO_DUMP_SINK', part), ('ZATO_ERROR', error_text), ('ZATO_DUMP_ID', dump_id), ('ZATO_DUMP_PID', pid),
        *journal.process_fields(server_dir, role)))


def append_text(path, text):
    """Appends `text` to the file at `path` (made 0640 if missing), opened for this write alone:
    a file logrotate moved is followed, and no lock is taken."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        write_text_to_fd(fd, text)
    finally:
        os.close(fd)


def write_text_to_fd(fd, text):
    """Writes all of `text` as UTF-8 to a file descriptor, looping over partial writes.

    For server.log opened with O_APPEND, and stdout: a plain os.write, so no logging lock is
    taken. Raises OSError as os.write does (a non-blocking fd that is full included).
    """
    data = memoryview(text.encode('utf-8', 'backslashreplace'))
    while data:
        written = os.write(fd, data)
        if written <= 0:
            raise OSError(f'os.write wrote nothing to fd {fd}')
        data = data[written:]
