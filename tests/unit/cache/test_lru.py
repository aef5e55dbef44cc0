"""One cache in memory: LRU order, size limits, expiry and both extend-expiry flags."""

import math

import pytest

from zato_daemon.cache.definition import CacheDefinition, CacheError
from zato_daemon.cache.lru import PENDING, SYNC_GRACE, Cache, Entry


def make_cache(clock, **fields):
    fields.setdefault('sync_method', 'no-sync')
    return Cache(CacheDefinition(name='c', **fields), clock)


def filled(clock, keys, **fields):
    cache = make_cache(clock, max_size=len(keys), **fields)
    for key in keys:
        cache.set(key, key.upper())
    return cache


# ---- LRU

def test_get_refreshes_recency(clock):
    cache = filled(clock, ['a', 'b', 'c'])
    assert cache.get('a') == 'A'
    cache.set('d', 'D')
    assert cache.keys() == ['c', 'a', 'd']


def test_set_refreshes_recency(clock):
    cache = filled(clock, ['a', 'b', 'c'])
    cache.set('a', 'A2')
    cache.set('d', 'D')
    assert cache.keys() == ['c', 'a', 'd']
    assert cache.get('a') == 'A2'


def test_membership_and_listing_are_not_uses(clock):
    cache = filled(clock, ['a', 'b', 'c'])
    assert 'a' in cache
    assert cache.keys() == ['a', 'b', 'c'] and len(cache) == 3
    cache.set('d', 'D')
    assert 'a' not in cache


def test_max_size_counts_entries(clock):
    cache = make_cache(clock, max_size=2)
    for number in range(10):
        cache.set(str(number), number)
    assert cache.keys() == ['8', '9']


# ---- values and keys

def test_item_size_is_bytes_of_compact_json(clock):
    cache = make_cache(clock, max_item_size=9)
    cache.set('fits', {'a': [1]})           # {"a":[1]} is 9 bytes
    assert cache.get('fits') == {'a': [1]}
    with pytest.raises(CacheError) as info:
        cache.set('big', 'ééé')               # "ééé" is 5 characters, 8 bytes: fits
        cache.set('big', 'éééé')              # 10 bytes
    assert str(info.value) == "cache 'c': value of key 'big' is 10 bytes of JSON, over max_item_size 9"
    assert cache.get('big') == 'ééé'


@pytest.mark.parametrize('value', [{1, 2}, object(), math.nan, b'bytes'])
def test_values_must_be_json(clock, value):
    cache = make_cache(clock)
    with pytest.raises(CacheError, match="cache 'c': value of key 'k' is not JSON-serializable"):
        cache.set('k', value)
    assert 'k' not in cache


def test_each_get_returns_a_fresh_copy(clock):
    cache = make_cache(clock)
    value = {'list': [1, 2]}
    cache.set('k', value)
    value['list'].append(3)
    got = cache.get('k')
    got['list'].append(4)
    assert cache.get('k') == {'list': [1, 2]}


def test_tuples_come_back_as_lists_like_from_another_process(clock):
    cache = make_cache(clock)
    cache.set('k', (1, 2))
    assert cache.get('k') == [1, 2]


def test_keys_are_strings(clock):
    cache = make_cache(clock)
    for method, args in (('set', (1, 'v')), ('get', (1,)), ('delete', (1,))):
        with pytest.raises(CacheError, match="keys are strings, got int 1"):
            getattr(cache, method)(*args)
    assert 1 not in cache


def test_delete_and_clear_report_what_they_removed(clock):
    cache = filled(clock, ['a', 'b', 'c'])
    assert cache.delete('a') is True
    assert cache.delete('a') is False
    assert cache.clear() == 2
    assert len(cache) == 0 and cache.get('b', 'absent') == 'absent'


# ---- expiry

def test_an_expired_key_reads_as_absent_and_is_dropped(clock):
    cache = make_cache(clock, extend_expiry_on_get=False)
    cache.set('k', 'v', expiry=10)
    clock.advance(9.9)
    assert cache.get('k') == 'v'
    clock.advance(0.1)
    assert 'k' not in cache
    assert cache.get('k', 'default') == 'default'
    assert len(cache) == 0 and cache.keys() == []
    assert 'k' not in cache.entries


def test_extend_expiry_on_get_moves_the_deadline_to_now_plus_the_period(clock):
    cache = make_cache(clock, extend_expiry_on_get=True)
    cache.set('k', 'v', expiry=10)
    clock.advance(8)
    assert cache.get('k') == 'v'          # deadline now start + 18
    clock.advance(9.9)
    assert 'k' in cache
    clock.advance(0.1)
    assert 'k' not in cache


def test_without_extend_expiry_on_get_a_get_keeps_the_deadline(clock):
    cache = make_cache(clock, extend_expiry_on_get=False)
    cache.set('k', 'v', expiry=10)
    clock.advance(8)
    cache.get('k')
    clock.advance(2)
    assert 'k' not in cache


def test_extend_expiry_on_set_gives_a_new_value_the_old_period_from_now(clock):
    cache = make_cache(clock, extend_expiry_on_set=True, extend_expiry_on_get=False)
    cache.set('k', 'v1', expiry=10)
    clock.advance(8)
    cache.set('k', 'v2')
    clock.advance(9.9)
    assert cache.get('k') == 'v2'
    clock.advance(0.1)
    assert 'k' not in cache


def test_without_extend_expiry_on_set_a_new_value_keeps_the_old_deadline(clock):
    cache = make_cache(clock, extend_expiry_on_set=False, extend_expiry_on_get=False)
    cache.set('k', 'v1', expiry=10)
    clock.advance(8)
    cache.set('k', 'v2')
    clock.advance(1.9)
    assert cache.get('k') == 'v2'
    clock.advance(0.1)
    assert 'k' not in cache


def test_an_explicit_expiry_wins_and_zero_means_never(clock):
    cache = make_cache(clock, extend_expiry_on_set=True)
    cache.set('k', 'v', expiry=10)
    cache.set('k', 'v', expiry=2)
    clock.advance(2)
    assert 'k' not in cache
    cache.set('k', 'v', expiry=10)
    cache.set('k', 'v', expiry=0)
    clock.advance(10 ** 6)
    assert cache.get('k') == 'v'


def test_a_set_without_expiry_on_an_expired_key_starts_without_expiry(clock):
    cache = make_cache(clock, extend_expiry_on_set=True)
    cache.set('k', 'v', expiry=1)
    clock.advance(5)
    cache.set('k', 'v2')
    clock.advance(10 ** 6)
    assert cache.get('k') == 'v2'


@pytest.mark.parametrize('expiry', [-1, 'ten', True, math.inf, math.nan])
def test_a_bad_expiry_is_refused(clock, expiry):
    cache = make_cache(clock)
    with pytest.raises(CacheError, match="expiry of key 'k' must be a number of seconds"):
        cache.set('k', 'v', expiry=expiry)


def test_a_synced_cache_keeps_expired_entries_for_a_grace_period(clock):
    cache = Cache(CacheDefinition(name='c', sync_method='in-background'), clock)
    cache.set('k', 'v', expiry=1)
    clock.advance(1)
    assert cache.get('k') is None
    assert 'k' in cache.entries            # an extension from another worker may still come
    clock.advance(SYNC_GRACE)
    assert cache.purge_expired() == 1
    assert 'k' not in cache.entries


# ---- replaying other processes' changes

def remote(value, version, expires_at=None, expiry=None):
    return Entry(f'"{value}"', expires_at, expiry, 0.0, version)


def test_a_remote_write_wins_only_when_newer(clock):
    cache = make_cache(clock)
    cache.apply_set('k', remote('five', 5))
    cache.apply_set('k', remote('four', 4))
    assert cache.get('k') == 'five'
    cache.apply_set('k', remote('six', 6))
    assert cache.get('k') == 'six'


def test_a_pending_local_write_beats_every_remote_one(clock):
    cache = Cache(CacheDefinition(name='c', sync_method='in-background'), clock)
    cache.set('k', 'local')
    assert cache.entries['k'].version == PENDING
    cache.apply_set('k', remote('remote', 10 ** 9))
    cache.apply_delete('k', 10 ** 9)
    cache.apply_clear(10 ** 9)
    assert cache.get('k') == 'local'


def test_remote_delete_evict_and_clear_respect_versions(clock):
    cache = make_cache(clock)
    for key, version in (('a', 1), ('b', 5), ('c', 9)):
        cache.apply_set(key, remote(key, version))
    cache.apply_delete('a', 2)
    cache.apply_evict('b', 4)               # evicted an older version: the newer one stays
    assert cache.keys() == ['b', 'c']
    cache.apply_evict('b', 5)
    cache.apply_clear(8)
    assert cache.keys() == ['c']


def test_a_remote_touch_extends_only_the_same_version(clock):
    now = clock()
    cache = make_cache(clock)
    cache.apply_set('k', remote('v', 3, expires_at=now + 1, expiry=1))
    cache.apply_touch('k', 2, now + 100, now)
    clock.advance(1)
    assert 'k' not in cache
    cache.apply_touch('k', 3, now + 100, now)
    assert cache.get('k') == 'v'


def test_load_skips_expired_entries_and_evicts_beyond_max_size(clock):
    now = clock()
    cache = make_cache(clock, max_size=2)
    cache.load([('old', remote('o', 1)), ('gone', remote('g', 2, expires_at=now)),
                ('mid', remote('m', 3)), ('new', remote('n', 4))], position=7)
    assert cache.keys() == ['mid', 'new'] and cache.position == 7
