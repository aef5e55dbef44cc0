"""What the deploy thread and `cluster` make of Redis replies read raw (bytes, never decoded by
redis-py): anyone who can write Redis may have put bytes that are not UTF-8 under our keys, and
one such entry must be skipped, not stop every later one."""

import pytest

from zato_daemon.cluster.thread import raw_hash, stream_entries, utf8_or_none
from zato_daemon.cluster.membership import parse_record
from zato_daemon.cluster.modules import RecordError, load_record


@pytest.mark.parametrize('value, text', [(b'host-a', 'host-a'), ('é'.encode(), 'é'), (b'\xff', None), (None, None)])
def test_utf8_or_none(value, text):
    assert utf8_or_none(value) == text


RESP2 = [[b'zato:test:deploys', [[b'1-0', [b'name', b'a.py', b'publication', b'p1']],
                                 [b'2-0', [b'name', b'\xff.py', b'publication', b'p2']],
                                 [b'3-0', [b'name', b'b.py']]]]]


@pytest.mark.parametrize('answer', [RESP2, {key: entries for key, entries in RESP2}], ids=['resp2', 'resp3'])
def test_stream_entries_keep_their_ids_and_leave_out_fields_that_are_not_utf8(answer):
    assert list(stream_entries(answer)) == [('1-0', {'name': 'a.py', 'publication': 'p1'}), ('2-0', None),
                                            ('3-0', {'name': 'b.py'})]


def test_an_empty_xread_answer_has_no_entries():
    assert list(stream_entries(None)) == [] and list(stream_entries([])) == []


@pytest.mark.parametrize('reply', [[b'a.py', b'{}', b'\xff.py', b'{}', b'b.py', b'\xfe'],
                                   {b'a.py': b'{}', b'\xff.py': b'{}', b'b.py': b'\xfe'}], ids=['resp2', 'resp3'])
def test_raw_hash_leaves_out_fields_and_values_that_are_not_utf8(reply):
    assert raw_hash(reply) == {'a.py': '{}'}


def test_a_record_that_is_not_text_or_too_deep_is_refused_not_raised():
    with pytest.raises(RecordError, match='not UTF-8'):
        load_record(None, 'a.py')
    with pytest.raises(RecordError, match='not JSON'):
        load_record('[' * 100_000 + ']' * 100_000, 'a.py')


@pytest.mark.parametrize('text', [None, '[' * 100_000 + ']' * 100_000, '"a"', '{"host_name": 1}'])
def test_a_member_record_that_is_not_one_is_left_out(text):
    assert parse_record(text) is None
