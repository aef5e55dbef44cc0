"""Cluster-wide deploy (issue 18, item 3) on a real redis-server and real servers sharing one
cluster key: a deploy serves on every member; a module that does not import is refused by
each, naming why, and the old version serves on; a record with a bad signature (written
straight into Redis) is refused by every member; a member stopped during a deploy catches up;
Redis restarted empty changes nothing served; undeploy; a single host's local pickup."""

import json
import os
import time

import pytest

from tests.integration.helpers import call, wait_until, zato_daemon
from tests.integration.test_cluster import (REDIS_SERVER, cluster_section, members_are,  # noqa: F401 - fixture
                                            redis_server)

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason='redis-server is not installed (make test-tools)')

KEY = b'k' * 16 + b'cluster-deploy-test-key-0123456789'

MODULE = '''from zato_daemon import Service

class Hello(Service):
    name = 'cluster.deployed'

    def handle(self):
        self.response.payload = {'version': %d}
'''

BROKEN = '''from zato_daemon import Service

raise RuntimeError('no database at import')
'''


def member(server_factory, redis, name, key=KEY, start=True, ttl=30):
    server = server_factory(name, start=False, sections=cluster_section(redis.port, f'host-{name}', ttl=ttl))
    if key is not None:
        path = server.server_dir / 'cluster.key'
        path.write_bytes(key + b'\n')
        path.chmod(0o600)
    return server.start() if start else server


def module_file(tmp_path, version, text=MODULE, name='deployed.py'):
    directory = tmp_path / f'src-{version}'
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(text % version if '%d' in text else text)
    return path


def version_served(server):
    status, _, body = call(server.port, 'cluster.deployed', {})
    return body['version'] if status == 200 else status


def deploy(server, *arguments):
    result = zato_daemon('deploy', server.server_dir, *arguments, '--timeout', '40', '--json', timeout=90)
    return result.returncode, (json.loads(result.stdout) if result.stdout.strip() else result.stderr)


def hosts_of(data, name='deployed.py'):
    return data['modules'][name]['hosts']


def cluster_of(redis, server_factory, names, ttl=30):
    servers = [member(server_factory, redis, name, ttl=ttl) for name in names]
    wait_until(lambda: members_are(servers[0].server_dir, [f'host-{name}' for name in names]), timeout=30,
               message='every member listed')
    return servers


def test_a_deploy_serves_on_every_member_and_a_broken_one_is_refused_by_each(redis_server, server_factory,
                                                                              tmp_path):
    # Three members: the publisher, and two others that each follow the stream on their own.
    hosts = ['host-a', 'host-b', 'host-c']
    # A heartbeat every 2 s (ttl / 3): each lists the deployed module that soon.
    servers = cluster_of(redis_server(), server_factory, ['a', 'b', 'c'], ttl=6)
    status, data = deploy(servers[0], module_file(tmp_path, 1))
    assert status == 0, data
    assert {host: outcome['outcome'] for host, outcome in hosts_of(data).items()} == dict.fromkeys(hosts, 'deployed')
    for server in servers:
        wait_until(lambda: version_served(server) == 1, message='version 1 served')

    def one_version():
        answer = members_are(servers[2].server_dir, hosts)
        row = answer and answer[1]['services'].get('cluster.deployed')
        return row and row['same'] and answer
    # Every member lists the module at one SHA-256 at its next heartbeat; `cluster` then exits 0.
    status, view = wait_until(one_version, timeout=30, message='the module listed for every member')
    assert status == 0 and view['consistent'] is True, {name: row for name, row in view['services'].items()
                                                        if not row['same']}
    assert sorted(view['services']['cluster.deployed']['hashes']) == hosts

    status, data = deploy(servers[1], module_file(tmp_path, 2, BROKEN))
    assert status == 1, data
    for host in hosts:
        assert hosts_of(data)[host]['outcome'] == 'refused'
        assert 'RuntimeError' in hosts_of(data)[host]['reason'] or 'exited' in hosts_of(data)[host]['reason'], data
    assert [version_served(server) for server in servers] == [1, 1, 1]


def test_a_record_with_a_bad_signature_is_refused_by_every_member(redis_server, server_factory, tmp_path):
    import redis as redis_py
    from zato_daemon.cluster import modules
    redis = redis_server()
    servers = cluster_of(redis, server_factory, ['a', 'b'])
    record = modules.make_record(b'x' * 40, modules.MODULE, 'deployed.py', MODULE % 9, 'f' * 32, 'intruder', 0)
    client = redis_py.Redis(port=redis.port, decode_responses=True)
    client.hset(modules.modules_key('test'), 'deployed.py', modules.dump_record(record))
    client.xadd(modules.stream_key('test'), {'name': 'deployed.py', 'publication': 'f' * 32})
    outcome_key = modules.outcome_key('test', 'f' * 32)
    outcomes = wait_until(lambda: len(client.hgetall(outcome_key)) == 2 and client.hgetall(outcome_key),
                          message='both outcomes')
    assert {host: json.loads(text)['outcome'] for host, text in outcomes.items()} == \
        {'host-a': 'signature refused', 'host-b': 'signature refused'}
    for server in servers:
        assert not (server.server_dir / 'pickup' / 'deployed.py').exists()
        assert version_served(server) == 404
        assert 'CLUSTER_SIGNATURE_REFUSED' in server.log() or 'does not verify' in server.log()


def test_a_member_away_during_a_deploy_catches_up_and_redis_emptied_changes_nothing(redis_server, server_factory,
                                                                                   tmp_path):
    redis = redis_server()
    first, second = cluster_of(redis, server_factory, ['a', 'b'])
    second.stop()
    status, data = deploy(first, module_file(tmp_path, 3))
    assert status == 0 and list(hosts_of(data)) == ['host-a'], data
    second.start()
    wait_until(lambda: version_served(second) == 3, timeout=30, message='the returning member caught up')

    redis.stop()
    redis.start()  # empty: nothing saved
    wait_until(lambda: members_are(first.server_dir, ['host-a', 'host-b']), timeout=30, message='members back')
    time.sleep(1)
    assert [version_served(first), version_served(second)] == [3, 3]

    result = zato_daemon('undeploy', first.server_dir, 'deployed.py', '--timeout', '40', timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count('undeployed') == 2
    for server in (first, second):
        wait_until(lambda: version_served(server) == 404, message='undeployed')


def test_without_a_key_file_deploy_is_78_and_a_member_refuses_saying_why(redis_server, server_factory, tmp_path):
    redis = redis_server()
    keyless = member(server_factory, redis, 'a', key=None)
    wait_until(lambda: members_are(keyless.server_dir, ['host-a']), timeout=30, message='listed')
    assert keyless.log().count('neither publishes nor accepts cluster deploys') == 1
    result = zato_daemon('deploy', keyless.server_dir, module_file(tmp_path, 4))
    assert result.returncode == 78 and 'cluster.key' in result.stderr, result.stderr


def test_without_a_cluster_deploy_uses_the_local_pickup_directory(server_factory, tmp_path):
    server = server_factory('single')
    status, data = deploy(server, module_file(tmp_path, 5))
    assert status == 0 and [outcome['outcome'] for outcome in hosts_of(data).values()] == ['deployed'], data
    # Accepted into the manifest: the worker follows it within a moment.
    wait_until(lambda: version_served(server) == 5, message='version 5 served')
    status, data = deploy(server, module_file(tmp_path, 6, BROKEN))
    assert status == 1, data
    [outcome] = hosts_of(data).values()
    assert outcome['outcome'] == 'refused' and 'deployed.py' in outcome['reason']
    assert version_served(server) == 5
    assert not any(name.endswith('.tmp') for name in os.listdir(server.server_dir / 'pickup'))
    result = zato_daemon('undeploy', server.server_dir, 'deployed.py', '--timeout', '40', timeout=90)
    assert result.returncode == 0 and 'undeployed' in result.stdout, result.stdout + result.stderr
    wait_until(lambda: version_served(server) == 404, message='undeployed')


def test_an_unreachable_redis_is_69_and_a_bad_file_64(server_factory, tmp_path):
    from tests.integration.helpers import free_port
    server = server_factory('away', start=False, sections=cluster_section(free_port(), 'host-away'))
    (server.server_dir / 'cluster.key').write_bytes(KEY)
    (server.server_dir / 'cluster.key').chmod(0o600)
    result = zato_daemon('deploy', server.server_dir, module_file(tmp_path, 7))
    assert result.returncode == 69 and 'cannot publish to cluster test' in result.stderr, result.stderr
    result = zato_daemon('deploy', server.server_dir, module_file(tmp_path, 8, name='_private.py'))
    assert result.returncode == 64 and 'not a pickup file name' in result.stderr, result.stderr
