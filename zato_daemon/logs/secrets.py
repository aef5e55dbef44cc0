"""Log records through the redaction policy (zato_daemon/redaction.py) before any handler
writes them: the message with its arguments, the traceback, the stack.

A filter on every handler, so that the journal, server.log and stdout get the same text.
The record is redacted once, by the first handler's filter, and marked: formatting a
message twice would be wasted, and the handlers after the first see the redacted record.
"""

import logging
import traceback

from zato_daemon.redaction import redact_text


class RedactingFilter(logging.Filter):
    """Replaces a record's message (arguments merged in) and its traceback by their redacted text."""

    def filter(self, record):
        if getattr(record, 'zato_redacted', False):
            return True
        try:
            message = record.getMessage()
        except Exception:
            # A message that cannot be formatted: logging would report it on stderr with the
            # arguments' reprs. Say so without them.
            message = f'(a message that cannot be formatted: {record.msg!r:.200})'
        record.msg, record.args = redact_text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(''.join(traceback.format_exception(*record.exc_info)).rstrip())
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        record.zato_redacted = True
        return True
