"""Slow calls and samples shipped to the cluster: keys, caps, the entry (redacted, capped),
the cursor through the store, parsing what Redis holds and what `--cluster` prints."""

import json
import math

import pytest

from zato_daemon import redaction
from zato_daemon.cluster import records
from zato_daemon.diagnostics.store import ROW_KEYS

SECRET = 'S3CRET-value-42'


def row(cid='c1', service='crm.get', started_at='2026-01-31T08:00:00.000Z', request='{"id": 1}', response='{}',
        error=None, row_id=1):
    return {'cid': cid, 'service': service, 'worker': 1, 'started_at': started_at, 'duration_ms': 12.5,
            'status': 200, 'request': request, 'response': response, 'error': error, 'id': row_id}


# ---- keys

def test_keys_name_cluster_kind_host_and_service():
    assert records.records_key('prod', records.SLOW, 'host-1', 'crm.get') == 'zato:prod:slow:host-1:crm.get'
    assert records.records_key('prod', records.SAMPLES, 'h', 'a:b') == 'zato:prod:samples:h:a:b'


def test_the_pattern_of_one_service_escapes_glob_characters():
    assert records.records_pattern('prod', records.SLOW) == 'zato:prod:slow:*'
    assert records.records_pattern('prod', records.SAMPLES, 'crm.get') == 'zato:prod:samples:*:crm.get'
    assert records.records_pattern('prod', records.SAMPLES, 'a*b?[c]\\') == 'zato:prod:samples:*:a\\*b\\?\\[c\\]\\\\'


@pytest.mark.parametrize('kind, cap', [(records.SLOW, 100), (records.SAMPLES, 20)])
def test_each_key_has_the_cap_of_its_kind(kind, cap):
    # A service name with ':' in it does not confuse the kind.
    assert records.cap_of_key('prod', records.records_key('prod', kind, 'host-1', 'x:slow:y')) == cap


# ---- the entry

def test_an_entry_is_the_row_with_its_host_first_and_without_the_row_id():
    entry = records.entry_of(row(), 'host-1')
    assert list(entry) == ['host', *ROW_KEYS]
    assert entry['host'] == 'host-1' and entry['cid'] == 'c1' and 'id' not in entry


# What an older version may have stored, or what a secret name added since covers: each must
# leave the host redacted.
SECRET_TEXTS = {
    'JSON key': json.dumps({'user': 'bob', 'password': SECRET}),
    'nested JSON key': json.dumps({'auth': {'api_key': SECRET}, 'items': [{'token': SECRET}]}),
    'header line': f'Authorization: Bearer {SECRET}',
    'headers in JSON': json.dumps({'headers': {'Authorization': f'Basic {SECRET}', 'X-Api-Key': SECRET}}),
    'URL credentials in free text': f'connecting to postgresql://alice:{SECRET}@db/orders failed',
    'name=value in free text': f'login failed: user=alice password={SECRET}',
}


@pytest.mark.parametrize('field', ['request', 'response', 'error'])
@pytest.mark.parametrize('text', SECRET_TEXTS.values(), ids=SECRET_TEXTS.keys())
def test_an_entry_is_redacted_before_it_leaves_the_host(field, text):
    entry = records.entry_of(row(**{field: text}), 'host-1')
    shipped = records.dump_entry(entry)
    assert SECRET not in shipped
    assert redaction.REDACTED in entry[field]


def test_secret_names_the_operator_added_apply_to_what_is_shipped():
    redaction.configure(['iban'])
    try:
        entry = records.entry_of(row(request=json.dumps({'iban': 'DE0012345678'})), 'host-1')
    finally:
        redaction.configure()
    assert 'DE0012345678' not in records.dump_entry(entry)


def test_long_texts_are_capped_saying_how_much_was_cut():
    entry = records.entry_of(row(response='x' * (records.MAX_TEXT_CHARS + 10)), 'host-1')
    assert entry['response'] == 'x' * records.MAX_TEXT_CHARS + '... (10 more characters)'


def test_the_same_row_always_gives_the_same_text():
    # A sorted set holds an entry once: a row shipped again after a restart is no duplicate.
    first = records.dump_entry(records.entry_of(row(request='{"b": 1, "a": 2}'), 'h'))
    assert first == records.dump_entry(records.entry_of(row(request='{"b": 1, "a": 2}'), 'h'))


def test_the_score_is_the_start_in_epoch_seconds():
    assert records.score_of({'started_at': '1970-01-01T00:01:00.500Z'}) == 60.5


def test_batches_group_the_entries_by_key():
    rows = {records.SLOW: [row('a'), row('b', service='crm.put')], records.SAMPLES: [row('c')]}
    grouped, taken = records.batches(rows, 'prod', 'h1')
    assert taken == rows
    assert sorted(grouped) == ['zato:prod:samples:h1:crm.get', 'zato:prod:slow:h1:crm.get',
                               'zato:prod:slow:h1:crm.put']
    [(text, score)] = grouped['zato:prod:samples:h1:crm.get']
    assert json.loads(text)['cid'] == 'c' and score == records.iso_epoch('2026-01-31T08:00:00.000Z')


@pytest.mark.parametrize('budget, taken_cids', [
    (math.inf, (['a', 'b'], ['c'])),
    (1, (['a'], [])),                                    # the first row whatever its size: progress
    ('two', (['a', 'b'], [])),                           # the rows that fit, oldest first
])
def test_a_pass_takes_the_rows_that_fit_in_its_budget(budget, taken_cids):
    rows = {records.SLOW: [row('a', request='x' * 3000), row('b', request='y' * 3000)],
            records.SAMPLES: [row('c', request='z' * 3000)]}
    if budget == 'two':
        budget = 2 * len(records.dump_entry(records.entry_of(rows[records.SLOW][0], 'h1'))) + 10
    grouped, taken = records.batches(rows, 'prod', 'h1', budget)
    assert tuple([item['cid'] for item in taken[kind]] for kind in (records.SLOW, records.SAMPLES)) == taken_cids
    assert sum(len(entries) for entries in grouped.values()) == sum(map(len, taken_cids))


# ---- the cursor

def test_the_cursor_follows_the_ids_shipped_per_kind():
    cursor = records.Cursor()
    cursor.start_for((1, 100))
    assert cursor.after == {records.SLOW: 0, records.SAMPLES: 0}
    cursor.shipped(records.SLOW, [row(row_id=3), row(row_id=7)])
    cursor.shipped(records.SAMPLES, [])
    assert cursor.after == {records.SLOW: 7, records.SAMPLES: 0}
    assert not cursor.restarts(records.SLOW, 7)


def test_a_file_emptied_in_place_starts_again_from_its_first_row():
    cursor = records.Cursor()
    cursor.start_for((1, 100))
    cursor.shipped(records.SLOW, [row(row_id=50)])
    assert cursor.restarts(records.SLOW, 4) and cursor.after[records.SLOW] == 0


def test_another_file_starts_again_from_its_first_row():
    cursor = records.Cursor()
    cursor.start_for((1, 100))
    cursor.shipped(records.SAMPLES, [row(row_id=9)])
    cursor.start_for((1, 100))
    assert cursor.after[records.SAMPLES] == 9
    cursor.start_for((1, 101))
    assert cursor.after[records.SAMPLES] == 0


# ---- reading

def test_an_entry_reads_back_in_the_entry_key_order():
    text = records.dump_entry(records.entry_of(row(), 'host-1'))
    assert list(records.parse_entry(text)) == list(records.ENTRY_KEYS)


@pytest.mark.parametrize('text', ['not json', '[1]', '{}', json.dumps({'host': 'h', 'service': 's', 'cid': 'c'}),
                                  json.dumps({'host': 'h', 'service': 's', 'cid': 'c', 'started_at': 'yesterday'}),
                                  json.dumps({'host': 1, 'service': 's', 'cid': 'c', 'started_at': '2026-01-01'})])
def test_what_is_not_an_entry_is_refused(text):
    with pytest.raises(records.EntryError):
        records.parse_entry(text)


def entry(host, cid, second, service='crm.get'):
    return records.parse_entry(records.dump_entry(records.entry_of(
        row(cid, service, f'2026-01-31T08:00:{second:02d}.000Z'), host)))


def test_merge_lists_newest_first_across_hosts():
    merged = records.merge([entry('h1', 'a', 1), entry('h2', 'b', 3), entry('h1', 'c', 2)], per_host=10)
    assert [(item['host'], item['cid']) for item in merged] == [('h2', 'b'), ('h1', 'c'), ('h1', 'a')]


def test_merge_keeps_the_newest_of_each_host_so_a_busy_one_hides_no_other():
    entries = [entry('busy', f'b{second}', second) for second in range(10, 20)] + [entry('quiet', 'q', 1)]
    merged = records.merge(entries, per_host=3)
    assert [item['cid'] for item in merged] == ['b19', 'b18', 'b17', 'q']


def test_merge_filters_by_service_and_since_and_drops_duplicates():
    entries = [entry('h1', 'a', 1), entry('h1', 'a', 1), entry('h1', 'b', 5, service='other'), entry('h2', 'c', 9)]
    since = records.iso_epoch('2026-01-31T08:00:02.000Z')
    assert [item['cid'] for item in records.merge(entries, 10)] == ['c', 'b', 'a']
    assert [item['cid'] for item in records.merge(entries, 10, service='crm.get')] == ['c', 'a']
    assert [item['cid'] for item in records.merge(entries, 10, since=since)] == ['c', 'b']


@pytest.mark.parametrize('text, reason', [
    ('[' * 100_000, 'not JSON'),                                                  # nested past the recursion limit
    (records.dump_entry(dict(records.entry_of(row(), 'h1'), duration_ms='slow')), 'duration_ms'),
    (records.dump_entry(dict(records.entry_of(row(), 'h1'), duration_ms=True)), 'duration_ms'),
    (records.dump_entry(dict(records.entry_of(row(), 'h1'), status={'a': 1})), 'status'),
    (records.dump_entry(dict(records.entry_of(row(), 'h1'), worker='1')), 'worker'),
    (records.dump_entry(dict(records.entry_of(row(), 'h1'), error=['x'])), 'error'),
    (records.dump_entry(dict(records.entry_of(row(), 'h1'))).replace('12.5', 'NaN'), 'duration_ms'),
    (records.dump_entry(dict(records.entry_of(row(), 'h1'))).replace('12.5', '1e999'), 'duration_ms'),
    (records.dump_entry(dict(records.entry_of(row(), 'h1'), started_at='99999-01-01T00:00:00Z')), 'ISO'),
])
def test_an_entry_whose_fields_a_table_cannot_show_is_refused(text, reason):
    with pytest.raises(records.EntryError, match=reason):
        records.parse_entry(text)


@pytest.mark.parametrize('text, expected', [
    ('host-\x1b]0;owned\x07', 'host-\\x1b]0;owned\\x07'),               # ESC, BEL: a terminal's title
    ('crm.\x9b2J', 'crm.\\x9b2J'),                                     # C1 CSI
    ('\u202etxt.exe', '\\u202etxt.exe'),                               # a bidirectional override
    ('\ud800', '\\ud800'),                                             # a lone surrogate print() cannot encode
    ('\x00\x7f', '\\x00\\x7f'),
    ('Traceback:\n\tline é 中', 'Traceback:\n\tline é 中'),            # kept: whitespace, letters
])
def test_text_from_redis_is_shown_escaped(text, expected):
    assert records.shown(text) == expected


def test_every_text_of_an_entry_read_is_shown_escaped():
    forged = dict(records.entry_of(row(cid='c\x1b[1A', error='E\x1b[31m'), 'h\x07'), service='s\u202e')
    entry = records.parse_entry(records.dump_entry(forged))
    assert (entry['host'], entry['service'], entry['cid'], entry['error']) == \
        ('h\\x07', 's\\u202e', 'c\\x1b[1A', 'E\\x1b[31m')
