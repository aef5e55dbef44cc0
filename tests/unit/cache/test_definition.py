"""Cache definitions: the seed's fields, defaults, and one error listing every bad field."""

import json

import pytest

from zato_daemon.cache.definition import (NO_CLUSTER, CacheDefinition, CacheError, check_configured_scopes,
                                          default_definition)
from zato_daemon.common import CACHE, SERVER_STARTUP
from zato_daemon.errors import ZatoDaemonError

SEED_REQUEST = {
    'cluster_id': 1,
    'name': 'my.cache',
    'is_active': True,
    'is_default': False,
    'max_size': 10000,
    'max_item_size': 10000,
    'extend_expiry_on_get': True,
    'extend_expiry_on_set': True,
    'sync_method': CACHE.SYNC_METHOD.IN_BACKGROUND.id,
    'persistent_storage': CACHE.PERSISTENT_STORAGE.NO_PERSISTENT_STORAGE.id,
    'cache_type': CACHE.TYPE.BUILTIN,
}


def test_zato_constants_have_zato_values():
    assert CACHE.TYPE.BUILTIN == 'builtin'
    assert CACHE.SYNC_METHOD.NO_SYNC.id == 'no-sync'
    assert CACHE.SYNC_METHOD.IN_BACKGROUND.id == 'in-background'
    assert CACHE.PERSISTENT_STORAGE.NO_PERSISTENT_STORAGE.id == 'no-persistent-storage'
    assert CACHE.PERSISTENT_STORAGE.SQL.id == 'sql'
    assert SERVER_STARTUP.PHASE.FS_CONFIG_ONLY == 'fs-config-only'
    assert SERVER_STARTUP.PHASE.AFTER_STARTED == 'after-started'


def test_zato_constants_are_read_only():
    with pytest.raises(AttributeError):
        CACHE.TYPE.BUILTIN = 'redis'
    with pytest.raises(AttributeError):
        del SERVER_STARTUP.PHASE


def test_the_seed_request_is_a_valid_definition():
    definition = CacheDefinition.from_request(SEED_REQUEST)
    # The seed's fields, and ours: where the cache lives.
    assert definition.as_dict() == dict(SEED_REQUEST, scope='local')
    assert definition.is_synced and not definition.is_persistent and definition.uses_table


def test_omitted_fields_get_defaults():
    definition = CacheDefinition.from_request({'name': 'c'})
    assert definition.as_dict() == {
        'cluster_id': None, 'name': 'c', 'is_active': True, 'is_default': False, 'max_size': 10000,
        'max_item_size': 10000, 'extend_expiry_on_get': True, 'extend_expiry_on_set': True,
        'sync_method': 'in-background', 'persistent_storage': 'no-persistent-storage', 'cache_type': 'builtin',
        'scope': 'local'}


def test_one_error_lists_every_invalid_field():
    request = dict(SEED_REQUEST, max_size='big', sync_method='sometimes', is_active='yes',
                   cache_type='redis', persistent_storage='disk', max_item_size=0, colour='blue')
    with pytest.raises(CacheError) as info:
        CacheDefinition.from_request(request)
    message = str(info.value)
    assert message.startswith("invalid cache definition 'my.cache': ")
    assert '\n' not in message
    for expected in ("colour: unknown field",
                     "is_active: expected true or false, got 'yes'",
                     "max_size: expected an integer of at least 1 (entries), got 'big'",
                     "max_item_size: expected an integer of at least 1 (bytes of JSON), got 0",
                     "sync_method: expected one of 'no-sync', 'in-background', got 'sometimes'",
                     "persistent_storage: expected one of 'no-persistent-storage', 'sql', got 'disk'",
                     "cache_type: expected one of 'builtin', got 'redis'"):
        assert expected in message
    assert 'name:' not in message and 'cluster_id' not in message


def test_name_is_required_and_must_be_a_non_empty_string():
    with pytest.raises(CacheError, match='name: required'):
        CacheDefinition.from_request({'max_size': 1})
    with pytest.raises(CacheError, match="name: expected a non-empty string, got '  '"):
        CacheDefinition.from_request({'name': '  '})


@pytest.mark.parametrize('field, value', [('max_size', True), ('is_default', 1), ('cluster_id', False),
                                          ('max_item_size', 2.5)])
def test_types_are_strict(field, value):
    with pytest.raises(CacheError, match=f'{field}: expected'):
        CacheDefinition.from_request({'name': 'c', field: value})


def test_a_request_that_is_not_an_object_is_refused():
    with pytest.raises(CacheError, match='must be a JSON object, got list'):
        CacheDefinition.from_request(['name'])


def test_direct_construction_is_validated_too():
    with pytest.raises(CacheError, match="sync_method: expected one of"):
        CacheDefinition(name='c', sync_method='nope')


def test_cache_error_is_a_daemon_error_answered_with_400():
    assert issubclass(CacheError, ZatoDaemonError)
    assert CacheError.status == 400


def test_json_round_trip_is_canonical():
    definition = CacheDefinition.from_request(SEED_REQUEST)
    text = definition.to_json()
    assert CacheDefinition.from_json(text) == definition
    assert list(json.loads(text)) == sorted([*SEED_REQUEST, 'scope'])


def test_differences_name_each_field():
    first = CacheDefinition(name='c', max_size=1)
    second = CacheDefinition(name='c', max_size=2, sync_method='no-sync')
    assert first.differences(second) == ['max_size: 1 vs 2', "sync_method: 'in-background' vs 'no-sync'"]


def test_the_implicit_default_cache_is_per_worker_memory():
    definition = default_definition()
    assert definition.name == 'default' and definition.is_default
    assert not definition.uses_table


def test_scope_is_local_by_default_and_cluster_on_request():
    assert CacheDefinition(name='c').scope == 'local' and not CacheDefinition(name='c').is_cluster
    cluster = CacheDefinition.from_request({'name': 'c', 'scope': 'cluster'})
    assert cluster.is_cluster
    # Nothing of it in memory or SQLite: no change log, no table, whatever sync_method says.
    assert not cluster.is_synced and not cluster.is_persistent and not cluster.uses_table
    assert CacheDefinition.from_json(cluster.to_json()) == cluster


def test_a_definition_stored_before_scope_existed_is_local():
    stored = json.dumps(dict(SEED_REQUEST))
    assert CacheDefinition.from_json(stored).scope == 'local'


@pytest.mark.parametrize('scope', ['Cluster', 'redis', '', None, True])
def test_scope_is_one_of_two_words(scope):
    with pytest.raises(CacheError) as info:
        CacheDefinition.from_request({'name': 'c', 'scope': scope})
    assert str(info.value) == f"invalid cache definition 'c': scope: expected one of 'local', 'cluster', got {scope!r}"


def test_a_cluster_cache_refuses_what_contradicts_it():
    with pytest.raises(CacheError) as info:
        CacheDefinition.from_request({'name': 'c', 'scope': 'cluster', 'sync_method': 'no-sync',
                                      'persistent_storage': 'sql'})
    message = str(info.value)
    assert message.startswith("invalid cache definition 'c': sync_method: 'no-sync' contradicts scope 'cluster'")
    assert "; persistent_storage: 'sql' contradicts scope 'cluster'" in message
    with pytest.raises(CacheError, match='persistent_storage'):
        CacheDefinition(name='c', scope='cluster', persistent_storage='sql')
    # Local caches keep every combination they had.
    assert CacheDefinition(name='c', sync_method='no-sync', persistent_storage='sql').is_persistent


def test_configured_cluster_caches_need_a_cluster():
    caches = {'a': {'max_size': 5}, 'b': {'scope': 'cluster'}}
    assert check_configured_scopes(caches, has_cluster=True) is None
    assert check_configured_scopes({'a': {'scope': 'local'}}, has_cluster=False) is None
    name, reason = check_configured_scopes(caches, has_cluster=False)
    assert name == 'b' and reason == NO_CLUSTER and '[cluster] redis_url' in reason
