"""The cache database: its settings, a locked or missing database, pruning, restarts."""

import logging
import sqlite3

import pytest

from zato_daemon.cache import shared
from zato_daemon.cache.registry import PRUNE_INTERVAL, CacheRegistry
from zato_daemon.cache.shared import DATABASE_NAME, LOG_RETENTION

SYNCED = {'name': 'shared', 'sync_method': 'in-background'}


def cache_warnings(caplog):
    return [record.getMessage() for record in caplog.records
            if record.name == 'zato_daemon.cache' and record.levelno >= logging.WARNING]


@pytest.fixture
def lock(tmp_path):
    """Takes the database's write lock from another connection, as a busy worker would."""
    connection = sqlite3.connect(tmp_path / DATABASE_NAME, isolation_level=None)

    class Lock:
        def take(self):
            connection.execute('BEGIN IMMEDIATE')

        def release(self):
            connection.execute('COMMIT')

    yield Lock()
    if connection.in_transaction:
        connection.execute('ROLLBACK')
    connection.close()


def test_the_database_is_in_the_state_dir_in_wal_mode(tmp_path):
    registry = CacheRegistry(tmp_path)
    connection = registry.store.connection
    assert registry.store.path == tmp_path / 'caches.sqlite3'
    assert connection.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
    assert connection.execute('PRAGMA synchronous').fetchone()[0] == 1      # NORMAL
    assert connection.execute('PRAGMA busy_timeout').fetchone()[0] == 100


def test_changes_go_to_the_log_and_the_entries_table(tmp_path, clock):
    registry = CacheRegistry(tmp_path, clock=clock)
    registry.create(SYNCED).set('k', [1], expiry=10)
    connection = registry.store.connection
    changes = connection.execute("SELECT op, key, value FROM cache_changes WHERE cache = 'shared'").fetchall()
    assert changes == [('define', None, registry['shared'].definition.to_json()), ('set', 'k', '[1]')]
    entry = connection.execute('SELECT value, expires_at, expiry, version FROM cache_entries').fetchone()
    assert entry == ('[1]', clock() + 10, 10, registry['shared'].entries['k'].version)


def test_a_locked_database_never_fails_a_set(tmp_path, clock, lock, caplog):
    caplog.set_level(logging.INFO, logger='zato_daemon.cache')
    writer = CacheRegistry(tmp_path, clock=clock, busy_timeout=0.01)
    reader = CacheRegistry(tmp_path, clock=clock)
    writer.create(SYNCED)
    reader.create(SYNCED)
    lock.take()
    writer['shared'].set('k', 'v')
    writer['shared'].set('k2', 'v2')
    assert writer['shared'].get('k') == 'v'
    warnings = cache_warnings(caplog)
    assert len(warnings) == 1 and 'database is locked' in warnings[0] and 'queued' in warnings[0]
    writer.poll()
    reader.poll()
    assert 'k' not in reader['shared']
    lock.release()
    writer.poll()
    reader.poll()
    assert reader['shared'].get('k') == 'v' and reader['shared'].get('k2') == 'v2'
    assert len(cache_warnings(caplog)) == 1
    # The first set failed; the second did not wait for the lock again; the poll failed.
    assert 'available again after 2 failed attempts' in caplog.records[-1].getMessage()


def test_a_missing_database_does_not_stop_a_worker(tmp_path, clock, caplog):
    state_dir = tmp_path / 'state'
    state_dir.write_text('a file where the directory should be')
    registry = CacheRegistry(state_dir, clock=clock)
    cache = registry.create(SYNCED)
    cache.set('k', 'v')
    assert cache.get('k') == 'v'
    assert 'unavailable while reading cache definitions (FileExistsError' in cache_warnings(caplog)[0]
    registry.poll()
    # Once the directory can be made, what was queued is written and others see it.
    state_dir.unlink()
    registry.poll()
    other = CacheRegistry(state_dir, clock=clock)
    assert other['shared'].get('k') == 'v'


def test_a_worker_that_fell_behind_the_pruned_log_reloads(tmp_path, clock, caplog):
    writer = CacheRegistry(tmp_path, clock=clock)
    sleeper = CacheRegistry(tmp_path, clock=clock)
    writer.create(SYNCED)
    sleeper.create(SYNCED)
    writer['shared'].set('early', 1)
    writer['shared'].set('gone', 2)
    writer['shared'].delete('gone')
    clock.advance(LOG_RETENTION + PRUNE_INTERVAL)
    writer['shared'].set('late', 3)
    writer.poll()                                   # prunes the first three changes
    count = writer.store.connection.execute('SELECT COUNT(*) FROM cache_changes').fetchone()[0]
    assert count == 1
    sleeper.poll()
    assert sorted(sleeper['shared'].keys()) == ['early', 'late']
    assert any('reloading' in message for message in cache_warnings(caplog))


def test_a_new_boot_forgets_definitions_and_non_persistent_entries(tmp_path, clock):
    first = CacheRegistry(tmp_path, clock=clock, boot_id='one')
    first.create(SYNCED).set('k', 1)
    first.create(dict(SYNCED, name='disk', persistent_storage='sql')).set('k', 2)
    first.close()
    second = CacheRegistry(tmp_path, clock=clock, boot_id='two')
    connection = second.store.connection
    assert connection.execute('SELECT cache, key FROM cache_entries').fetchall() == [('disk', 'k')]
    assert connection.execute('SELECT COUNT(*) FROM cache_definitions').fetchone()[0] == 0
    assert connection.execute('SELECT COUNT(*) FROM cache_changes').fetchone()[0] == 0


def test_a_persistent_cache_redefined_as_volatile_starts_empty(tmp_path, clock):
    first = CacheRegistry(tmp_path, clock=clock, boot_id='one')
    first.create(dict(SYNCED, persistent_storage='sql')).set('k', 1)
    first.close()
    second = CacheRegistry(tmp_path, clock=clock, boot_id='two')
    assert len(second.create(SYNCED)) == 0


def test_a_definition_queued_while_locked_that_lost_is_replaced(tmp_path, clock, lock, caplog):
    late = CacheRegistry(tmp_path, clock=clock, busy_timeout=0.01)
    early = CacheRegistry(tmp_path, clock=clock)
    lock.take()
    late.create(dict(SYNCED, max_size=5))           # queued: the database is locked
    lock.release()
    early.create(SYNCED)
    late.poll()
    assert late['shared'].definition.max_size == 10000
    assert any('using the stored definition' in message for message in cache_warnings(caplog))


def test_a_queue_that_grows_too_long_is_dropped_and_caches_reload(tmp_path, clock, lock, caplog, monkeypatch):
    monkeypatch.setattr(shared, 'MAX_QUEUED', 3)
    writer = CacheRegistry(tmp_path, clock=clock, busy_timeout=0.01)
    writer.create(SYNCED).set('kept', 0)
    lock.take()
    for number in range(5):
        writer['shared'].set(f'k{number}', number)
    assert any('dropped' in message for message in cache_warnings(caplog))
    lock.release()
    writer.poll()
    # The dropped changes are gone here too: this worker agrees with the others again.
    other = CacheRegistry(tmp_path, clock=clock)
    assert writer['shared'].keys() == other['shared'].keys() == ['kept', 'k4']


def test_while_the_database_fails_a_set_does_not_wait_for_the_lock_again(tmp_path, clock, lock):
    writer = CacheRegistry(tmp_path, clock=clock, busy_timeout=0.3)
    cache = writer.create(SYNCED)
    lock.take()
    cache.set('first', 1)                           # waits for the busy timeout once
    attempts = []
    write = writer.store._write
    writer.store._write = lambda: attempts.append(1) or write()
    for number in range(20):
        cache.set(f'k{number}', number)
    # No write attempted, so none waited for the lock (each would hold the worker 0.3 s).
    assert attempts == []
    assert len(writer.store.outbox) == 21


def test_gets_queue_writes_only_for_extensions_and_persistent_recency(tmp_path, clock):
    registry = CacheRegistry(tmp_path, clock=clock)
    plain = registry.create(dict(SYNCED, extend_expiry_on_get=False))
    plain.set('k', 1, expiry=10)
    plain.get('k')
    assert registry.store.uses == {}
    extending = registry.create(dict(SYNCED, name='extending'))
    extending.set('k', 1, expiry=10)
    extending.get('k')
    extending.get('k')
    assert list(registry.store.uses) == [('extending', 'k')]
