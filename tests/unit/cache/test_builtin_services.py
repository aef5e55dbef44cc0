"""zato.cache.builtin.*: payloads in and out, and a 400 with the message for every CacheError."""

import subprocess
import sys
import types

import pytest

from tests.conftest import REPO_ROOT
from zato_daemon.cache.registry import CacheRegistry
from zato_daemon.common import CACHE
from zato_daemon.errors import HttpError
from zato_daemon.services.base import Request, Response
from zato_daemon.services.cache_builtin import CACHE_SERVICES
from zato_daemon.services.registry import ServiceStore

SERVICES = {service.name: service for service in CACHE_SERVICES}

SEED_REQUEST = {
    'cluster_id': 1, 'name': 'my.cache', 'is_active': True, 'is_default': False, 'max_size': 10000,
    'max_item_size': 10000, 'extend_expiry_on_get': True, 'extend_expiry_on_set': True,
    'sync_method': CACHE.SYNC_METHOD.IN_BACKGROUND.id,
    'persistent_storage': CACHE.PERSISTENT_STORAGE.NO_PERSISTENT_STORAGE.id, 'cache_type': CACHE.TYPE.BUILTIN,
}


@pytest.fixture
def call(tmp_path):
    """Calls a cache service as ServiceHost.call does, answering an HttpError as the router
    does (its status, {"error": message}); returns (status, payload)."""
    server = types.SimpleNamespace(caches=CacheRegistry(tmp_path))

    def call(name, payload=None):
        service = SERVICES[name]()
        service.request = Request(payload)
        service.response = Response()
        service.server = server
        try:
            service.handle()
        except HttpError as exc:
            return exc.status, {'error': exc.reason}
        return service.response.status_code, service.response.payload

    return call


def test_the_six_services_deploy_as_built_ins():
    store = ServiceStore()
    store.deploy_classes(CACHE_SERVICES, 'zato_daemon.services.cache_builtin')
    assert sorted(item['name'] for item in store.describe()) == [
        'zato.cache.builtin.clear', 'zato.cache.builtin.create', 'zato.cache.builtin.delete',
        'zato.cache.builtin.get', 'zato.cache.builtin.list', 'zato.cache.builtin.set']


def test_create_with_the_seeds_request(call):
    answer = dict(SEED_REQUEST, scope='local')
    assert call('zato.cache.builtin.create', SEED_REQUEST) == (200, answer)
    assert call('zato.cache.builtin.create', SEED_REQUEST) == (200, answer)
    status, payload = call('zato.cache.builtin.create', dict(SEED_REQUEST, max_size=1))
    assert status == 400 and 'already exists with a different definition' in payload['error']


def test_create_lists_every_invalid_field(call):
    status, payload = call('zato.cache.builtin.create', {'name': 'c', 'max_size': -1, 'sync_method': 'x', 'y': 1})
    assert status == 400
    assert payload == {'error': "invalid cache definition 'c': y: unknown field; max_size: expected an integer "
                                "of at least 1 (entries), got -1; sync_method: expected one of 'no-sync', "
                                "'in-background', got 'x'"}


def test_set_get_delete_on_the_default_cache(call):
    assert call('zato.cache.builtin.set', {'key': 'k', 'value': {'a': 1}}) == (200, {'cache': 'default', 'key': 'k'})
    assert call('zato.cache.builtin.get', {'key': 'k'}) == (200, {'key': 'k', 'value': {'a': 1}, 'found': True})
    assert call('zato.cache.builtin.delete', {'key': 'k'}) == (200, {'deleted': True})
    assert call('zato.cache.builtin.get', {'key': 'k'}) == (200, {'key': 'k', 'value': None, 'found': False})
    assert call('zato.cache.builtin.delete', {'key': 'k'}) == (200, {'deleted': False})


def test_a_stored_null_is_found(call):
    call('zato.cache.builtin.set', {'key': 'k', 'value': None})
    assert call('zato.cache.builtin.get', {'key': 'k'}) == (200, {'key': 'k', 'value': None, 'found': True})


def test_named_cache_with_expiry_list_and_clear(call):
    call('zato.cache.builtin.create', SEED_REQUEST)
    call('zato.cache.builtin.set', {'cache': 'my.cache', 'key': 'a', 'value': 1, 'expiry': 60})
    call('zato.cache.builtin.set', {'cache': 'my.cache', 'key': 'b', 'value': 2})
    status, listed = call('zato.cache.builtin.list')
    assert status == 200
    assert [(item['name'], item['size']) for item in listed] == [('default', 0), ('my.cache', 2)]
    assert call('zato.cache.builtin.clear', {'cache': 'my.cache'}) == (200, {'cache': 'my.cache', 'cleared': 2})
    assert call('zato.cache.builtin.get', {'cache': 'my.cache', 'key': 'a'})[1]['found'] is False


@pytest.mark.parametrize('name, payload, message', [
    ('zato.cache.builtin.get', {'cache': 'nope', 'key': 'k'}, "no cache named 'nope'"),
    ('zato.cache.builtin.get', {}, 'invalid request: key: required'),
    ('zato.cache.builtin.get', {'key': 5}, 'keys are strings, got int 5'),
    ('zato.cache.builtin.get', ['k'], 'the request must be a JSON object, got list'),
    ('zato.cache.builtin.set', {'key': 'k'}, 'invalid request: value: required'),
    ('zato.cache.builtin.set', {'key': 'k', 'value': 1, 'ttl': 5}, 'invalid request: ttl: unknown field'),
    ('zato.cache.builtin.set', {'key': 'k', 'value': 'x' * 10001}, 'over max_item_size 10000'),
    ('zato.cache.builtin.set', {'key': 'k', 'value': 1, 'expiry': -5}, 'must be a number of seconds'),
    ('zato.cache.builtin.delete', {'cache': 7, 'key': 'k'}, 'cache: expected a cache name'),
    ('zato.cache.builtin.clear', {'cache': 'nope'}, "no cache named 'nope'"),
    ('zato.cache.builtin.create', None, 'must be a JSON object, got NoneType'),
])
def test_cache_errors_are_answered_with_400(call, name, payload, message):
    status, answer = call(name, payload)
    assert status == 400
    assert message in answer['error']


def test_the_cache_modules_import_no_gevent():
    code = ('import sys, zato_daemon.cache, zato_daemon.services.cache_builtin, zato_daemon.common\n'
            'print(sorted(name for name in sys.modules if name.split(".")[0] in ("gevent", "greenlet")))\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert result.stdout.strip() == '[]'
