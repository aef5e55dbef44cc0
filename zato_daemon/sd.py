"""A thin layer over python-systemd's sd_notify: what the master tells systemd, and when.

Every call is a no-op outside a Type=notify unit (no $NOTIFY_SOCKET), so callers
never check. See sd_notify(3) for the meaning of each message.
"""

import os

try:
    from systemd import daemon as _daemon
except ImportError:  # a development venv without systemd-python still runs in --fg mode
    _daemon = None


def is_notify_unit():
    """True when systemd runs this process as a Type=notify unit and waits for READY=1.

    $INVOCATION_ID alone is no sign: a terminal running as a systemd user service sets it
    for every shell it starts.
    """
    return bool(os.environ.get('NOTIFY_SOCKET'))


def is_logging_to_journal():
    """True when systemd connected stdout or stderr to the journal."""
    return bool(os.environ.get('JOURNAL_STREAM'))


def _notify(message):
    if _daemon is not None and os.environ.get('NOTIFY_SOCKET'):
        _daemon.notify(message)


def ready(status):
    """Sockets bound, services deployed, every worker serving."""
    _notify(f'READY=1\nSTATUS={status}\nMAINPID={os.getpid()}')


def reloading(status):
    """`systemctl reload` is in progress; READY=1 ends it."""
    _notify(f'RELOADING=1\nSTATUS={status}')


def stopping(status):
    """The master is draining its workers and will exit."""
    _notify(f'STOPPING=1\nSTATUS={status}')


def watchdog():
    """Still alive: sent from the master's loop; WatchdogSec= in the unit makes systemd act
    (SIGABRT, then a restart) when these stop."""
    _notify('WATCHDOG=1')
