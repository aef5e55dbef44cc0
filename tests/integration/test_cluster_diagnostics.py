"""Cluster-wide diagnostics (issue 18, item 5) on a real redis-server and two real servers
sharing one cluster key: each member's slow calls and samples are listed by either member's
`slow --cluster` and `samples --cluster` with its host; no secret reaches Redis; `dump
--cluster` makes both dump, and a forged request makes none; Redis stopped costs no request
and the commands say 69, and the records come back when it does."""

import json
import re

import pytest

from tests.integration.helpers import call, wait_until, zato_daemon
from tests.integration.test_cluster import (REDIS_SERVER, cluster_section, members_are,  # noqa: F401 - fixture
                                            redis_server)
from tests.integration.test_cluster_deploy import KEY

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason='redis-server is not installed (make test-tools)')

SECRET = 'Zq9-diag-s3cret-value'
DUMP_HEADER = re.compile(r'^==== zato-daemon dump \w+: (master|worker-\d+), pid \d+', re.M)

SERVICES = f'''\
import time
from zato_daemon import Service

class Slow(Service):
    name = 'diag.slow'
    slow_threshold = 100

    def handle(self):
        time.sleep(0.25)
        self.response.payload = {{'echo': self.request.payload,
                                  'note': 'Authorization: Bearer {SECRET}',
                                  'dsn': 'postgresql://alice:{SECRET}@db/orders'}}


class Fail(Service):
    name = 'diag.fail'

    def handle(self):
        raise ValueError('login failed: user=alice password={SECRET}')
'''

REQUEST = {'user': 'bob', 'password': SECRET, 'nested': {'api_key': SECRET, 'note': f'token={SECRET}'},
           'headers': {'Authorization': f'Basic {SECRET}', 'Cookie': f'session={SECRET}'}}


def member(server_factory, redis, name):
    """A member with the cluster key, the diag services at boot and every call sampled."""
    server = server_factory(name, start=False, sections=cluster_section(redis.port, f'host-{name}', ttl=30) +
                            '\n[diagnostics]\nsample_interval = 0\n')
    path = server.server_dir / 'cluster.key'
    path.write_bytes(KEY + b'\n')
    path.chmod(0o600)
    (server.server_dir / 'diag.py').write_text(SERVICES)
    conf = server.server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace('[services]\n', f'[services]\npaths = {server.server_dir}/diag.py\n'))
    return server.start()


def two_members(redis_server, server_factory):
    redis = redis_server()
    servers = [member(server_factory, redis, name) for name in ('a', 'b')]
    wait_until(lambda: members_are(servers[0].server_dir, ['host-a', 'host-b']), timeout=30,
               message='both members listed')
    return redis, servers


def calls_on(server):
    """A slow call and a failed one; returns their cids."""
    status, headers, _ = call(server.port, 'diag.slow', REQUEST)
    assert status == 200
    failed_status, failed_headers, _ = call(server.port, 'diag.fail', REQUEST)
    assert failed_status == 500
    return headers['x-zato-cid'], failed_headers['x-zato-cid']


def listed(server, *arguments):
    result = zato_daemon(*arguments[:1], server.server_dir, *arguments[1:], '--cluster', '--json')
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def by_host(rows):
    return {row['host']: row for row in rows}


def every_value(client):
    """The text of every value Redis holds, whatever its type."""
    texts = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == 'string':
            texts.append(client.get(key))
        elif kind == 'hash':
            texts.extend(f'{field}={value}' for field, value in client.hgetall(key).items())
        elif kind == 'zset':
            texts.extend(client.zrange(key, 0, -1))
        elif kind == 'list':
            texts.extend(client.lrange(key, 0, -1))
        elif kind == 'stream':
            texts.extend(json.dumps(fields) for _, fields in client.xrange(key))
        texts.append(key)
    return texts


def test_every_members_records_are_listed_by_either_with_its_host_and_no_secret(redis_server, server_factory):
    import redis as redis_py
    redis, servers = two_members(redis_server, server_factory)
    cids = {f'host-{name}': calls_on(server) for name, server in zip('ab', servers)}

    def both_slow(server):
        rows = listed(server, 'slow')
        return len(rows) == 2 and rows
    for server in servers:
        rows = wait_until(lambda: both_slow(server), timeout=40, message='both slow calls shipped')
        assert {host: row['cid'] for host, row in by_host(rows).items()} == {host: cids[host][0] for host in cids}
        assert list(rows[0]) == ['host', 'cid', 'service', 'worker', 'started_at', 'duration_ms', 'status',
                                 'request', 'response', 'error']
        assert rows[0]['started_at'] >= rows[1]['started_at']
        assert '"user": "bob"' in rows[0]['request'] and '******' in rows[0]['response']
        samples = listed(server, 'samples', 'diag.fail')
        assert {host: row['cid'] for host, row in by_host(samples).items()} == {host: cids[host][1] for host in cids}
        assert all(row['error'].startswith('ValueError: login failed') for row in samples)
        assert listed(server, 'slow', 'diag.fail') == [] and listed(server, 'samples', 'demo.echo') == []
        assert listed(server, 'slow', '--since', '2100-01-01T00:00') == []

    table = zato_daemon('slow', servers[1].server_dir, '--cluster')
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == ['STARTED_AT', 'HOST', 'SERVICE']
    assert 'host-a' in table.stdout and 'host-b' in table.stdout

    # Nothing secret left either host: not in a record, not anywhere in Redis.
    client = redis_py.Redis(port=redis.port, decode_responses=True)
    values = every_value(client)
    assert any('diag.slow' in text for text in values)
    assert not [text for text in values if SECRET in text]
    # Capped and expiring: one sorted set per member, service and kind.
    key = f'zato:test:slow:host-a:diag.slow'
    assert client.zcard(key) == 1 and 0 < client.ttl(key) <= 7 * 86400


def test_dump_cluster_makes_every_member_dump_and_a_forged_request_none(redis_server, server_factory):
    import redis as redis_py
    from zato_daemon.cluster import dumps
    redis, servers = two_members(redis_server, server_factory)
    result = zato_daemon('dump', servers[0].server_dir, '--cluster', '--timeout', '20', timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    for name, server in zip('ab', servers):
        assert f'host-{name}  pid {server.pid}  {server.server_dir / "logs" / "server.log"}' in result.stdout
        # The master dumps, and has its worker dump.
        wait_until(lambda: {role for role in DUMP_HEADER.findall(server.log())} >= {'master', 'worker-1'},
                   timeout=20, message='both processes dumped')
        assert 'Dumping every process of this member: host-a asked the cluster test' in server.log()
    assert result.stdout.count('journalctl -o cat MESSAGE_ID=') == 2

    data = json.loads(zato_daemon('dump', servers[1].server_dir, '--cluster', '--json', timeout=60).stdout)
    assert sorted(data) == ['host-a', 'host-b'] and data['host-a']['pid'] == servers[0].pid
    dumped = [len(DUMP_HEADER.findall(server.log())) for server in servers]

    # Written straight into Redis: signed with another key, and not signed at all.
    client = redis_py.Redis(port=redis.port, decode_responses=True)
    forged = dumps.make_request(b'x' * 40, 'test', 'e' * 32, 'intruder', __import__('time').time())
    client.xadd(dumps.stream_key('test'), forged)
    client.xadd(dumps.stream_key('test'), dict(forged, request='f' * 32, signature=''))
    answers = wait_until(lambda: len(client.hgetall(dumps.answers_key('test', 'f' * 32))) == 2, timeout=20,
                         message='both members refused') and client.hgetall(dumps.answers_key('test', 'e' * 32))
    assert {host: json.loads(text)['outcome'] for host, text in answers.items()} == \
        {'host-a': 'refused', 'host-b': 'refused'}
    for server, count in zip(servers, dumped):
        assert 'Ignored a dump request on the stream of cluster test: its signature does not verify' in server.log()
        assert len(DUMP_HEADER.findall(server.log())) == count


def test_with_redis_stopped_members_serve_and_the_commands_say_69_then_records_return(redis_server,
                                                                                      server_factory):
    redis, servers = two_members(redis_server, server_factory)
    slow_cid, _ = calls_on(servers[0])
    wait_until(lambda: listed(servers[1], 'slow'), timeout=40, message='the slow call shipped')
    redis.stop()
    for server in servers:
        assert call(server.port, 'demo.echo', {'still': 'serving'})[0] == 200
    for arguments in (('slow',), ('samples', 'diag.slow'), ('dump',)):
        result = zato_daemon(arguments[0], servers[1].server_dir, *arguments[1:], '--cluster')
        assert result.returncode == 69, result.stdout + result.stderr
        assert result.stderr.startswith('zato-daemon: cannot ') and len(result.stderr.splitlines()) == 1
    assert call(servers[1].port, 'diag.slow', {'while': 'down'})[0] == 200
    redis.start()  # empty: nothing saved
    rows = wait_until(lambda: len(listed(servers[1], 'slow')) == 2 and listed(servers[1], 'slow'), timeout=60,
                      message='the records shipped again')
    assert {row['host'] for row in rows} == {'host-a', 'host-b'} and slow_cid in {row['cid'] for row in rows}
    assert not [server for server in servers if 'Unexpected error' in server.log()]


def test_without_a_cluster_or_a_key_the_commands_say_78(redis_server, server_factory):
    single = server_factory('single', start=False)
    for arguments in (('slow',), ('samples', 'demo.echo'), ('dump',)):
        result = zato_daemon(arguments[0], single.server_dir, *arguments[1:], '--cluster')
        assert result.returncode == 78 and 'redis_url is empty' in result.stderr, result.stderr
    keyless = server_factory('keyless', start=False, sections=cluster_section(redis_server().port, 'host-k'))
    result = zato_daemon('dump', keyless.server_dir, '--cluster')
    assert result.returncode == 78 and 'cluster.key' in result.stderr, result.stderr
