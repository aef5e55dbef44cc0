"""The call a log record belongs to: its cid and service, with no effort from the caller.

The server sets the context around each service call; a filter on every handler copies
it onto the record. contextvars are per greenlet under gevent (greenlet >= 0.4.17), so
concurrent calls in one worker never see each other's context.
"""

import contextvars
import logging

# (cid, service name) of the call running in this greenlet, or None outside calls.
# ServiceHost.run() sets it around each call (set, then reset with the token set returned).
CURRENT_CALL = contextvars.ContextVar('zato_daemon_call', default=None)


def current_call():
    """(cid, service) of the call in progress, or None."""
    return CURRENT_CALL.get()


class ContextFilter(logging.Filter):
    """Adds `cid`, `service` and `role` to every record a handler emits.

    A record that already carries them (passed with `extra=`) keeps its own values.
    """

    def __init__(self, role):
        super().__init__()
        self.role = role

    def filter(self, record):
        call = CURRENT_CALL.get()
        if not hasattr(record, 'cid'):
            record.cid = call[0] if call else ''
        if not hasattr(record, 'service'):
            record.service = call[1] if call else ''
        record.role = self.role
        return True
