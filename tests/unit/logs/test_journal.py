"""The journal entry a record becomes (the fields), without sending it."""

import logging
import sys

from zato_daemon.logs.context import CURRENT_CALL, ContextFilter
from zato_daemon.logs.journal import JournalHandler
from zato_daemon.logs.levels import SERVICE_FAILED


def make_record(level=logging.INFO, message='hello %s', args=('world',), exc_info=None, **extra):
    record = logging.LogRecord('zato_daemon.test', level, '/src/module.py', 42, message, args, exc_info, 'handle')
    for name, value in extra.items():
        setattr(record, name, value)
    return record


def fields(record, worker=2):
    ContextFilter('worker-2').filter(record)
    return dict(field.split('=', 1) for field in JournalHandler('/etc/zato-daemon', 'worker-2', worker).fields(record))


def test_fields_are_uppercase_and_carry_the_callers_code_location():
    entry = fields(make_record())
    assert all(name == name.upper() for name in entry)
    assert entry['MESSAGE'] == 'hello world'
    assert entry['PRIORITY'] == '6'
    assert (entry['CODE_FILE'], entry['CODE_LINE'], entry['CODE_FUNC']) == ('/src/module.py', '42', 'handle')
    assert entry['SYSLOG_IDENTIFIER'] == 'zato-daemon'
    assert (entry['ZATO_WORKER'], entry['ZATO_SERVER_DIR'], entry['ZATO_LOGGER']) == (
        '2', '/etc/zato-daemon', 'zato_daemon.test')
    assert 'ZATO_CID' not in entry and 'MESSAGE_ID' not in entry


def test_levels_map_to_priorities():
    for level, priority in ((logging.DEBUG, '7'), (logging.INFO, '6'), (logging.WARNING, '4'),
                            (logging.ERROR, '3'), (logging.CRITICAL, '2'), (25, '6'), (35, '4')):
        assert fields(make_record(level))['PRIORITY'] == priority


def test_call_context_and_event_fields():
    token = CURRENT_CALL.set(('zd0001', 'demo.echo'))
    try:
        entry = fields(make_record(**SERVICE_FAILED.extra))
    finally:
        CURRENT_CALL.reset(token)
    assert (entry['ZATO_CID'], entry['ZATO_SERVICE']) == ('zd0001', 'demo.echo')
    assert entry['MESSAGE_ID'] == SERVICE_FAILED.message_id


def test_explicit_context_wins_over_the_current_call():
    token = CURRENT_CALL.set(('zd-outer', 'outer'))
    try:
        entry = fields(make_record(cid='zd-explicit', service='explicit'))
    finally:
        CURRENT_CALL.reset(token)
    assert (entry['ZATO_CID'], entry['ZATO_SERVICE']) == ('zd-explicit', 'explicit')


def test_traceback_is_in_the_message():
    try:
        raise KeyError('missing')
    except KeyError:
        entry = fields(make_record(logging.ERROR, 'failed', (), exc_info=sys.exc_info(), zato_input='{"a": 1}'))
    assert entry['MESSAGE'].startswith('failed\nTraceback (most recent call last):')
    assert entry['MESSAGE'].endswith("KeyError: 'missing'")
    assert entry['ZATO_INPUT'] == '{"a": 1}'


def test_master_entries_have_no_worker_field():
    record = make_record()
    ContextFilter('master').filter(record)
    entry = dict(f.split('=', 1) for f in JournalHandler('/srv', 'master').fields(record))
    assert 'ZATO_WORKER' not in entry and entry['ZATO_ROLE'] == 'master'
