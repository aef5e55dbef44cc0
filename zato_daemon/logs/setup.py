"""Configures the logging of a master or worker process from [logging] and [loggers].

Called in the master at start and at each reload, and in each worker after fork (after
gevent's patching, so that handler locks are created patched).
"""

import logging
import os

from zato_daemon import redaction
from zato_daemon.errors import DirectoryError
from zato_daemon.logs import journal
from zato_daemon.logs.context import ContextFilter
from zato_daemon.logs.files import server_log_handler, stdout_handler
from zato_daemon.logs.secrets import RedactingFilter
from zato_daemon.sd import is_logging_to_journal, is_notify_unit


# Loggers whose level [loggers] set, in this process (workers inherit the master's).
_levelled_loggers = set()


def wants_journal(setting):
    """Whether the journal handler is on: [logging] journal = auto follows systemd."""
    if setting == 'NO':
        return False
    if setting == 'YES':
        return True
    return (is_notify_unit() or is_logging_to_journal()) and journal.is_available()


def writes_stdout(foreground, use_journal):
    """Whether records (and dumps) go to stdout: in --fg mode, unless stdout is itself the
    journal they already reach natively, so that nothing reaches the journal twice."""
    return foreground and not (use_journal and journal.stream_is_journal(1))


def configure_logging(config, server_dir, role, foreground, worker_number=None):
    """Replaces the root logger's handlers: server.log, the journal, stdout (--fg only).

    stdout is skipped when the journal handler is on and stdout is itself the journal,
    so that no record reaches the journal twice.
    """
    settings = config.server_config.logging
    # The policy every sink of this process uses: records, dumps, samples and slow calls.
    redaction.configure(settings.secret_names)
    handlers = [server_log_handler(server_dir.server_log)]
    use_journal = wants_journal(settings.journal)
    if use_journal:
        handlers.append(journal.JournalHandler(server_dir.base, role, worker_number))
    if writes_stdout(foreground, use_journal):
        handlers.append(stdout_handler())
    context = ContextFilter(role)
    secrets = RedactingFilter()
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.addFilter(secrets)
        handler.addFilter(context)
        root.addHandler(handler)
    root.setLevel(settings.level)
    # A logger dropped from [loggers] at reload goes back to following the root level.
    for name in _levelled_loggers - set(config.server_config.loggers):
        logging.getLogger(name).setLevel(logging.NOTSET)
    _levelled_loggers.clear()
    for name, level in config.server_config.loggers.items():
        logging.getLogger(name).setLevel(level)
        _levelled_loggers.add(name)


def check_server_log(path):
    """Opens server.log for appending once, so that a start fails early and clearly if it cannot.

    A server.log an earlier run left readable by others (created under a 022 umask) is made
    0640: it holds dumps and the input of failed calls.
    """
    try:
        with open(path, 'a', encoding='utf-8') as server_log:
            _make_private(server_log.fileno())
    except OSError as exc:
        raise DirectoryError(f'cannot open {path} for writing: {exc.strerror}; fix [logging] server_log '
                             'or the permissions of its directory') from None


def _make_private(fd):
    try:
        mode = os.fstat(fd).st_mode & 0o777
        if mode & 0o137:
            os.fchmod(fd, mode & 0o640)
    except OSError:
        pass  # not ours to change (an admin's file): it stays as the admin made it
