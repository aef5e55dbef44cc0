"""A worker's caches: create, look up, list, and staying in step with other workers.

Two registries on one state directory stand for two workers; `poll()` is what their
background greenlets call every 50 ms.
"""

import logging

import pytest

from zato_daemon.cache.definition import CacheDefinition, CacheError
from zato_daemon.cache.registry import CacheRegistry

SYNCED = {'name': 'shared', 'sync_method': 'in-background'}


@pytest.fixture
def workers(tmp_path, clock):
    """Two registries of one server run, sharing the state dir and the clock."""
    registries = [CacheRegistry(tmp_path, clock=clock, boot_id='boot-1') for _ in range(2)]
    yield registries
    for registry in registries:
        registry.close()


def poll_all(registries):
    for registry in registries:
        registry.poll()


# ---- one registry

def test_a_registry_starts_with_a_default_per_worker_cache(tmp_path):
    registry = CacheRegistry(tmp_path)
    assert registry.default.name == 'default'
    assert registry.default.definition.sync_method == 'no-sync'
    assert registry.names() == ['default']


def test_create_is_idempotent_for_an_identical_definition(tmp_path):
    registry = CacheRegistry(tmp_path)
    first = registry.create(SYNCED)
    assert registry.create(CacheDefinition(**SYNCED)) is first
    assert registry['shared'] is first


def test_a_different_definition_under_a_taken_name_is_refused(tmp_path):
    registry = CacheRegistry(tmp_path)
    registry.create(SYNCED)
    with pytest.raises(CacheError, match=r"cache 'shared' already exists with a different definition "
                                         r"\(requested vs existing: max_size: 5 vs 10000\)"):
        registry.create(dict(SYNCED, max_size=5))


def test_zatos_get_cache_spelling(tmp_path):
    registry = CacheRegistry(tmp_path)
    cache = registry.create(SYNCED)
    assert registry.get_cache('builtin', 'shared') is cache
    with pytest.raises(CacheError, match="cache_type: expected 'builtin', got 'memcached'"):
        registry.get_cache('memcached', 'shared')


def test_is_default_makes_a_cache_the_default(tmp_path):
    registry = CacheRegistry(tmp_path)
    registry.create({'name': 'main', 'is_default': True, 'sync_method': 'no-sync'})
    assert registry.default.name == 'main'
    assert 'default' in registry


def test_unknown_and_inactive_caches_are_clear_errors(tmp_path):
    registry = CacheRegistry(tmp_path)
    registry.create({'name': 'off', 'is_active': False, 'sync_method': 'no-sync'})
    with pytest.raises(CacheError, match=r"no cache named 'nope'; there are: default, off"):
        registry['nope']
    with pytest.raises(CacheError, match="cache 'off' is not active"):
        registry.get('off')


def test_list_gives_definitions_and_sizes(tmp_path):
    registry = CacheRegistry(tmp_path)
    registry.create(SYNCED).set('k', 'v')
    listed = {item['name']: item for item in registry.list()}
    assert listed['shared']['size'] == 1 and listed['shared']['sync_method'] == 'in-background'
    assert listed['default']['size'] == 0


def test_without_a_state_dir_shared_caches_are_refused():
    registry = CacheRegistry(None)
    registry.create({'name': 'memory', 'sync_method': 'no-sync'}).set('k', 1)
    with pytest.raises(CacheError, match='need a state directory'):
        registry.create(SYNCED)


def test_run_polls_between_sleeps(tmp_path):
    registry = CacheRegistry(tmp_path)
    polls, sleeps = [], []
    registry.poll = lambda: polls.append(1)

    def sleep(interval):
        sleeps.append(interval)
        if len(sleeps) == 3:
            raise StopIteration

    with pytest.raises(StopIteration):
        registry.run(sleep, 0.05)
    assert len(polls) == 3 and sleeps == [0.05] * 3


def test_poll_never_raises(tmp_path, caplog):
    registry = CacheRegistry(tmp_path)

    def broken(position):
        raise RuntimeError('bug')

    registry.store.read_changes = broken
    registry.poll()
    registry.poll()
    errors = [record for record in caplog.records if record.name == 'zato_daemon.cache']
    assert len(errors) == 1 and errors[0].levelno == logging.ERROR and 'bug' in errors[0].exc_text


# ---- several workers

def test_in_background_changes_reach_the_other_worker(workers):
    one, two = workers
    for registry in workers:
        registry.create(SYNCED)
    one['shared'].set('k', {'v': 1})
    assert 'k' not in two['shared']
    two.poll()
    assert two['shared'].get('k') == {'v': 1}
    two['shared'].delete('k')
    one.poll()
    assert 'k' not in one['shared']
    two['shared'].set('a', 1)
    two['shared'].set('b', 2)
    one.poll()
    assert one['shared'].clear() == 2
    two.poll()
    assert len(two['shared']) == 0


def test_a_cache_created_in_one_worker_is_created_in_the_others(workers):
    one, two = workers
    one.create(dict(SYNCED, max_size=7)).set('k', 'v')
    one.create({'name': 'local', 'sync_method': 'no-sync'}).set('k', 'v')
    two.poll()
    assert two['shared'].definition.max_size == 7
    assert two['shared'].get('k') == 'v'
    # A no-sync cache exists everywhere, but its entries stay in their worker.
    assert 'local' in two and 'k' not in two['local']


def test_a_worker_started_later_gets_every_cache_and_entry(workers, tmp_path, clock):
    one, _ = workers
    one.create(SYNCED).set('k', 'v')
    late = CacheRegistry(tmp_path, clock=clock, boot_id='boot-1')
    assert late['shared'].get('k') == 'v'


@pytest.mark.parametrize('has_polled', [False, True])
def test_another_workers_conflicting_definition_is_refused(workers, has_polled):
    one, two = workers
    one.create(SYNCED)
    if has_polled:
        two.poll()
    with pytest.raises(CacheError, match=r"cache 'shared' is already defined differently by another worker "
                                         r"\(requested vs existing: max_size: 3 vs 10000\)"):
        two.create(dict(SYNCED, max_size=3))
    two.poll()
    assert two['shared'].definition.max_size == 10000


def test_a_newer_generation_may_redefine_a_cache(tmp_path, clock, caplog):
    old = CacheRegistry(tmp_path, clock=clock, boot_id='b', generation=1)
    old.create(SYNCED).set('k', 'v')
    # Started by a reload: it finds the old definition, then its startup asks for another.
    new = CacheRegistry(tmp_path, clock=clock, boot_id='b', generation=2)
    assert new['shared'].definition.max_size == 10000
    new.create(dict(SYNCED, max_size=3))
    assert new['shared'].get('k') == 'v'
    old.poll()
    assert old['shared'].definition.max_size == 3
    assert old['shared'].get('k') == 'v'
    assert 'redefined by another worker' in caplog.text


def test_concurrent_writes_end_with_the_same_value_everywhere(workers):
    one, two = workers
    for registry in workers:
        registry.create(SYNCED)
    one['shared'].set('k', 'first')
    two['shared'].set('k', 'second')        # neither has polled: both wrote blind
    poll_all(workers)
    assert one['shared'].get('k') == two['shared'].get('k') == 'second'


def test_a_delete_beats_an_older_write_it_had_not_seen(workers):
    one, two = workers
    for registry in workers:
        registry.create(SYNCED)
    one['shared'].set('k', 'v')
    assert two['shared'].delete('k') is False      # not seen here yet, still deleted everywhere
    poll_all(workers)
    assert 'k' not in one['shared'] and 'k' not in two['shared']


def test_evictions_keep_every_worker_on_the_same_keys(workers):
    one, two = workers
    for registry in workers:
        registry.create(dict(SYNCED, max_size=2))
    one['shared'].set('a', 1)
    one['shared'].set('b', 2)
    two.poll()
    two['shared'].get('a')
    two['shared'].set('c', 3)                       # evicts b, the LRU in this worker
    one.poll()
    assert one['shared'].keys() == two['shared'].keys() == ['a', 'c']


def test_writers_that_overshoot_max_size_together_converge(workers):
    one, two = workers
    for registry in workers:
        registry.create(dict(SYNCED, max_size=2))
    one['shared'].set('a', 1)
    two['shared'].set('b', 2)
    one['shared'].set('c', 3)
    two['shared'].set('d', 4)
    for _ in range(2):
        poll_all(workers)
    keys = one['shared'].keys()
    assert keys == two['shared'].keys()
    assert 1 <= len(keys) <= 2


def test_an_extension_on_get_reaches_the_other_worker(workers, clock):
    one, two = workers
    for registry in workers:
        registry.create(SYNCED)
    one['shared'].set('k', 'v', expiry=10)
    two.poll()
    clock.advance(9.99)
    assert one['shared'].get('k') == 'v'           # extended to now + 10 here
    clock.advance(0.02)
    assert 'k' not in two['shared']                # the extension has not arrived yet
    poll_all(workers)
    assert two['shared'].get('k') == 'v'
    clock.advance(9.9)
    assert 'k' in two['shared']


def test_no_sync_caches_do_not_touch_the_database(workers):
    one, two = workers
    for registry in workers:
        registry.create({'name': 'local', 'sync_method': 'no-sync'})
    one['local'].set('k', 'v')
    two.poll()
    assert 'k' not in two['local']
    assert one.store.connection.execute("SELECT COUNT(*) FROM cache_entries").fetchone()[0] == 0


# ---- persistence across restarts

def test_a_sql_cache_survives_a_restart_and_others_do_not(tmp_path, clock):
    first = CacheRegistry(tmp_path, clock=clock, boot_id='run-1')
    first.create(dict(SYNCED, name='disk', persistent_storage='sql')).set('k', 'kept')
    first.create(SYNCED).set('k', 'lost')
    first.close()
    second = CacheRegistry(tmp_path, clock=clock, boot_id='run-2')
    # A restart forgets definitions: the caches exist again once created again.
    assert second.names() == ['default']
    assert second.create(dict(SYNCED, name='disk', persistent_storage='sql')).get('k') == 'kept'
    assert 'k' not in second.create(SYNCED)


def test_a_respawned_worker_keeps_in_memory_in_background_caches(tmp_path, clock):
    first = CacheRegistry(tmp_path, clock=clock, boot_id='run-1')
    first.create(SYNCED).set('k', 'v')
    first.close()
    respawned = CacheRegistry(tmp_path, clock=clock, boot_id='run-1')
    assert respawned['shared'].get('k') == 'v'


def test_no_sync_sql_caches_persist_per_key_last_write(tmp_path, clock):
    definition = {'name': 'disk', 'sync_method': 'no-sync', 'persistent_storage': 'sql'}
    first = CacheRegistry(tmp_path, clock=clock, boot_id='run-1')
    first.create(definition).set('k', 'v')
    first.close()
    second = CacheRegistry(tmp_path, clock=clock, boot_id='run-2')
    assert second.create(definition).get('k') == 'v'


def test_expired_entries_do_not_come_back_after_a_restart(tmp_path, clock):
    disk = dict(SYNCED, name='disk', persistent_storage='sql')
    first = CacheRegistry(tmp_path, clock=clock, boot_id='run-1')
    first.create(disk).set('short', 1, expiry=5)
    first['disk'].set('long', 2, expiry=500)
    first.close()
    clock.advance(10)
    second = CacheRegistry(tmp_path, clock=clock, boot_id='run-2')
    assert second.create(disk).keys() == ['long']


def test_lru_order_survives_a_restart(tmp_path, clock):
    disk = {'name': 'disk', 'sync_method': 'no-sync', 'persistent_storage': 'sql', 'max_size': 3}
    first = CacheRegistry(tmp_path, clock=clock, boot_id='run-1')
    cache = first.create(disk)
    for key in ('a', 'b', 'c'):
        clock.advance(1)
        cache.set(key, key)
    clock.advance(1)
    cache.get('a')                                  # written at the next poll
    first.poll()
    first.close()
    second = CacheRegistry(tmp_path, clock=clock, boot_id='run-2')
    # Restarted with room for two: the least recently used one, b, goes.
    assert second.create(dict(disk, max_size=2)).keys() == ['c', 'a']
