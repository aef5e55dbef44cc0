"""The journal entry a record or an event becomes (the fields), without sending it."""

import logging
import sys

from zato_daemon.logs import journal
from zato_daemon.logs.context import CURRENT_CALL, ContextFilter
from zato_daemon.logs.journal import JournalHandler
from zato_daemon.logs.levels import DUMP_FAILED, SERVICE_FAILED


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


# What JournalHandler.fields gave for these records before every entry was built by
# journal.entry(): the fields are the same, byte for byte (their order is not part of it).
BEFORE_ENTRY = (
    ['MESSAGE=hello world', 'PRIORITY=3', 'CODE_FILE=/src/module.py', 'CODE_LINE=42', 'CODE_FUNC=handle',
     'ZATO_LOGGER=zato_daemon.test', 'SYSLOG_IDENTIFIER=zato-daemon', 'ZATO_SERVER_DIR=/etc/zato-daemon',
     'ZATO_ROLE=worker-2', 'ZATO_WORKER=2', 'ZATO_CID=zd0001', 'ZATO_SERVICE=demo.echo',
     'MESSAGE_ID=a3ba752d3ae247048e96a09fba799009', 'ZATO_INPUT={"a": 1}'],
    ['MESSAGE=plain', 'PRIORITY=6', 'CODE_FILE=/src/m.py', 'CODE_LINE=7', 'CODE_FUNC=f', 'ZATO_LOGGER=zato_daemon.m',
     'SYSLOG_IDENTIFIER=zato-daemon', 'ZATO_SERVER_DIR=/srv', 'ZATO_ROLE=master'],
)


def test_a_records_fields_are_the_ones_it_had_before_entries_were_built_in_one_place():
    failed = make_record(logging.ERROR, zato_input='{"a": 1}', **SERVICE_FAILED.extra)
    token = CURRENT_CALL.set(('zd0001', 'demo.echo'))
    try:
        ContextFilter('worker-2').filter(failed)
    finally:
        CURRENT_CALL.reset(token)
    plain = logging.LogRecord('zato_daemon.m', logging.INFO, '/src/m.py', 7, 'plain', (), None, 'f')
    ContextFilter('master').filter(plain)
    now = (JournalHandler('/etc/zato-daemon', 'worker-2', 2).fields(failed),
           JournalHandler('/srv', 'master').fields(plain))
    assert [sorted(fields) for fields in now] == [sorted(fields) for fields in BEFORE_ENTRY]


def test_an_entry_starts_with_the_common_fields_and_leaves_out_empty_ones():
    pairs = (('ZATO_A', 1), ('ZATO_B', None), ('ZATO_C', ''), ('ZATO_D', '/srv'))
    fields = journal.entry('text\nsecond line', logging.WARNING, 'abc', pairs, ('ZATO_E=e',))
    assert fields == ['MESSAGE=text\nsecond line', 'PRIORITY=4', 'MESSAGE_ID=abc', 'SYSLOG_IDENTIFIER=zato-daemon',
                      'ZATO_A=1', 'ZATO_D=/srv', 'ZATO_E=e']
    assert journal.entry('m', logging.DEBUG) == ['MESSAGE=m', 'PRIORITY=7', 'SYSLOG_IDENTIFIER=zato-daemon']


def test_an_events_entry_and_the_process_fields():
    fields = journal.event_entry(DUMP_FAILED, 'failed', journal.process_fields('/srv', 'worker-1', 1))
    assert fields == ['MESSAGE=failed', 'PRIORITY=4', f'MESSAGE_ID={DUMP_FAILED.message_id}',
                      'SYSLOG_IDENTIFIER=zato-daemon', 'ZATO_SERVER_DIR=/srv', 'ZATO_ROLE=worker-1', 'ZATO_WORKER=1']
    process = journal.format_fields(journal.process_fields('/srv', 'master'))
    assert process == ('ZATO_SERVER_DIR=/srv', 'ZATO_ROLE=master')
