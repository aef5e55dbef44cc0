"""Log records through the redaction policy, whatever handler writes them."""

import logging

from zato_daemon.logs.files import LineFormatter
from zato_daemon.logs.journal import JournalHandler
from zato_daemon.logs.secrets import RedactingFilter
from zato_daemon.redaction import REDACTED

SECRET = 'S3CRET-in-a-record'


def record(msg, args=(), exc_info=None):
    item = logging.LogRecord('test', logging.ERROR, __file__, 1, msg, args, exc_info)
    item.role, item.cid, item.service = 'worker-1', '', ''  # what ContextFilter adds
    return item


def test_the_message_with_its_arguments_is_redacted():
    item = record('connecting to %s with %r', (f'postgresql://u:{SECRET}@h/db', {'password': SECRET}))
    assert RedactingFilter().filter(item)
    assert SECRET not in item.getMessage() and REDACTED in item.getMessage()
    assert 'connecting to postgresql://' in item.getMessage()


def test_the_traceback_is_redacted_for_every_handler():
    try:
        raise ValueError(f'cannot open https://alice:{SECRET}@files.example/x')
    except ValueError:
        import sys
        item = record('failed', exc_info=sys.exc_info())
    RedactingFilter().filter(item)
    text = LineFormatter().format(item)
    assert 'ValueError: cannot open https://' in text and SECRET not in text
    [message] = [field for field in JournalHandler('/srv', 'worker-1').fields(item) if field.startswith('MESSAGE=')]
    assert 'Traceback' in message and SECRET not in message


def test_a_record_is_redacted_once_and_a_broken_one_is_still_written():
    item = record('token=%s', (SECRET,))
    first = RedactingFilter()
    first.filter(item)
    item.msg = 'changed after the first filter'
    RedactingFilter().filter(item)
    assert item.getMessage() == 'changed after the first filter'
    broken = record('%d items', ('not a number',))
    assert RedactingFilter().filter(broken)
    assert 'cannot be formatted' in broken.getMessage()
