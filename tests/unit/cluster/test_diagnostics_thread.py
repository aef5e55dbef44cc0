"""The diagnostics thread's reading of this member's store (cluster/diagnostics.py), on real
files, without Redis: what it ships next, a database missing (nothing said) or broken (said
once, until it reads again), and a file replaced (read from its first row)."""

import logging
import os
from types import SimpleNamespace

import pytest

from zato_daemon.cluster import records
from zato_daemon.cluster.diagnostics import ClusterDiagnostics
from zato_daemon.cluster.settings import ClusterSettings
from zato_daemon.diagnostics.store import DATABASE_NAME, Call, DiagnosticsStore, list_slow

SETTINGS = ClusterSettings(url='redis://127.0.0.1:1/0', name='test', host_name='host-1', heartbeat_ttl=15.0)


@pytest.fixture
def db(tmp_path):
    return tmp_path / 'state' / DATABASE_NAME


@pytest.fixture
def thread(db):
    paths = SimpleNamespace(diagnostics_database=db, server_log=db.parent / 'server.log')
    return ClusterDiagnostics(SETTINGS, None, paths, lambda: None, 42, logging.getLogger('test.cluster.diagnostics'))


def store_calls(db, *numbers, slow=True):
    store = DiagnosticsStore(db)
    for number in numbers:
        call = Call(f'cid-{number}', 'crm.get', 1, 1_780_000_000.0 + number, 5.0, 200, '{}', '{}')
        (store.record_slow if slow else store.record_sample)(call)
    assert store.flush()
    store.close()


def shipped(thread, rows):
    for kind, kind_rows in rows.items():
        thread._cursor.shipped(kind, kind_rows)


def cids(rows, kind=records.SLOW):
    return [row['cid'] for row in rows[kind]]


def test_a_missing_database_is_nothing_to_ship_and_nothing_said(thread, db, caplog):
    assert thread._read_store(db) is None
    assert not caplog.records


def test_rows_are_read_once_shipped_then_only_the_new_ones(thread, db):
    store_calls(db, 1, 2)
    store_calls(db, 3, slow=False)
    rows = thread._read_store(db)
    assert cids(rows) == ['cid-1', 'cid-2'] and cids(rows, records.SAMPLES) == ['cid-3']
    # Not shipped (Redis did not take them): read again.
    assert cids(thread._read_store(db)) == ['cid-1', 'cid-2']
    shipped(thread, rows)
    store_calls(db, 4)
    rows = thread._read_store(db)
    assert cids(rows) == ['cid-4'] and cids(rows, records.SAMPLES) == []


def test_a_database_replaced_is_read_from_its_first_row(thread, db):
    store_calls(db, 1, 2, 3)
    shipped(thread, thread._read_store(db))
    os.rename(db, db.with_name('aside.sqlite3'))
    for suffix in ('-wal', '-shm'):
        if os.path.exists(f'{db}{suffix}'):
            os.unlink(f'{db}{suffix}')
    store_calls(db, 7)
    assert cids(thread._read_store(db)) == ['cid-7']


def test_a_broken_database_is_said_once_and_its_recovery_too(thread, db, caplog):
    db.parent.mkdir(parents=True)
    db.write_bytes(b'this is not a SQLite database' * 100)
    caplog.set_level(logging.INFO)
    assert thread._read_store(db) is None
    assert thread._read_store(db) is None
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith('Not shipping slow calls and samples to the cluster: cannot read ')
    db.unlink()
    store_calls(db, 1)
    assert cids(thread._read_store(db)) == ['cid-1']
    assert [record.getMessage() for record in caplog.records][-1].startswith('Shipping slow calls and samples')


def test_a_fork_waits_for_a_read_under_way_and_the_child_may_read_at_once(db):
    # SQLite's process-wide mutexes are copied held into a child forked mid-read: the master
    # forks its workers only between two reads of the thread.
    import threading
    from zato_daemon.cluster import diagnostics
    store_calls(db, 1)
    holding, released = threading.Event(), []

    def read_slowly():
        with diagnostics._sqlite_lock:
            holding.set()
            threading.Event().wait(0.2)
            released.append(True)
    reader = threading.Thread(target=read_slowly)
    reader.start()
    holding.wait(5)
    pid = os.fork()
    if pid == 0:
        # The lock is free in the child, and SQLite answers there.
        with diagnostics._sqlite_lock:
            os._exit(0 if [row['cid'] for row in list_slow(db)] == ['cid-1'] else 1)
    assert released == [True]
    reader.join()
    assert os.waitpid(pid, 0)[1] == 0
