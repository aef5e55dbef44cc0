"""The cache database deleted or replaced while the server runs: every worker ends on one file.

Registries on one state directory stand for workers; `poll()` is their 50 ms greenlet. A
store looks at its path at most once a second of the (hand-moved) clock.
"""

import logging
import sqlite3

import pytest

from zato_daemon.cache.definition import CacheDefinition
from zato_daemon.cache.lru import EVICT, PENDING, SET, Entry
from zato_daemon.cache.registry import CacheRegistry
from zato_daemon.cache.shared import DATABASE_NAME, REPUBLISH, Op, _names_an_old_version
from zato_daemon.sqlite_file import CHECK_INTERVAL
from zato_daemon.logs.levels import RUNTIME_REPAIRED

SYNCED = {'name': 'shared', 'sync_method': 'in-background'}


@pytest.fixture
def make_worker(tmp_path, clock):
    registries = []

    def make():
        registry = CacheRegistry(tmp_path, clock=clock, boot_id='boot-1')
        registries.append(registry)
        return registry

    yield make
    for registry in registries:
        registry.close()


@pytest.fixture
def workers(make_worker):
    """Two workers with a synchronised cache, whose entries carry versions well past 1."""
    registries = [make_worker() for _ in range(2)]
    for registry in registries:
        registry.create(SYNCED)
    for number in range(30):
        registries[0]['shared'].set('k', f'old {number}')
    registries[1].poll()
    assert registries[1]['shared'].get('k') == 'old 29'
    return registries


def messages(caplog, level):
    return [record for record in caplog.records if record.name == 'zato_daemon.cache' and record.levelno == level]


def delete_database(tmp_path, clock):
    (tmp_path / DATABASE_NAME).unlink()
    clock.advance(CHECK_INTERVAL)


def test_a_worker_that_noticed_first_and_wrote_is_followed_by_the_other(workers, tmp_path, clock, caplog):
    caplog.set_level(logging.INFO, 'zato_daemon.cache')
    one, two = workers
    delete_database(tmp_path, clock)
    one.poll()
    # Change ids start again at 1 in the new file: the other worker's old versions are higher.
    one['shared'].set('k', 'new')
    two.poll()
    assert two['shared'].get('k') == 'new'
    two['shared'].set('k', 'newer')
    one.poll()
    assert one['shared'].get('k') == 'newer'
    [warning] = messages(caplog, logging.WARNING)
    assert warning.getMessage() == (
        f'Cache database {tmp_path / DATABASE_NAME} was deleted while the server ran; every worker moves to a new '
        'one created at that path within seconds, and reloads its in-background caches from it. The entries '
        'stored before are gone, and so are changes a worker made in the second before it moved')
    assert warning.message_id == RUNTIME_REPAIRED.message_id
    [info] = messages(caplog, logging.INFO)
    assert 'this worker now uses the file there' in info.getMessage()


def test_the_entries_of_the_deleted_file_are_gone_everywhere(workers, tmp_path, clock):
    one, two = workers
    delete_database(tmp_path, clock)
    one.poll()
    two.poll()
    assert 'k' not in one['shared'] and 'k' not in two['shared']


def test_two_workers_noticing_at_once_share_one_new_file(workers, tmp_path, clock, caplog):
    one, two = workers
    delete_database(tmp_path, clock)
    one.poll()
    two.poll()
    one['shared'].set('a', 1)
    two['shared'].set('b', 2)
    one.poll()
    two.poll()
    for registry in workers:
        assert (registry['shared'].get('a'), registry['shared'].get('b')) == (1, 2)
    assert len(messages(caplog, logging.WARNING)) == 1


def test_a_worker_that_wrote_to_the_deleted_file_before_noticing_loses_that_write(workers, tmp_path, clock):
    """The documented window: at most a second of one worker's writes."""
    one, two = workers
    delete_database(tmp_path, clock)
    one.poll()
    one['shared'].set('k', 'in the new file')
    two['shared'].set('k', 'in the deleted file')
    two.poll()
    assert two['shared'].get('k') == one['shared'].get('k') == 'in the new file'


def test_a_worker_started_after_the_deletion_meets_the_old_ones(workers, make_worker, tmp_path, clock, caplog):
    one, two = workers
    one.create({'name': 'made.by.admin', 'sync_method': 'in-background'})
    two.poll()
    (tmp_path / DATABASE_NAME).unlink()
    # A respawned worker: it finds the deleted file's sidecars and no file, and reports.
    late = make_worker()
    late.create(SYNCED)
    assert len(messages(caplog, logging.WARNING)) == 1
    clock.advance(CHECK_INTERVAL)
    one.poll()
    two.poll()
    late.poll()
    # The cache only the old workers knew of is defined again, for the new worker too.
    assert 'made.by.admin' in late
    late['made.by.admin'].set('x', 1)
    one.poll()
    two.poll()
    assert one['made.by.admin'].get('x') == two['made.by.admin'].get('x') == 1
    assert len(messages(caplog, logging.WARNING)) == 1


def test_changes_queued_at_the_switch_reach_the_new_file_after_their_definitions(workers, tmp_path, clock):
    """A set queued while the database failed: written to the new file, and not deleted by the
    (re)definition of its cache there, which starts a new cache empty."""
    one, two = workers
    one.store.failures = 1  # failing: a set queues instead of writing
    one['shared'].set('queued', 'kept')
    assert one.store.outbox
    delete_database(tmp_path, clock)
    one.poll()
    assert one['shared'].get('queued') == 'kept'
    two.poll()
    assert two['shared'].get('queued') == 'kept'
    late = CacheRegistry(tmp_path, clock=clock, boot_id='boot-1')
    assert late['shared'].get('queued') == 'kept'
    late.close()


def test_an_eviction_queued_at_the_switch_does_not_remove_a_newer_entry(workers, tmp_path, clock):
    """An eviction names the version it evicted; a version of the deleted file means another
    entry in the new one, where ids start again."""
    one, two = workers
    small = dict(SYNCED, name='small', max_size=2)
    one.create(small)
    two.create(small)
    one['small'].set('x', 'old')
    one['small'].set('a', 'old')
    two.poll()
    one.store.failures = 1
    # Queued: the set of b, and the eviction of x (version from the deleted file).
    one['small'].set('b', 'queued')
    delete_database(tmp_path, clock)
    two.poll()
    two['small'].set('x', 'new')
    one.poll()
    two.poll()
    for registry in workers:
        assert sorted(registry['small'].keys()) == ['b', 'x']
        assert registry['small'].get('x') == 'new'


def test_a_replaced_file_is_used_by_every_worker(workers, tmp_path, clock, caplog):
    one, two = workers
    replacement = CacheRegistry(tmp_path / 'elsewhere', clock=clock, boot_id='boot-1')
    replacement.create(SYNCED).set('k', 'from the replacement')
    replacement.close()
    (tmp_path / 'elsewhere' / DATABASE_NAME).rename(tmp_path / DATABASE_NAME)
    clock.advance(CHECK_INTERVAL)
    one.poll()
    two.poll()
    assert one['shared'].get('k') == two['shared'].get('k') == 'from the replacement'
    one['shared'].set('k', 'after')
    two.poll()
    assert two['shared'].get('k') == 'after'
    [warning] = messages(caplog, logging.WARNING)
    assert 'was deleted or replaced while the server ran; every worker moves to the file now at that path' in (
        warning.getMessage())
    connection = sqlite3.connect(tmp_path / DATABASE_NAME)
    assert connection.execute('PRAGMA integrity_check').fetchall() == [('ok',)]
    connection.close()


def test_nothing_happens_while_the_file_is_the_same(workers, clock, caplog):
    one, _ = workers
    clock.advance(CHECK_INTERVAL)
    assert one.store.check_file() is False
    assert not one.store.needs_reload and messages(caplog, logging.WARNING) == []


def test_republished_definitions_go_first_and_losing_them_is_no_error(workers, tmp_path, clock, caplog):
    one, two = workers
    one.store.failures = 1
    one['shared'].set('q', 1)
    delete_database(tmp_path, clock)
    assert one.store.check_file()
    # check_file opened the new file; republishing comes from the registry's poll.
    one.store.republish([one['shared'].definition], 0)
    assert [op.kind for op in one.store.outbox] == [REPUBLISH, SET]
    # A definition stored first by another worker of a newer generation wins quietly.
    two.generation = 1
    two.store.check_file()
    two.store.republish([CacheDefinition(**dict(SYNCED, max_size=5))], 1)
    assert two.store.flush()
    assert one.store.flush()
    assert one.store.conflicts == []
    assert messages(caplog, logging.ERROR) == []


class _Definition:
    def __init__(self, is_synced):
        self.is_synced = is_synced


class _Cache:
    def __init__(self, is_synced):
        self.definition = _Definition(is_synced)


@pytest.mark.parametrize('kind, is_synced, version, expected', [
    (EVICT, True, 17, True),         # names version 17 of the old file
    (EVICT, True, PENDING, False),   # its set is queued too and gets a new id first
    (EVICT, False, 0, False),        # unsynchronised: deleted by key, no version
    (SET, True, 17, False),          # a set is written with a new id
])
def test_which_queued_changes_name_an_old_version(kind, is_synced, version, expected):
    op = Op(_Cache(is_synced), kind, 'k', Entry('1', version=version))
    assert _names_an_old_version(op) is expected
