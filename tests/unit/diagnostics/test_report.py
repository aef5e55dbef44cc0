"""Stored calls as tables for people and JSON for diff."""

import json

import pytest

from zato_daemon.diagnostics.report import (CUT_WIDTHS, ELLIPSIS, SAMPLE_COLUMNS, SLOW_COLUMNS, format_json,
                                            UNSHOWABLE, format_samples, format_slow, format_table, shown)
from zato_daemon.diagnostics.store import DATABASE_NAME, ROW_KEYS, Call, DiagnosticsStore, list_slow


def make_row(cid='c1', service='demo.echo', **fields):
    row = dict(cid=cid, service=service, worker=1, started_at='2026-11-24T09:10:42.297Z', duration_ms=1234.5,
               status=200, request='{"a": 1}', response='{"b": 2}', error=None)
    row.update(fields)
    return row


def column_starts(line, cells):
    """Where each cell of a table line starts, found left to right."""
    starts, position = [], 0
    for cell in cells:
        position = line.index(cell, position)
        starts.append(position)
        position += len(cell)
    return starts


def test_a_table_has_a_header_and_aligned_columns():
    rows = [make_row('short', duration_ms=5.0), make_row('a-much-longer-cid', service='x', duration_ms=12345.678)]
    lines = format_table(rows, ('cid', 'service', 'duration_ms', 'status')).splitlines()
    assert lines[0].split() == ['CID', 'SERVICE', 'DURATION_MS', 'STATUS']
    assert lines[1].split() == ['short', 'demo.echo', '5.0', '200']
    assert lines[2].split() == ['a-much-longer-cid', 'x', '12345.7', '200']
    # Text columns start together; numbers end together.
    assert column_starts(lines[1], ['short', 'demo.echo'])[1] == column_starts(lines[2], ['a-much', 'x'])[1]
    assert lines[1].index('5.0') + 3 == lines[2].index('12345.7') + 7 == lines[0].index('DURATION_MS') + 11
    assert all(line == line.rstrip() for line in lines)


def test_long_payloads_are_cut_and_kept_on_one_line():
    error = 'ValueError: bad\n  /srv/a.py:10 in handle\n  /srv/b.py:20 in check' + ' and more' * 10
    table = format_table([make_row(request='x' * 100, error=error, response=None)], ('request', 'response', 'error'))
    header, line = table.splitlines()
    request, response, rest = line.split('  ', 2)
    assert request == 'x' * (CUT_WIDTHS['request'] - 1) + ELLIPSIS
    assert response.strip() == '-'
    assert rest.strip().startswith('ValueError: bad /srv/a.py:10 in handle')
    assert len(rest.strip()) == CUT_WIDTHS['error'] and rest.strip().endswith(ELLIPSIS)


def test_short_payloads_are_not_cut():
    table = format_table([make_row(request='x' * CUT_WIDTHS['request'])], ('request',))
    assert table.splitlines()[1] == 'x' * CUT_WIDTHS['request']


def test_json_keeps_the_rows_key_order_and_their_text():
    rows = [make_row(request='{"name": "Zoë"}'), make_row('c2', error='KeyError: ü')]
    text = format_json(rows)
    assert json.loads(text) == rows
    assert [list(row) for row in json.loads(text)] == [list(ROW_KEYS)] * 2
    assert 'Zoë' in text and '\\u' not in text
    assert text.splitlines()[:3] == ['[', '  {', '    "cid": "c1",']


def test_json_of_the_same_calls_is_the_same_text(tmp_path):
    # Two environments storing the same calls print byte-identical JSON: nothing volatile is added.
    outputs = []
    for name in ('staging', 'production'):
        db = tmp_path / name / DATABASE_NAME
        store = DiagnosticsStore(db)
        for number in range(3):
            store.record_slow(Call(f'c{number}', 'demo.echo', 1, 1.7e9 + number, 1500.25, 200, '{"a": 1}', '{}'))
        store.close()
        outputs.append(format_slow(list_slow(db), as_json=True))
    assert outputs[0] == outputs[1]
    assert list(json.loads(outputs[0])[0]) == list(ROW_KEYS)


@pytest.mark.parametrize('formatter, columns, empty', [(format_slow, SLOW_COLUMNS, 'No slow responses stored.'),
                                                       (format_samples, SAMPLE_COLUMNS, 'No samples stored.')])
def test_the_wrappers_pick_columns_and_say_when_there_is_nothing(formatter, columns, empty):
    rows = [make_row()]
    assert formatter(rows) == format_table(rows, columns)
    assert formatter(rows, as_json=True) == format_json(rows)
    assert formatter([]) == empty
    assert formatter([], as_json=True) == '[]'


def test_samples_leave_out_the_service_named_on_the_command_line():
    assert 'service' in SLOW_COLUMNS and 'service' not in SAMPLE_COLUMNS


# What a client sent reaches the operator's terminal: JSON allows C1 controls, DEL, format
# characters and lone surrogates unescaped in a string, and a terminal may act on them.
HOSTILE = 'a\x1b[2Jb\x9bc\u202ed\x7fe\u200bf\ud800g'


def test_a_table_shows_what_a_terminal_would_act_on_as_escapes():
    table = format_table([{'request': HOSTILE, 'cid': 'c\u2066'}], ('cid', 'request'))
    assert not UNSHOWABLE.search(table)
    assert '\\x1b[2Jb\\x9bc\\u202ed\\x7fe\\u200bf\\ud800g' in table and 'c\\u2066' in table


def test_json_writes_them_as_json_escapes_and_reads_back_the_same():
    text = format_json([{'request': HOSTILE, 'é': 'ünï'}])
    assert not UNSHOWABLE.search(text)
    assert '"é": "ünï"' in text  # other non-ASCII text as is
    assert json.loads(text) == [{'request': HOSTILE, 'é': 'ünï'}]


@pytest.mark.parametrize('value, expected', [('plain', 'plain'), ('tab\tand\nnewline', 'tab\tand\nnewline'),
                                             ('\x00', '\\x00'), (5, 5), (None, None)])
def test_shown(value, expected):
    assert shown(value) == expected
