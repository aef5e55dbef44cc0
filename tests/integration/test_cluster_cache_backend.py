"""Cluster caches against a real redis-server, started by the test on a free port.

Two RedisLinks on one Redis stand for two workers (or two members): what one sets, the other
reads. Expiry extensions are checked with Redis' own PTTL, after moving a deadline closer
with PEXPIRE, instead of sleeping through them.
"""

import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.helpers import free_port, wait_until
from tests.integration.test_cluster import REDIS_SERVER, RedisServer
from zato_daemon.cache.definition import CacheDefinition, CacheError
from zato_daemon.cache.registry import CacheRegistry
from zato_daemon.cluster.cache import RedisLink, key_prefix
from zato_daemon.config.load import load_config
from zato_daemon.metrics.counting import WorkerCounts

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason='redis-server is not installed (make test-tools)')

PASSWORD = 'Qz8-cache-s3cret'
TIMEOUT = 0.5


def config_for(directory, port, password=None, timeout=TIMEOUT):
    directory.mkdir(parents=True, exist_ok=True)
    userinfo = f':{password}@' if password else ''
    (directory / 'server.conf').write_text(f'[cluster]\nredis_url = redis://{userinfo}127.0.0.1:{port}/0\n'
                                           f'name = unit\ncache_timeout = {timeout}\n')
    return load_config(directory)


@pytest.fixture(scope='module')
def redis_port(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp('redis'), free_port()).start()
    yield server.port
    server.stop()


@pytest.fixture
def links(tmp_path, redis_port):
    """Two workers' links to the same Redis."""
    made = [RedisLink(config_for(tmp_path / f'worker-{number}', redis_port)) for number in range(2)]
    yield made
    for link in made:
        link.close()


@pytest.fixture
def pair(links, request):
    """The same cluster cache as two workers see it; a name of its own per test, emptied."""
    fields = getattr(request, 'param', {})
    definition = CacheDefinition(name=f'{request.node.name}:x', scope='cluster', **fields)
    caches = [link.cache(definition) for link in links]
    caches[0].clear()
    return caches


def redis_of(cache):
    return cache.link.client(cache.name, 'inspect')


def pttl(cache, key):
    return redis_of(cache).pttl(cache.entry_prefix + key)


def test_what_one_worker_sets_the_other_gets_as_a_fresh_copy(pair):
    first, second = pair
    first.set('user', {'name': 'alice', 'roles': ['a']})
    got = second.get('user')
    assert got == {'name': 'alice', 'roles': ['a']}
    got['roles'].append('b')
    assert first.get('user') == {'name': 'alice', 'roles': ['a']}
    assert second.get('missing', 'none') == 'none'
    assert 'user' in second and 'missing' not in second and 7 not in second
    assert (second.stats.hits, second.stats.misses) == (1, 1)
    assert first.stats.hits == 1


def test_delete_clear_keys_and_len(pair):
    first, second = pair
    for key in 'abc':
        first.set(key, key.upper())
    second.get('a')
    assert second.keys() == ['b', 'c', 'a'] and len(first) == 3 and list(first) == ['b', 'c', 'a']
    assert second.delete('b') is True and second.delete('b') is False
    assert first.keys() == ['c', 'a']
    assert first.clear() == 2 and second.keys() == [] and len(second) == 0
    assert first.clear() == 0


def test_values_are_the_local_caches_json_text(pair):
    first, _ = pair
    first.set('k', {'é': [1, 2.5, None]})
    assert redis_of(first).hget(first.entry_prefix + 'k', 'v') == '{"é":[1,2.5,null]}'


def test_an_expired_key_is_gone_for_everyone(pair):
    first, second = pair
    first.set('brief', 1, expiry=0.05)
    first.set('stays', 2)
    # Watched with `in`, which is no use: a get would extend it (extend_expiry_on_get).
    wait_until(lambda: 'brief' not in second, timeout=5, message='the key to expire')
    assert second.get('brief', 'gone') == 'gone'
    assert second.keys() == ['stays'] and len(first) == 1
    first.set('k', 3, expiry=0)
    assert pttl(first, 'k') == -1


@pytest.mark.parametrize('pair', [{}, {'extend_expiry_on_get': False}], indirect=True)
def test_extend_expiry_on_get(pair):
    first, second = pair
    first.set('k', 1, expiry=10)
    redis_of(first).pexpire(first.entry_prefix + 'k', 2000)
    assert second.get('k') == 1
    if first.definition.extend_expiry_on_get:
        assert 9000 < pttl(first, 'k') <= 10000
    else:
        assert pttl(first, 'k') <= 2000


@pytest.mark.parametrize('pair', [{}, {'extend_expiry_on_set': False}], indirect=True)
def test_extend_expiry_on_set(pair):
    first, second = pair
    first.set('k', 1, expiry=10)
    redis_of(first).pexpire(first.entry_prefix + 'k', 2000)
    second.set('k', 2)
    # Read without get(), which would extend it.
    assert redis_of(first).hget(first.entry_prefix + 'k', 'v') == '2'
    if first.definition.extend_expiry_on_set:
        assert 9000 < pttl(first, 'k') <= 10000
    else:
        assert 0 < pttl(first, 'k') <= 2000
    # An explicit expiry always wins; a new key without one never expires.
    second.set('k', 3, expiry=60)
    assert 59000 < pttl(first, 'k') <= 60000
    second.set('new', 4)
    assert pttl(first, 'new') == -1


@pytest.mark.parametrize('pair', [{'max_size': 3}], indirect=True)
def test_max_size_trims_the_least_recently_used_across_workers(pair):
    first, second = pair
    first.set('a', 1)
    second.set('b', 2)
    first.set('c', 3)
    second.get('a')
    first.set('d', 4)
    assert second.keys() == ['c', 'a', 'd'] and second.get('b') is None
    assert (first.stats.evictions, second.stats.evictions) == (1, 0)
    # An expired key takes no room: setting past it evicts nobody live.
    second.set('brief', 5, expiry=0.05)
    assert second.stats.evictions == 1 and first.keys() == ['a', 'd', 'brief']
    wait_until(lambda: 'brief' not in first, timeout=5, message='the key to expire')
    first.set('e', 6)
    assert first.keys() == ['a', 'd', 'e'] and first.stats.evictions == 1


@pytest.mark.parametrize('pair', [{'max_item_size': 10}], indirect=True)
def test_a_value_over_max_item_size_or_not_json_is_refused_and_nothing_stored(pair):
    first, second = pair
    with pytest.raises(CacheError, match=r"value of key 'k' is 12 bytes of JSON, over max_item_size 10"):
        first.set('k', 'x' * 10)
    with pytest.raises(CacheError, match='not JSON-serializable'):
        first.set('k', float('nan'))
    with pytest.raises(CacheError, match='keys are strings'):
        first.set(1, 'v')
    with pytest.raises(CacheError, match='expiry'):
        first.set('k', 1, expiry=-1)
    with pytest.raises(CacheError, match=r"expiry of key 'k' is over 3153600000 seconds \(100 years\)"):
        first.set('k', 1, expiry=1e300)
    assert second.keys() == []


def test_names_and_keys_cannot_reach_another_caches_keys():
    assert key_prefix('prod', 'a:entry:b') == 'zato:prod:cache:a%3Aentry%3Ab:'
    assert key_prefix('prod', 'a') + 'entry:' + 'b:lru' != key_prefix('prod', 'a:entry:b') + 'lru'


def test_redis_refusing_is_a_cache_error_with_the_url_redacted(tmp_path):
    # Bound, not listening: connections are refused at once.
    with socket.socket() as holder:
        holder.bind(('127.0.0.1', 0))
        link = RedisLink(config_for(tmp_path, holder.getsockname()[1], password=PASSWORD))
        cache = link.cache(CacheDefinition(name='down', scope='cluster'))
        with pytest.raises(CacheError) as info:
            cache.get('k')
    message = str(info.value)
    assert message.startswith("cache 'down': get failed: redis://******@127.0.0.1:")
    assert 'ConnectionError' in message and PASSWORD not in message
    assert cache.stats.misses == 0


def test_a_list_of_caches_names_a_cluster_cache_it_cannot_size(tmp_path):
    with socket.socket() as holder:
        holder.bind(('127.0.0.1', 0))
        registry = CacheRegistry(tmp_path / 'state',
                                 cluster=RedisLink(config_for(tmp_path / 'server', holder.getsockname()[1])))
        registry.create({'name': 'remote', 'scope': 'cluster'})
        listed = {entry['name']: entry for entry in registry.list()}
    assert listed['default']['size'] == 0 and 'error' not in listed['default']
    assert listed['remote']['size'] is None
    assert listed['remote']['error'].startswith("cache 'remote': keys failed: redis://127.0.0.1:")
    registry.close()


def test_a_redis_that_stops_answering_fails_the_call_within_cache_timeout(tmp_path):
    server = RedisServer(tmp_path / 'redis', free_port()).start()
    try:
        cache = RedisLink(config_for(tmp_path / 'worker', server.port)).cache(
            CacheDefinition(name='slow', scope='cluster'))
        cache.set('k', 1)
        server.process.send_signal(signal.SIGSTOP)
        for operation in (lambda: cache.get('k'), lambda: cache.set('k', 2), cache.keys):
            started = time.monotonic()
            with pytest.raises(CacheError, match="cache 'slow': .* failed: redis://127.0.0.1:.*Timeout"):
                operation()
            # Bounded, with room for a loaded machine; no performance goal.
            assert time.monotonic() - started < TIMEOUT + 2
        server.process.send_signal(signal.SIGCONT)
        assert wait_until(lambda: cache.get('k') == 1, timeout=10)
    finally:
        server.process.send_signal(signal.SIGCONT)
        server.stop()


def test_the_registry_makes_cluster_caches_only_with_a_cluster(tmp_path, links):
    single = CacheRegistry(tmp_path / 'single')
    with pytest.raises(CacheError) as info:
        single.create({'name': 'shared', 'scope': 'cluster'})
    assert str(info.value).startswith("cache 'shared': scope 'cluster' needs the cluster's Redis: set [cluster] "
                                      'redis_url')
    registries = [CacheRegistry(tmp_path / f'state-{number}', cluster=link) for number, link in enumerate(links)]
    caches = [registry.create({'name': 'reg:shared', 'scope': 'cluster', 'max_size': 5}) for registry in registries]
    caches[0].clear()
    caches[0].set('k', 'v')
    assert registries[1]['reg:shared'].get('k') == 'v'
    listed = {entry['name']: entry for entry in registries[1].list()}
    assert listed['reg:shared']['size'] == 1 and listed['reg:shared']['scope'] == 'cluster'
    # Counted in the worker's metrics by cache name, as local caches are.
    counts = WorkerCounts()
    registries[1].count_with(counts)
    registries[1]['reg:shared'].get('k')
    registries[1]['reg:shared'].get('absent')
    assert counts.cache('reg:shared').as_list() == [1, 1, 0]
    # The poll and its pruning never ask Redis for a cluster cache.
    for registry in registries:
        registry.poll()
        registry.close()


def test_a_worker_imports_redis_only_on_its_first_cluster_cache_call(tmp_path):
    config_for(tmp_path / 'server', free_port())
    code = ('import sys\n'
            'from zato_daemon.config.load import load_config\n'
            'from zato_daemon.services.host import cluster_link\n'
            'from zato_daemon.cache.registry import CacheRegistry\n'
            f'registry = CacheRegistry({str(tmp_path / "state")!r}, '
            f'cluster=cluster_link(load_config({str(tmp_path / "server")!r})))\n'
            'registry.default.set("k", 1)\n'
            'cache = registry.create({"name": "c", "scope": "cluster"})\n'
            'before = "redis" in sys.modules\n'
            'try:\n'
            '    cache.get("k")\n'
            'except Exception as exc:\n'
            '    print(type(exc).__name__)\n'
            'print(before, "redis" in sys.modules)\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert result.stdout.split() == ['CacheError', 'False', 'True']


def test_a_password_file_gone_fails_each_call_until_it_is_back(tmp_path):
    server = RedisServer(tmp_path / 'redis', free_port(), password=PASSWORD).start()
    try:
        directory = tmp_path / 'server'
        directory.mkdir()
        (directory / 'server.conf').write_text(f'[cluster]\nredis_url = redis://127.0.0.1:{server.port}/0\n'
                                               'name = unit\npassword_file = pw\n')
        (directory / 'pw').write_text(PASSWORD + '\n')
        config = load_config(directory)
        (directory / 'pw').unlink()
        cache = RedisLink(config).cache(CacheDefinition(name='pw', scope='cluster'))
        with pytest.raises(CacheError, match=r"^cache 'pw': get failed: \[cluster\] password_file: cannot read "):
            cache.get('k')
        (directory / 'pw').write_text(PASSWORD + '\n')
        cache.set('k', 1)
        assert cache.get('k') == 1
    finally:
        server.stop()


def test_what_something_else_wrote_under_the_cache_keys_is_a_cache_error_and_the_cache_serves_on(pair):
    # Anyone who can write Redis can: bytes that are not UTF-8, text that is not JSON.
    first, second = pair
    first.set('good', 1)
    first.set('bytes', 2)
    first.set('text', 3)
    redis = redis_of(first)
    redis.hset(first.entry_prefix + 'bytes', 'v', b'\xff\xfe')
    redis.hset(first.entry_prefix + 'text', 'v', 'not json {')
    with pytest.raises(CacheError, match='not UTF-8 text'):
        second.get('bytes')
    with pytest.raises(CacheError, match='not JSON'):
        second.get('text')
    assert second.get('good') == 1
    assert second.delete('bytes') is True and second.get('bytes') is None
