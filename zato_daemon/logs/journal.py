"""Records to the systemd journal, natively: one entry per record, UPPERCASE fields only.

journald silently drops lowercase field names, and python-systemd's stock handler sends
about twenty of them, puts argv[0]'s full path in SYSLOG_IDENTIFIER and the handler's
own frame in CODE_*. This one sends what admins filter on: PRIORITY, MESSAGE_ID,
ZATO_CID, ZATO_SERVICE, ZATO_WORKER, ZATO_SERVER_DIR, and the caller's CODE_FILE,
CODE_LINE and CODE_FUNC. A traceback is part of MESSAGE, so `journalctl` shows it.
It goes through python-systemd's C sendv, which falls back to a memfd for big entries.
"""

import logging
import os
import traceback

from zato_daemon.logs.levels import priority_of

try:
    from systemd import journal as _journal
except ImportError:  # a development venv without systemd-python: the journal is off
    _journal = None

IDENTIFIER = 'zato-daemon'


def is_available():
    """True when python-systemd is importable and a journal socket exists."""
    return _journal is not None and os.path.exists('/run/systemd/journal/socket')


def stream_is_journal(fd):
    """True when a descriptor is the journal stream systemd connected (JOURNAL_STREAM=dev:ino)."""
    expected = os.environ.get('JOURNAL_STREAM', '')
    try:
        stat = os.fstat(fd)
    except OSError:
        return False
    return expected == f'{stat.st_dev}:{stat.st_ino}'


class JournalHandler(logging.Handler):
    """Sends each record as one journal entry. Used in the master and in every worker."""

    def __init__(self, server_dir, role, worker_number=None):
        super().__init__()
        static = [f'SYSLOG_IDENTIFIER={IDENTIFIER}', f'ZATO_SERVER_DIR={server_dir}', f'ZATO_ROLE={role}']
        if worker_number is not None:
            static.append(f'ZATO_WORKER={worker_number}')
        self._static = static

    def emit(self, record):
        try:
            _journal.sendv(*self.fields(record))
        except Exception:
            self.handleError(record)

    def fields(self, record):
        """The journal fields of one record, as 'NAME=value' strings."""
        message = record.getMessage()
        if record.exc_info:
            message = f'{message}\n{"".join(traceback.format_exception(*record.exc_info)).rstrip()}'
        elif record.stack_info:
            message = f'{message}\n{record.stack_info}'
        fields = [f'MESSAGE={message}', f'PRIORITY={priority_of(record.levelno)}',
                  f'CODE_FILE={record.pathname}', f'CODE_LINE={record.lineno}', f'CODE_FUNC={record.funcName}',
                  f'ZATO_LOGGER={record.name}', *self._static]
        for attribute, name in _OPTIONAL_FIELDS:
            value = getattr(record, attribute, None)
            if value:
                fields.append(f'{name}={value}')
        return fields


# Record attributes that become fields when set: the call context (logs/context.py),
# an event's MESSAGE_ID (logs/levels.py) and a failed call's redacted input.
_OPTIONAL_FIELDS = (
    ('cid', 'ZATO_CID'),
    ('service', 'ZATO_SERVICE'),
    ('message_id', 'MESSAGE_ID'),
    ('zato_input', 'ZATO_INPUT'),
)


def send_event(event, message, **fields):
    """Sends one event outside the logging system, e.g. from the CLI before logging is set up."""
    extra = [f'{name}={value}' for name, value in fields.items()]
    _journal.sendv(f'MESSAGE={message}', f'PRIORITY={priority_of(event.level)}', f'MESSAGE_ID={event.message_id}',
                   f'SYSLOG_IDENTIFIER={IDENTIFIER}', *extra)
