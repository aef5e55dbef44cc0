"""One cache for the cluster (issue 18, item 4): two servers on one redis-server, a cluster
cache declared in [caches] of both. What one sets, through zato.cache.builtin.* or a service's
self.caches, the other reads; expiry is Redis'; a Redis that stops answering fails cache
calls within cache_timeout while everything else is served; once it is back, they work."""

import json
import signal
import threading
import time

import pytest

from tests.integration.helpers import call, free_port, wait_until, write_server_dir, zato_daemon
from tests.integration.test_cluster import REDIS_SERVER, cluster_section, redis_server  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason='redis-server is not installed (make test-tools)')

CACHE_TIMEOUT = 0.5

SERVICE = '''\
from zato_daemon import Service
from zato_daemon.cache import CacheError

class Remember(Service):
    name = 'demo.remember'

    def handle(self):
        payload = self.request.payload
        cache = self.caches['shared']
        if 'value' in payload:
            cache.set(payload['key'], payload['value'], payload.get('expiry'))
        self.response.payload = {'value': cache.get(payload['key']), 'pid': self.server.pid}
'''


def cluster_server(server_factory, name, redis_port, workers=1):
    sections = (cluster_section(redis_port, f'host-{name}', extra=f'cache_timeout = {CACHE_TIMEOUT}\n')
                + '\n[caches]\nshared = scope=cluster, max_size=100\n')
    server = server_factory(name, workers=workers, start=False, sections=sections)
    pickup = server.server_dir / 'pickup'
    pickup.mkdir(exist_ok=True)
    (pickup / 'remember.py').write_text(SERVICE)
    server.start()
    wait_until(lambda: call(server.port, 'demo.remember', {'key': 'warm-up'})[0] == 200,
               message='the pickup service to deploy')
    return server


def invoke(server, service, payload):
    return zato_daemon('invoke', server.server_dir, service, json.dumps(payload), '--json')


def get_through(server, key):
    result = invoke(server, 'zato.cache.builtin.get', {'cache': 'shared', 'key': key})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def size_through(server):
    listed = {cache['name']: cache for cache in json.loads(invoke(server, 'zato.cache.builtin.list', {}).stdout)}
    assert listed['shared']['scope'] == 'cluster'
    return listed['shared']['size']


def test_set_through_one_server_is_read_through_the_other(redis_server, server_factory):
    redis = redis_server()
    first = cluster_server(server_factory, 'a', redis.port, workers=2)
    second = cluster_server(server_factory, 'b', redis.port)
    result = invoke(first, 'zato.cache.builtin.set', {'cache': 'shared', 'key': 'k', 'value': {'n': [1, 2]}})
    assert result.returncode == 0 and json.loads(result.stdout) == {'cache': 'shared', 'key': 'k'}
    assert get_through(second, 'k') == {'key': 'k', 'value': {'n': [1, 2]}, 'found': True}
    # A service's self.caches: written by the other server, read by both workers of this one.
    assert call(second.port, 'demo.remember', {'key': 's', 'value': 'from b'})[0] == 200
    seen = set()
    for _ in range(40):
        status, _, body = call(first.port, 'demo.remember', {'key': 's'})
        assert (status, body['value']) == (200, 'from b')
        seen.add(body['pid'])
    assert len(seen) == 2
    assert size_through(second) == 2
    assert json.loads(invoke(first, 'zato.cache.builtin.delete', {'cache': 'shared', 'key': 'k'}).stdout) == {
        'deleted': True}
    assert get_through(second, 'k')['found'] is False
    # Redis' own expiry: gone for every server at once.
    invoke(second, 'zato.cache.builtin.set', {'cache': 'shared', 'key': 'brief', 'value': 1, 'expiry': 60})
    assert get_through(first, 'brief')['found'] is True
    invoke(second, 'zato.cache.builtin.set', {'cache': 'shared', 'key': 'brief', 'value': 1, 'expiry': 0.3})
    # Watched through list, which is no use: a get would extend it (extend_expiry_on_get).
    wait_until(lambda: size_through(first) == 1, timeout=10, message='the key to expire')
    assert get_through(second, 'brief')['found'] is False


def test_a_redis_that_stops_answering_fails_cache_calls_in_time_and_nothing_else(redis_server, server_factory):
    redis = redis_server()
    server = cluster_server(server_factory, 'a', redis.port)
    assert call(server.port, 'demo.remember', {'key': 'k', 'value': 1})[2]['value'] == 1
    redis.process.send_signal(signal.SIGSTOP)
    try:
        outcome = {}

        def slow_call():
            started = time.monotonic()
            outcome['answer'] = call(server.port, 'demo.remember', {'key': 'k'})
            outcome['took'] = time.monotonic() - started
        waiting = threading.Thread(target=slow_call)
        waiting.start()
        # While a cache call waits on Redis, the worker serves other requests.
        assert call(server.port, 'demo.echo', {'x': 1})[0] == 200
        waiting.join(30)
        status, _, body = outcome['answer']
        assert status == 400 and body['error'].startswith("cache 'shared': get failed: redis://127.0.0.1:")
        assert 'Timeout' in body['error']
        # Bounded by cache_timeout, with room for a loaded machine (no performance goal here).
        assert outcome['took'] < CACHE_TIMEOUT + 3
        result = invoke(server, 'zato.cache.builtin.set', {'cache': 'shared', 'key': 'k', 'value': 2})
        assert result.returncode == 1 and 'answered 400' in result.stderr and "'shared': set failed" in result.stderr
    finally:
        redis.process.send_signal(signal.SIGCONT)
    assert wait_until(lambda: call(server.port, 'demo.remember', {'key': 'k'})[2].get('value') == 1, timeout=10)
    # Down altogether: refused at once; back (empty: it saves nothing), it works again.
    redis.stop()
    status, _, body = call(server.port, 'demo.remember', {'key': 'k'})
    assert status == 400 and 'ConnectionError' in body['error']
    assert call(server.port, 'demo.echo', {'x': 2})[0] == 200
    redis.start()
    assert wait_until(lambda: call(server.port, 'demo.remember', {'key': 'k', 'value': 3})[0] == 200, timeout=10)
    assert get_through(server, 'k')['value'] == 3


def test_a_cluster_cache_on_a_single_host_is_refused(tmp_path, server_factory):
    server_dir = write_server_dir(tmp_path / 'single', free_port(), sections='[caches]\nshared = scope=cluster\n')
    checked = zato_daemon('check-config', server_dir)
    assert (checked.returncode, checked.stderr.strip()) == (
        78, "zato-daemon: [caches] shared: scope 'cluster' needs the cluster's Redis: set [cluster] redis_url in "
            "server.conf, or make the cache 'local'")
    result = zato_daemon('start', server_dir)
    assert result.returncode == 78
    # Refused before anything is bound or forked, as every configuration error is.
    assert "[caches] shared: scope 'cluster' needs the cluster's Redis: set [cluster] redis_url" in result.stderr
    single = server_factory('created')
    result = invoke(single, 'zato.cache.builtin.create', {'name': 'late', 'scope': 'cluster'})
    assert result.returncode == 1 and 'answered 400' in result.stderr
    assert "cache 'late': scope 'cluster' needs the cluster's Redis" in result.stderr
