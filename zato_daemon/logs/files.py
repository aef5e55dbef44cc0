"""server.log and stdout: plain lines with time, level, role:pid, cid, service and logger.

server.log goes through WatchedFileHandler, which notices that logrotate moved the file
and reopens it (no restart, no signal). Colour only ever goes to a terminal.
"""

import logging
import logging.handlers
import sys

LINE_FORMAT = '%(asctime)s %(levelname)s %(role)s:%(process)d %(context)s%(name)s:%(lineno)d - %(message)s'

_COLOURS = {
    logging.DEBUG: '\033[2m',
    logging.INFO: '',
    logging.WARNING: '\033[33m',
    logging.ERROR: '\033[31m',
    logging.CRITICAL: '\033[1;31m',
}
_RESET = '\033[0m'


class LineFormatter(logging.Formatter):
    """One line per record (plus the traceback); `[cid service]` when inside a service call."""

    def __init__(self):
        super().__init__(LINE_FORMAT)

    def format(self, record):
        cid = getattr(record, 'cid', '')
        record.context = f'[{cid} {record.service}] ' if cid else ''
        return super().format(record)


class ColourFormatter(LineFormatter):
    """LineFormatter with the level name coloured, for a terminal."""

    def format(self, record):
        text = super().format(record)
        colour = _COLOURS.get(record.levelno, '')
        return f'{colour}{text}{_RESET}' if colour else text


def server_log_handler(path):
    """The server.log handler: appends, reopens after rotation.

    backslashreplace: a str that is not valid text (a lone surrogate, from a client or a
    service) is written escaped; with the default 'strict' the record was lost, replaced by
    a "--- Logging error ---" traceback on stderr.
    """
    handler = logging.handlers.WatchedFileHandler(path, encoding='utf-8', errors='backslashreplace')
    handler.setFormatter(LineFormatter())
    return handler


def stdout_handler():
    """Lines on stdout for --fg; coloured only when stdout is a terminal. Text that cannot be
    encoded is escaped, as in server.log."""
    if hasattr(sys.stdout, 'reconfigure'):
        sys.stdout.reconfigure(errors='backslashreplace')
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(ColourFormatter() if sys.stdout.isatty() else LineFormatter())
    return handler
