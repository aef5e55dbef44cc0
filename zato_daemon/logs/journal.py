"""Records to the systemd journal, natively: one entry per record, UPPERCASE fields only.

journald silently drops lowercase field names, and python-systemd's stock handler sends
about twenty of them, puts argv[0]'s full path in SYSLOG_IDENTIFIER and the handler's
own frame in CODE_*. This one sends what admins filter on: PRIORITY, MESSAGE_ID,
ZATO_CID, ZATO_SERVICE, ZATO_WORKER, ZATO_SERVER_DIR, and the caller's CODE_FILE,
CODE_LINE and CODE_FUNC. A traceback is part of MESSAGE, so `journalctl` shows it.

Entries go through libsystemd's sd_journal_sendv, which falls back to a memfd for big
entries, called with the GIL released. python-systemd's sendv() calls the same function
but keeps the GIL: when journald falls behind and its socket's queue is full, the send
blocks, and with it every thread of the process, the dump thread included, so the
SIGURG dump that would show the cause never comes (tests/system/test_dump.py). ctypes
releases the GIL around a foreign call; it costs about 6 us more per entry
(docs/performance.md, "The journal").
"""

import ctypes
import errno
import logging
import os
import traceback

from zato_daemon.logs.levels import priority_of

try:
    from systemd import journal as _journal
except ImportError:  # a development venv without systemd-python: the journal is off
    _journal = None

IDENTIFIER = 'zato-daemon'


class _Iovec(ctypes.Structure):
    _fields_ = [('base', ctypes.c_char_p), ('length', ctypes.c_size_t)]


def _load_sd_journal_sendv():
    try:
        library = ctypes.CDLL('libsystemd.so.0')
    except OSError:
        return None
    function = library.sd_journal_sendv
    function.argtypes = (ctypes.POINTER(_Iovec), ctypes.c_int)
    function.restype = ctypes.c_int
    return function


_sd_journal_sendv = _load_sd_journal_sendv() if _journal is not None else None


def sendv(*fields):
    """Sends one entry of 'NAME=value' strings; other threads run while journald makes it wait.

    Raises OSError when libsystemd reports an error (ECONNREFUSED from a socket file nobody
    listens on, for one); with no socket file at all the entry is dropped silently, as
    sd_journal_sendv does.
    """
    if _sd_journal_sendv is None:
        _journal.sendv(*fields)
        return
    encoded = [field.encode('utf-8', 'backslashreplace') for field in fields]
    vector = (_Iovec * len(encoded))(*[(field, len(field)) for field in encoded])
    while True:
        result = _sd_journal_sendv(vector, len(encoded))
        # A signal (SIGURG for a dump, say) interrupting a send that waits on journald is
        # no reason to lose the entry: nothing was sent, so send it again (PEP 475).
        if result != -errno.EINTR:
            break
    if result < 0:
        raise OSError(-result, os.strerror(-result))


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


def entry(message, level, message_id=None, fields=(), formatted=()):
    """One journal entry as 'NAME=value' strings: the one place entries are built, for log
    records (JournalHandler), dumps and dump failures (dump/sink.py) and the CLI's events.

    MESSAGE, PRIORITY (the syslog priority of the Python `level`), MESSAGE_ID when there is
    one, SYSLOG_IDENTIFIER, then `fields`: (NAME, value) pairs, a pair whose value is None or
    '' left out, then `formatted`: fields made once by format_fields() for many entries.
    UPPERCASE names only: journald drops the others. Runs in the dump thread too: no logging,
    no lock.
    """
    head = [f'MESSAGE={message}', f'PRIORITY={priority_of(level)}']
    if message_id:
        head.append(f'MESSAGE_ID={message_id}')
    head.append(_IDENTIFIER_FIELD)
    for name, value in fields:
        if value is not None and value != '':
            head.append(f'{name}={value}')
    head.extend(formatted)
    return head


def format_fields(fields):
    """(NAME, value) pairs as entry() formats them, for fields that every entry of a process
    carries: formatted once, not at each record (half of what a record's fields cost)."""
    return tuple(entry('', 0, fields=fields)[3:])


def event_entry(event, message, fields=()):
    """The entry of an event of logs/levels.py: its level and MESSAGE_ID."""
    return entry(message, event.level, event.message_id, fields)


def process_fields(server_dir, role, worker_number=None):
    """The fields naming the process an entry comes from, as (NAME, value) pairs."""
    return (('ZATO_SERVER_DIR', server_dir), ('ZATO_ROLE', role), ('ZATO_WORKER', worker_number))


_IDENTIFIER_FIELD = f'SYSLOG_IDENTIFIER={IDENTIFIER}'


class JournalHandler(logging.Handler):
    """Sends each record as one journal entry. Used in the master and in every worker."""

    def __init__(self, server_dir, role, worker_number=None):
        super().__init__()
        self._process = format_fields(process_fields(server_dir, role, worker_number))

    def emit(self, record):
        try:
            sendv(*self.fields(record))
        except Exception:
            self.handleError(record)

    def fields(self, record):
        """The journal fields of one record, as 'NAME=value' strings."""
        message = record.getMessage()
        if record.exc_text:  # set by logs/secrets.py's filter: the redacted traceback
            message = f'{message}\n{record.exc_text}'
        elif record.exc_info:
            message = f'{message}\n{"".join(traceback.format_exception(*record.exc_info)).rstrip()}'
        elif record.stack_info:
            message = f'{message}\n{record.stack_info}'
        return entry(message, record.levelno, getattr(record, 'message_id', None),
                     (('CODE_FILE', record.pathname), ('CODE_LINE', record.lineno), ('CODE_FUNC', record.funcName),
                      ('ZATO_LOGGER', record.name), ('ZATO_CID', getattr(record, 'cid', None)),
                      ('ZATO_SERVICE', getattr(record, 'service', None)),
                      ('ZATO_INPUT', getattr(record, 'zato_input', None))),
                     self._process)


def send_event(event, message, **fields):
    """Sends one event outside the logging system, e.g. from the CLI before logging is set up."""
    sendv(*event_entry(event, message, fields.items()))
