"""The store as the cluster's shipping thread reads it (store.list_written_after): the rows
written after a cursor, oldest first, and the table's highest id, on a real SQLite file."""

import pytest

from zato_daemon.diagnostics.store import (DATABASE_NAME, ROW_KEYS, SAMPLES_TABLE, SLOW_TABLE, Call,
                                           DiagnosticsStore, list_written_after)


@pytest.fixture
def db(tmp_path):
    return tmp_path / 'state' / DATABASE_NAME


def call(number, service='crm.get'):
    return Call(f'cid-{number}', service, 1, 1_780_000_000.0 + number, 5.0, 200, '{}', '{}')


def test_a_missing_database_reads_as_nothing(db):
    assert list_written_after(db, SLOW_TABLE, 0, 10) == (0, [])


def test_rows_after_the_cursor_oldest_first_with_their_ids(db):
    store = DiagnosticsStore(db)
    for number in range(5):
        store.record_slow(call(number))
    store.record_sample(call(9))
    assert store.flush()
    highest, rows = list_written_after(db, SLOW_TABLE, 0, 3)
    assert highest == 5 and [row['cid'] for row in rows] == ['cid-0', 'cid-1', 'cid-2']
    assert list(rows[0]) == [*ROW_KEYS, 'id']
    highest, rows = list_written_after(db, SLOW_TABLE, rows[-1]['id'], 10)
    assert [row['cid'] for row in rows] == ['cid-3', 'cid-4']
    assert list_written_after(db, SLOW_TABLE, 5, 10) == (5, [])
    assert [row['cid'] for row in list_written_after(db, SAMPLES_TABLE, 0, 10)[1]] == ['cid-9']


def test_only_the_two_tables_may_be_read(db):
    with pytest.raises(ValueError):
        list_written_after(db, 'sqlite_master', 0, 10)
