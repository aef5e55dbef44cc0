"""The troubleshooting store when its file is deleted or replaced under it.

Two stores on one path stand for two workers (their connections are separate; SQLite
behaves across processes as it does here, see the integration test test_state_repair.py).
The clock is moved by hand: a store looks at its path at most once a second.
"""

import logging
import shutil
import sqlite3

import pytest

from zato_daemon.sqlite_file import CHECK_INTERVAL
from zato_daemon.diagnostics.store import Call, DiagnosticsStore, list_slow
from zato_daemon.logs.levels import RUNTIME_REPAIRED


@pytest.fixture
def workers(db, clock):
    """Two stores on one database, each with one call written."""
    stores = [DiagnosticsStore(db, clock=clock) for _ in range(2)]
    for number, store in enumerate(stores):
        store.record_slow(slow(f'before-{number}'))
        assert store.flush()
    yield stores
    for store in stores:
        store.close()


def slow(cid, started_at=1.7e9):
    return Call(cid, 'svc', 1, started_at, 1.0, 200, '{}', '{}')


def cids(db):
    return sorted(row['cid'] for row in list_slow(db))


def records(caplog, level):
    return [record for record in caplog.records if record.name == 'zato_daemon.diagnostics' and record.levelno == level]


def test_a_deleted_file_is_recreated_and_reported_once(workers, db, clock, caplog):
    caplog.set_level(logging.INFO, 'zato_daemon.diagnostics')
    one, two = workers
    db.unlink()
    one.record_slow(slow('after-1'))
    two.record_slow(slow('after-2'))
    # Flushed right after the last look (no time passed), a batch still goes to the deleted file.
    assert one.flush() and not db.exists()
    clock.now += CHECK_INTERVAL
    one.record_slow(slow('after-3'))
    assert one.flush() and two.flush()
    # What was queued but not written yet reaches the new file; the deleted file's rows are gone.
    assert cids(db) == ['after-2', 'after-3']
    [warning] = records(caplog, logging.WARNING)
    assert warning.getMessage() == (
        f'Diagnostics database {db} was deleted while the server ran; every worker moves to a new one created at '
        'that path. The slow calls and samples it held are gone; new ones are stored there')
    assert warning.message_id == RUNTIME_REPAIRED.message_id
    [info] = records(caplog, logging.INFO)
    assert info.getMessage() == (f'Diagnostics database {db} was deleted or replaced; this worker writes to the '
                                 'file now there (another worker reported the repair)')


def test_both_noticing_at_once_end_on_one_file(workers, db, clock, caplog):
    one, two = workers
    db.unlink()
    clock.now += CHECK_INTERVAL
    assert one.flush() and two.flush()
    for number, store in enumerate(workers):
        store.record_slow(slow(f'again-{number}'))
        assert store.flush()
    assert cids(db) == ['again-0', 'again-1']
    assert len(records(caplog, logging.WARNING)) == 1


def test_a_deleted_directory_is_recreated(workers, db, clock, caplog):
    one, _ = workers
    shutil.rmtree(db.parent)
    clock.now += CHECK_INTERVAL
    one.record_slow(slow('after'))
    assert one.flush()
    assert cids(db) == ['after']
    assert 'its directory was gone too, and was recreated' in records(caplog, logging.WARNING)[0].getMessage()


def test_a_replaced_file_is_reopened_not_recreated(workers, db, tmp_path, clock, caplog):
    one, two = workers
    replacement = tmp_path / 'replacement.sqlite3'
    other = DiagnosticsStore(replacement, clock=clock)
    other.record_slow(slow('in-the-replacement'))
    assert other.flush()
    other.close()
    replacement.rename(db)
    clock.now += CHECK_INTERVAL
    one.record_slow(slow('after'))
    assert one.flush() and two.flush()
    assert cids(db) == ['after', 'in-the-replacement']
    [warning] = records(caplog, logging.WARNING)
    assert warning.getMessage().startswith(f'Diagnostics database {db} was deleted or replaced while the server '
                                           'ran; every worker moves to the file now at that path.')


def test_a_worker_started_after_the_deletion_reports_it(workers, db, clock, caplog):
    """Its store finds a deleted file's sidecars, still used by the others, and no file."""
    db.unlink()
    late = DiagnosticsStore(db, clock=clock)
    late.record_slow(slow('late'))
    assert late.flush()
    late.close()
    assert cids(db) == ['late']
    assert len(records(caplog, logging.WARNING)) == 1
    clock.now += CHECK_INTERVAL
    for store in workers:
        assert store.flush()
    assert len(records(caplog, logging.WARNING)) == 1


def test_a_first_start_reports_nothing(db, caplog):
    store = DiagnosticsStore(db)
    store.record_slow(slow('first'))
    assert store.flush()
    store.close()
    assert records(caplog, logging.WARNING) == []


def test_a_file_that_cannot_be_recreated_warns_and_keeps_the_batch(workers, db, clock, caplog):
    one, _ = workers
    shutil.rmtree(db.parent)
    db.parent.write_text('a file where the state directory should be')
    clock.now += CHECK_INTERVAL
    one.record_slow(slow('kept'))
    assert not one.flush()
    assert one.pending == 1
    assert 'unavailable while reopening it (FileExistsError' in records(caplog, logging.WARNING)[0].getMessage()
    db.parent.unlink()
    assert one.flush()
    assert cids(db) == ['kept']
    assert records(caplog, logging.WARNING)[-1].message_id == RUNTIME_REPAIRED.message_id


def test_the_new_file_is_a_complete_database(workers, db, clock):
    one, _ = workers
    db.unlink()
    clock.now += CHECK_INTERVAL
    assert one.flush()
    connection = sqlite3.connect(db)
    assert connection.execute('PRAGMA journal_mode').fetchone() == ('wal',)
    assert connection.execute('PRAGMA integrity_check').fetchall() == [('ok',)]
    assert connection.execute('PRAGMA user_version').fetchone() == (1,)
    connection.close()
