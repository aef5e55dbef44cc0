"""The troubleshooting store: queueing, batching, retention, size bound, failures, reading."""

import logging
import os
import sqlite3
import stat
from datetime import datetime, timezone

import pytest

from zato_daemon.diagnostics import store as store_module
from zato_daemon.diagnostics.store import (MIN_DB_BYTES, ROW_KEYS, Call, DiagnosticsReadError,
                                           DiagnosticsStore, Sampler, describe_error, list_samples, list_slow,
                                           render_payload)
from zato_daemon import redaction
from zato_daemon.redaction import REDACTED

T0 = 1_700_000_000.0
SECRET = 'hunter2-very-secret'


class StopLoop(Exception):
    pass


def make_call(cid, service='demo.echo', started_at=T0, **fields):
    values = dict(worker=1, duration_ms=12.5, status=200, request='{"a": 1}', response='{"b": 2}')
    values.update(fields)
    return Call(cid, service, started_at=started_at, **values)


def store_warnings(caplog, level=logging.WARNING):
    return [record.getMessage() for record in caplog.records
            if record.name == 'zato_daemon.diagnostics' and record.levelno == level]


@pytest.fixture
def make_store(db, clock):
    stores = []

    def make(**options):
        options.setdefault('clock', clock)
        store = DiagnosticsStore(options.pop('path', db), **options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store._disconnect()


@pytest.fixture
def created(make_store):
    """The database exists, holding one slow call ('first'), and its writer is gone."""
    first = make_store()
    first.record_slow(make_call('first'))
    assert first.flush()
    first._disconnect()


@pytest.fixture
def lock(db, created):
    """Holds the database's write lock from another connection, as a busy worker would."""
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute('BEGIN EXCLUSIVE')
    yield connection
    if connection.in_transaction:
        connection.execute('ROLLBACK')
    connection.close()


@pytest.fixture
def counted_connects(monkeypatch):
    """Counts every sqlite3.connect the store module makes."""
    calls = []
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):
        calls.append(args)
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(store_module.sqlite3, 'connect', connect)
    return calls


def cids(rows):
    return [row['cid'] for row in rows]


# ---- the request path

def test_nothing_is_opened_before_the_first_flush(make_store, db, counted_connects):
    store = make_store()
    for number in range(10_000):
        store.record_slow(make_call(f'c{number}'))
        store.record_sample(make_call(f's{number}'))
    assert counted_connects == []
    assert store.connection is None
    assert not db.parent.exists()


def test_records_never_touch_sqlite_while_the_database_is_locked(make_store, db, counted_connects, lock):
    store = make_store(busy_timeout=0.01)
    counted_connects.clear()
    for number in range(10_000):
        store.record_slow(make_call(f'c{number}'))
    assert counted_connects == []
    # Bounded: the newest max_queued stay, the rest is counted.
    assert store.pending == store_module.MAX_QUEUED
    assert store.dropped == 10_000 - store_module.MAX_QUEUED


def test_a_full_queue_drops_the_oldest_and_says_so(make_store, db, caplog):
    store = make_store(max_queued=10)
    for number in range(25):
        store.record_slow(make_call(f'c{number}', started_at=T0 + number))
    assert (store.pending, store.dropped) == (10, 15)
    assert store.flush()
    assert cids(list_slow(db)) == [f'c{number}' for number in range(24, 14, -1)]
    [warning] = store_warnings(caplog)
    assert 'queue of 10 was full' in warning and 'since the last report: 15' in warning


# ---- batching, the database's settings

def test_flush_writes_the_batch_into_a_wal_database_in_the_state_dir(make_store, db):
    store = make_store()
    store.record_slow(make_call('slow-1'))
    store.record_sample(make_call('sample-1'))
    assert store.flush() and store.pending == 0
    connection = store.connection
    assert connection.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
    assert connection.execute('PRAGMA synchronous').fetchone()[0] == 1       # NORMAL
    assert connection.execute('PRAGMA busy_timeout').fetchone()[0] == 100
    assert connection.execute('PRAGMA auto_vacuum').fetchone()[0] == 2       # INCREMENTAL
    assert connection.execute('PRAGMA user_version').fetchone()[0] == store_module.SCHEMA_VERSION
    assert cids(list_slow(db)) == ['slow-1']
    assert cids(list_samples(db, 'demo.echo')) == ['sample-1']
    indexes = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert indexes == {'slow_responses_service_started_at', 'samples_service_started_at'}


def test_the_file_is_0640_whatever_the_umask_and_so_are_its_wal_and_shm(make_store, db):
    old_umask = os.umask(0o077)
    try:
        store = make_store()
        store.record_slow(make_call('c'))
        assert store.flush()
    finally:
        os.umask(old_umask)
    for suffix in ('', '-wal', '-shm'):
        assert stat.S_IMODE(os.stat(f'{db}{suffix}').st_mode) == 0o640, suffix


@pytest.mark.skipif(os.geteuid() != 0, reason='giving a file to another group needs root (or membership)')
def test_the_file_belongs_to_the_group_of_the_state_dir(make_store, db):
    db.parent.mkdir()
    os.chown(db.parent, -1, 4321)
    store = make_store()
    store.record_slow(make_call('c'))
    assert store.flush()
    assert os.stat(db).st_gid == 4321


def test_run_flushes_after_each_sleep(make_store, db):
    store = make_store(batch_interval=0.25)
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        if len(slept) == 3:
            raise StopLoop
        store.record_slow(make_call(f'c{len(slept)}', started_at=T0 + len(slept)))

    with pytest.raises(StopLoop):
        store.run(sleep)
    assert slept == [0.25, 0.25, 0.25]
    assert cids(list_slow(db)) == ['c2', 'c1']


def test_close_writes_what_is_left(make_store, db):
    store = make_store()
    store.record_sample(make_call('last'))
    store.close()
    assert store.connection is None
    assert cids(list_samples(db, 'demo.echo')) == ['last']


# ---- retention

def test_retention_keeps_the_newest_per_service_and_table(make_store, db):
    store = make_store(slow_keep=3, samples_keep=2)
    # Out of order inside a batch and across batches: start time decides, not arrival.
    for batch in ((5, 1, 9, 3), (2, 8), (7, 4, 6, 0)):
        for second in batch:
            store.record_slow(make_call(f'a{second}', 'svc.a', T0 + second))
            store.record_slow(make_call(f'b{second}', 'svc.b', T0 + second))
            store.record_sample(make_call(f'a{second}', 'svc.a', T0 + second))
        assert store.flush()
    store.record_slow(make_call('c0', 'svc.c', T0))
    assert store.flush()
    assert cids(list_slow(db, 'svc.a')) == ['a9', 'a8', 'a7']
    assert cids(list_slow(db, 'svc.b')) == ['b9', 'b8', 'b7']
    assert cids(list_slow(db, 'svc.c')) == ['c0']
    assert cids(list_samples(db, 'svc.a')) == ['a9', 'a8']
    rows = store.connection.execute('SELECT COUNT(*) FROM slow_responses').fetchone()[0]
    assert rows == 7


def test_a_burst_in_one_batch_writes_only_what_retention_keeps(make_store, db):
    store = make_store(slow_keep=3, max_queued=10_000)
    for number in range(10_000):
        store.record_slow(make_call(f'c{number}', started_at=T0 + number))
    assert store.flush()
    # 3 inserts, no deletes: the batch was cut in memory before it reached SQLite.
    assert store.connection.total_changes == 3
    assert cids(list_slow(db)) == ['c9999', 'c9998', 'c9997']


def test_lowered_limits_apply_to_every_service_at_the_next_start(make_store, db):
    store = make_store(slow_keep=10)
    for second in range(5):
        store.record_slow(make_call(f'a{second}', 'svc.a', T0 + second))
        store.record_slow(make_call(f'b{second}', 'svc.b', T0 + second))
    assert store.flush()
    store.close()
    restarted = make_store(slow_keep=2)
    restarted.record_slow(make_call('other', 'svc.other'))
    assert restarted.flush()
    assert cids(list_slow(db, 'svc.a')) == ['a4', 'a3']
    assert cids(list_slow(db, 'svc.b')) == ['b4', 'b3']


def test_the_database_stays_under_max_db_bytes(make_store, db):
    limit = MIN_DB_BYTES * 2
    store = make_store(slow_keep=100_000, max_db_bytes=limit)
    payload = 'x' * 3000
    second = 0
    for _ in range(40):
        for number in range(40):
            second += 1
            store.record_slow(make_call(f'c{second}', f'svc.{number % 7}', T0 + second, request=payload,
                                        response=payload))
        assert store.flush()
        connection = store.connection
        size = (connection.execute('PRAGMA page_count').fetchone()[0]
                * connection.execute('PRAGMA page_size').fetchone()[0])
        assert size <= limit
    # About 10 MB went in; the newest calls are the ones kept.
    kept = list_slow(db, limit=100_000)
    assert 20 < len(kept) < 1600
    assert kept[0]['cid'] == f'c{second}'
    assert 'c1' not in cids(kept)
    store.close()
    assert os.path.getsize(db) <= limit


def test_the_file_really_shrinks_when_the_bound_is_lowered(make_store, db):
    store = make_store(slow_keep=100_000, max_db_bytes=4 * MIN_DB_BYTES)
    for number in range(300):
        store.record_slow(make_call(f'c{number}', started_at=T0 + number, request='x' * 3000))
    assert store.flush()
    store.close()
    assert os.path.getsize(db) > 2 * MIN_DB_BYTES
    restarted = make_store(slow_keep=100_000, max_db_bytes=MIN_DB_BYTES)
    restarted.record_slow(make_call('newest', started_at=T0 + 1000))
    assert restarted.flush()
    restarted.close()
    assert os.path.getsize(db) <= MIN_DB_BYTES
    assert list_slow(db)[0]['cid'] == 'newest'


def test_the_store_caps_what_the_caller_did_not(make_store, db):
    store = make_store()
    store.record_slow(make_call('big', request='y' * (store_module.MAX_TEXT_CHARS + 10)))
    assert store.flush()
    [row] = list_slow(db)
    assert row['request'].endswith('... (10 more characters)')


# ---- failures never reach the caller

def test_a_locked_database_makes_flush_give_up_with_one_warning(make_store, db, lock, clock, caplog):
    caplog.set_level(logging.INFO, logger='zato_daemon.diagnostics')
    store = make_store(busy_timeout=0.01)
    store.record_slow(make_call('queued'))
    # It returns (after the busy timeout, by SQLite's design), keeps the batch, and warns once.
    assert store.flush() is False
    assert store.flush() is False
    assert store.pending == 1
    [warning] = store_warnings(caplog)
    assert 'write lock' in warning and 'Services keep answering' in warning
    clock.now += store_module.WARNING_INTERVAL
    assert store.flush() is False
    assert len(store_warnings(caplog)) == 2
    lock.execute('ROLLBACK')
    assert store.flush() is True
    assert cids(list_slow(db)) == ['queued', 'first']
    [info] = store_warnings(caplog, logging.INFO)
    assert 'available again after 3 failed attempts' in info


def test_close_under_a_lock_gives_up_and_says_what_was_lost(make_store, lock, caplog):
    store = make_store(busy_timeout=0.01)
    store.record_slow(make_call('lost'))
    store.close()
    assert store.pending == 0 and store.connection is None
    assert 'records not written at close: 1' in store_warnings(caplog)[-1]


def test_a_corrupt_file_warns_keeps_the_batch_and_recovers_once_moved_aside(make_store, db, caplog):
    db.parent.mkdir()
    db.write_bytes(b'this is not a database\x00' * 512)
    store = make_store()
    store.record_slow(make_call('kept'))
    assert store.flush() is False
    assert store.pending == 1
    [warning] = store_warnings(caplog)
    assert 'not a SQLite database' in warning and 'move it aside' in warning
    with pytest.raises(DiagnosticsReadError, match='not a database'):
        list_slow(db)
    db.rename(db.with_suffix('.corrupt'))
    assert store.flush() is True
    assert cids(list_slow(db)) == ['kept']


def test_a_record_that_is_not_a_call_is_dropped_and_the_rest_written(make_store, db, caplog):
    store = make_store()
    store.record_slow('not a call')
    store.record_slow(make_call('fine'))
    assert store.flush() is True
    assert cids(list_slow(db)) == ['fine']
    [error] = store_warnings(caplog, logging.ERROR)
    assert '1 records that are not Calls' in error


def test_a_bug_while_writing_drops_the_batch_instead_of_raising(make_store, db, monkeypatch, caplog):
    store = make_store()
    monkeypatch.setattr(store_module, '_trim_service', lambda *args: 1 / 0)
    store.record_slow(make_call('doomed'))
    assert store.flush() is True
    assert store.pending == 0
    assert 'dropped a batch of 1 records' in store_warnings(caplog, logging.ERROR)[0]


def test_limits_are_validated():
    with pytest.raises(ValueError, match='slow_keep'):
        DiagnosticsStore('x', slow_keep=0)
    with pytest.raises(ValueError, match='max_db_bytes'):
        DiagnosticsStore('x', max_db_bytes=MIN_DB_BYTES - 1)


# ---- reading

def test_rows_have_stable_keys_newest_first(make_store, db):
    store = make_store()
    store.record_slow(make_call('old', started_at=T0, worker=2, duration_ms=1234.56789, status=500,
                                response=None, error='ValueError: no'))
    store.record_slow(make_call('new', started_at=T0 + 1.5))
    assert store.flush()
    rows = list_slow(db)
    assert [tuple(row) for row in rows] == [ROW_KEYS, ROW_KEYS]
    assert rows[1] == {'cid': 'old', 'service': 'demo.echo', 'worker': 2, 'started_at': '2023-11-14T22:13:20.000Z',
                       'duration_ms': 1234.568, 'status': 500, 'request': '{"a": 1}', 'response': None,
                       'error': 'ValueError: no'}
    assert rows[0]['started_at'] == '2023-11-14T22:13:21.500Z'


def test_listing_filters_by_service_time_and_count(make_store, db):
    store = make_store()
    for second in range(6):
        store.record_slow(make_call(f'a{second}', 'svc.a', T0 + second))
        store.record_slow(make_call(f'b{second}', 'svc.b', T0 + second))
    assert store.flush()
    assert cids(list_slow(db, limit=3)) == ['b5', 'a5', 'b4']
    assert cids(list_slow(db, 'svc.a', since=T0 + 4)) == ['a5', 'a4']
    since = datetime.fromtimestamp(T0 + 4, timezone.utc)
    assert cids(list_slow(db, 'svc.b', since=since)) == ['b5', 'b4']
    assert cids(list_slow(db, 'svc.b', since=since.replace(tzinfo=None))) == ['b5', 'b4']
    assert cids(list_slow(db, 'svc.b', since='2023-11-14T22:13:24Z')) == ['b5', 'b4']
    assert cids(list_slow(db, 'svc.b', since='2023-11-14 23:13:24+01:00')) == ['b5', 'b4']
    with pytest.raises(ValueError):
        list_slow(db, since='yesterday')
    assert list_samples(db, 'svc.a') == []


def test_a_missing_or_just_created_database_reads_as_empty(db):
    assert list_slow(db) == []
    db.parent.mkdir()
    db.touch()
    assert list_slow(db) == [] and list_samples(db, 'any') == []


def test_reading_works_while_a_writer_holds_the_lock(make_store, db, lock):
    assert cids(list_slow(db)) == ['first']


# ---- what is stored is redacted

def test_secrets_are_redacted_before_they_reach_the_file(make_store, db):
    store = make_store()
    request = render_payload({'user': 'alice', 'password': SECRET, 'items': [{'api_key': SECRET}]}, 4096)
    response = render_payload(f'{{"token": "{SECRET}", "ok": true}}'.encode(), 4096)
    store.record_slow(make_call('one', request=request, response=response))
    # A caller that passes the payload itself still stores no secret.
    store.record_sample(make_call('two', request={'Authorization': SECRET}, response=[{'secret': SECRET}]))
    assert store.flush()
    [slow] = list_slow(db)
    [sample] = list_samples(db, 'demo.echo')
    assert slow['request'] == f'{{"items": [{{"api_key": "{REDACTED}"}}], "password": "{REDACTED}", "user": "alice"}}'
    assert slow['response'] == f'{{"ok": true, "token": "{REDACTED}"}}'
    assert sample['request'] == f'{{"Authorization": "{REDACTED}"}}'
    store.close()
    for suffix in ('', '-wal'):
        if os.path.exists(f'{db}{suffix}'):
            assert SECRET.encode() not in open(f'{db}{suffix}', 'rb').read()


def test_render_payload_caps_and_leaves_plain_text_alone():
    assert render_payload('plain text', 100) == '"plain text"'
    assert render_payload({'a': 'x' * 50}, 20) == '{"a": "xxxxxxxxxxxxx... (39 more characters)'
    assert render_payload('{not json', 100) == '"{not json"'


def test_json_text_too_large_to_parse_is_redacted_before_it_is_cut(monkeypatch):
    monkeypatch.setattr(redaction, 'MAX_PARSED', 10)
    rendered = render_payload('{"password": "%s", "pad": "%s"}' % (SECRET, 'x' * 100), 30)
    assert SECRET not in rendered and REDACTED in rendered


# ---- helpers for the request path

def test_describe_error_names_the_exception_and_the_last_frames():
    def inner():
        raise ValueError('bad input')

    def outer():
        inner()

    try:
        outer()
    except ValueError as exc:
        text = describe_error(exc, frames=2)
    lines = text.splitlines()
    assert lines[0] == 'ValueError: bad input'
    assert [line.rsplit(' in ', 1)[1] for line in lines[1:]] == ['outer', 'inner']


def test_the_sampler_keeps_one_call_per_interval_per_service_and_failures_apart():
    now = [100.0]
    sampler = Sampler(interval=1.0, clock=lambda: now[0])
    due = []
    for _ in range(5):
        due.append(sampler.is_due('a'))
        now[0] += 0.3
    assert due == [True, False, False, False, True]
    assert sampler.is_due('b') is True
    assert sampler.is_due('a', failed=True) is True
    assert sampler.is_due('a', failed=True) is False
    every_call = Sampler(interval=0, clock=lambda: now[0])
    assert all(every_call.is_due('a') for _ in range(5))
    with pytest.raises(ValueError):
        Sampler(interval=-1)
