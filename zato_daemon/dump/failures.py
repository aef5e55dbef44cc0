"""A part of a dump that failed (a sink, collecting, the report to the master): what to say, and when.

Pure: sink.py observes the failure, passes the clock's reading and does the I/O (the
DUMP_FAILED journal entry, a line in server.log, the count for the metrics). Every failure is
counted; each part is told at most once per REPORT_INTERVAL, with the count of the failures
it stands for, so a disk full for an hour gives a line a minute per part, not one per dump.
Runs in the dump thread: no logging, no lock.
"""

import time


# The parts of a dump that fail on their own, in the order a dump runs them, and what each does.
PARTS = {
    'forward': 'forward the dump request to the workers',
    'collect': 'collect the dump',
    'server.log': 'write the dump to server.log',
    'record': 'write the dump record',
    'stdout': 'write the dump to stdout',
    'summary': 'summarize what blocks the hub for the journal entry',
    'journal': 'send the dump to the journal',
    'report': 'report the dump to the master',
    'dump': 'finish the dump',  # an error the writer did not expect, caught by the trigger
}
# An error's text is cut to this many characters: a message can hold anything.
MAX_ERROR_CHARS = 300
# What server.log's lines say after the level (logs/files.py's LINE_FORMAT), for lines that
# do not come through the logging module.
LOGGER_NAME = 'zato_daemon.dump'


def describe_error(error):
    """One line of at most MAX_ERROR_CHARS: the exception's type and text."""
    text = ' '.join(f'{type(error).__name__}: {error}'.split())
    return text if len(text) <= MAX_ERROR_CHARS else f'{text[:MAX_ERROR_CHARS - 3]}...'


def failure_message(role, pid, part, error_text, count, dump_id=None):
    """The sentence a failure is reported with, in the journal and in server.log."""
    which = f' {dump_id}' if dump_id else ''
    what = PARTS.get(part, part).replace('the dump', f'the dump{which}', 1)
    repeated = f' ({count} failures of this part since the last report)' if count > 1 else ''
    return f'{role} (pid {pid}) could not {what}: {error_text}{repeated}'


def log_line(now, role, pid, lineno, message):
    """A WARNING line as logs/files.py's LineFormatter writes one, for server.log and stdout.

    Made by hand: the logging module's records and locks are not for the dump thread.
    `now` is a time.time() reading.
    """
    seconds = int(now)
    stamp = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(seconds))
    milliseconds = int((now - seconds) * 1000)
    return f'{stamp},{milliseconds:03d} WARNING {role}:{pid} {LOGGER_NAME}:{lineno} - {message}\n'
