"""A cluster on a real redis-server (issue 18, first part): members, their services compared,
a member killed, Redis down at start, a password. The tests start redis-server themselves, on
a free port in a temporary directory, and kill it at the end."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess

import pytest

from tests.integration.helpers import call, free_port, wait_until, zato_daemon

REDIS_SERVER = shutil.which('redis-server')
PASSWORD = 'Wx7-cluster-s3cret-Q2'

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason='redis-server is not installed (make test-tools)')

PICKUP_MODULE = '''from zato_daemon import Service

class Hello(Service):
    name = 'cluster.hello'

    def handle(self):
        self.response.payload = {'version': %d}
'''


class RedisServer:
    """redis-server on `port`, nothing saved, its files in `directory`."""

    def __init__(self, directory, port, password=None):
        self.directory, self.port, self.password = directory, port, password
        self.socket = directory / 'redis.sock'
        self.process = None

    def start(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [REDIS_SERVER, '--port', str(self.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
                   '--dir', str(self.directory), '--unixsocket', str(self.socket), '--unixsocketperm', '700']
        if self.password:
            command += ['--requirepass', self.password]
        with open(self.directory / 'redis.log', 'ab') as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self.answers, message='redis-server to answer')
        return self

    def answers(self):
        import redis
        if self.process.poll() is not None:
            raise AssertionError(f'redis-server exited: {(self.directory / "redis.log").read_text()}')
        try:
            return redis.Redis(port=self.port, password=self.password, socket_timeout=1).ping()
        except redis.RedisError:
            return False

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def redis_server(tmp_path):
    servers = []

    def make(port=None, password=None, start=True):
        server = RedisServer(tmp_path / f'redis-{len(servers)}', port or free_port(), password)
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in servers:
        server.stop()


def cluster_section(port, host_name, ttl=3, extra=''):
    return f'[cluster]\nredis_url = redis://127.0.0.1:{port}/0\nname = test\nhost_name = {host_name}\n' \
           f'heartbeat_ttl = {ttl}\n{extra}'


def cluster_json(server_dir):
    result = zato_daemon('cluster', server_dir, '--json')
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def members_are(server_dir, hosts):
    """Every host listed with its services known: the cluster's answer then; else None."""
    status, data = cluster_json(server_dir)
    listed = [member['host_name'] for member in data['members']]
    if listed != sorted(hosts) or data['services_unknown']:
        return None
    return status, data


def deploy(server, text, name='hello.py'):
    """A pickup file, written elsewhere and moved into place as the README says."""
    pickup = server.server_dir / 'pickup'
    pickup.mkdir(exist_ok=True)
    temporary = server.server_dir / f'.{name}.tmp'
    temporary.write_text(text)
    os.replace(temporary, pickup / name)


def hash_of(server, service):
    data = json.loads(zato_daemon('info', server.server_dir, '--json', check=True).stdout)
    return next((entry['sha256'] for entry in data['services'] if entry['name'] == service), None)


def test_members_with_the_same_services_agree_and_a_stopped_one_leaves_at_once(redis_server, server_factory):
    redis = redis_server()
    first = server_factory('a', sections=cluster_section(redis.port, 'host-a', ttl=30))
    second = server_factory('b', sections=cluster_section(redis.port, 'host-b', ttl=30))
    status, data = wait_until(lambda: members_are(first.server_dir, ['host-a', 'host-b']),
                              message='both members listed with their services')
    assert status == 0 and data['consistent'] is True
    assert data['redis_url'] == f'redis://127.0.0.1:{redis.port}/0' and data['cluster'] == 'test'
    by_host = {member['host_name']: member for member in data['members']}
    assert by_host['host-a']['pid'] == first.pid and by_host['host-b']['pid'] == second.pid
    assert by_host['host-b']['listen'] == f'127.0.0.1:{second.port}'
    assert data['services']['demo.echo']['same'] is True
    assert set(data['services']['demo.echo']['hashes']) == {'host-a', 'host-b'}
    text = zato_daemon('cluster', second.server_dir)
    assert text.returncode == 0 and 'services: 3, the same on every member' in text.stdout
    assert 'host-a' in text.stdout and 'host-b' in text.stdout
    # A graceful stop removes the record: no waiting for the 30 s TTL.
    second.stop()
    assert wait_until(lambda: members_are(first.server_dir, ['host-a']), timeout=10)[0] == 0
    assert second.log().count('Left cluster test as host-b: removed its record') == 1


def test_a_module_deployed_on_one_member_only_is_a_difference(redis_server, server_factory):
    redis = redis_server()
    first = server_factory('a', sections=cluster_section(redis.port, 'host-a'))
    second = server_factory('b', sections=cluster_section(redis.port, 'host-b'))
    wait_until(lambda: members_are(first.server_dir, ['host-a', 'host-b']))
    deploy(first, PICKUP_MODULE % 1)
    wait_until(lambda: call(first.port, 'cluster.hello')[0] == 200 if hash_of(first, 'cluster.hello') else False)
    first_hash = hash_of(first, 'cluster.hello')

    def differs():
        result = zato_daemon('cluster', first.server_dir)
        return result if 'DIFFERS cluster.hello' in result.stdout else None
    result = wait_until(differs, message='the difference to be listed')
    assert result.returncode == 1
    assert f'    host-a  {first_hash}' in result.stdout and '    host-b  - (not deployed)' in result.stdout
    # Another version on the other member: both hashes named.
    deploy(second, PICKUP_MODULE % 2)
    wait_until(lambda: hash_of(second, 'cluster.hello'))
    second_hash = hash_of(second, 'cluster.hello')
    assert second_hash != first_hash
    result = wait_until(lambda: (lambda r: r if f'host-b  {second_hash}' in r.stdout else None)(
        zato_daemon('cluster', second.server_dir)))
    assert result.returncode == 1 and f'    host-a  {first_hash}' in result.stdout
    # The same file on both: they agree again.
    deploy(second, PICKUP_MODULE % 1)
    assert wait_until(lambda: zato_daemon('cluster', first.server_dir).returncode == 0)


def test_a_member_killed_disappears_after_its_ttl(redis_server, server_factory):
    redis = redis_server()
    first = server_factory('a', sections=cluster_section(redis.port, 'host-a'))
    second = server_factory('b', sections=cluster_section(redis.port, 'host-b'))
    wait_until(lambda: members_are(first.server_dir, ['host-a', 'host-b']))
    # The master and its workers at once: nobody removes the record, it expires.
    os.killpg(second.pid, signal.SIGKILL)
    second.process.wait(10)
    assert [m['host_name'] for m in cluster_json(first.server_dir)[1]['members']] == ['host-a', 'host-b']
    status, data = wait_until(lambda: members_are(first.server_dir, ['host-a']), timeout=3 + 10,
                              message='the killed member to expire (heartbeat_ttl 3 s)')
    assert status == 0


def test_redis_down_at_start_then_up(redis_server, server_factory):
    redis = redis_server(start=False)
    # Bound, not listening: connections are refused, and no test running in parallel gets
    # this port from free_port() meanwhile.
    holder = socket.socket()
    holder.bind(('127.0.0.1', redis.port))
    server = server_factory('a', sections=cluster_section(redis.port, 'host-a'))
    assert call(server.port, 'demo.echo', {'x': 1})[0] == 200

    def unreachable():
        info = json.loads(zato_daemon('info', server.server_dir, '--json', check=True).stdout)
        return info['cluster'] if info['cluster']['state'] == 'unreachable' else None
    cluster = wait_until(unreachable, message='info to say unreachable')
    assert cluster['redis_url'] == f'redis://127.0.0.1:{redis.port}/0' and cluster['reachable'] is False
    assert 'ConnectionError' in cluster['last_error'] and 'refused' in cluster['last_error']
    text = zato_daemon('info', server.server_dir).stdout
    assert f'cluster: test as host-a on redis://127.0.0.1:{redis.port}/0: unreachable (' in text
    assert zato_daemon('cluster', server.server_dir).returncode == 69
    holder.close()
    redis.start()
    wait_until(lambda: members_are(server.server_dir, ['host-a']), timeout=40, message='the member to join')
    info = json.loads(zato_daemon('info', server.server_dir, '--json', check=True).stdout)
    assert wait_until(lambda: json.loads(zato_daemon('info', server.server_dir, '--json').stdout)['cluster'][
        'reachable'])
    log = server.log()
    # Said once each, however many attempts failed in between.
    assert log.count('Cannot reach the Redis of cluster test') == 1
    assert log.count('Joined cluster test') == 1
    assert info['cluster']['host_name'] == 'host-a'


def test_a_password_file_works_and_never_shows(redis_server, server_factory):
    redis = redis_server(password=PASSWORD)
    server = server_factory('a', start=False, sections=cluster_section(redis.port, 'host-a',
                                                                         extra='password_file = redis.password\n'))
    (server.server_dir / 'redis.password').write_text(PASSWORD + '\n')
    server.start()
    other = server_factory('b', sections=cluster_section(redis.port, 'host-b', extra=f'redis_url = '
                                                         f'redis://:{PASSWORD}@127.0.0.1:{redis.port}/0\n'
                                                         ).replace(f'redis_url = redis://127.0.0.1:{redis.port}/0\n',
                                                                   '', 1))
    wait_until(lambda: members_are(server.server_dir, ['host-a', 'host-b']))
    outputs = [zato_daemon('cluster', server.server_dir), zato_daemon('cluster', other.server_dir, '--json'),
               zato_daemon('info', server.server_dir), zato_daemon('info', other.server_dir, '--json'),
               zato_daemon('check-config', server.server_dir), zato_daemon('dump', other.server_dir)]
    assert [result.returncode for result in outputs] == [0, 0, 0, 0, 0, 0]
    assert 'redis://******@127.0.0.1' in outputs[3].stdout
    # The master's dump shows the cluster thread's frames and variables, redacted.
    wait_until(lambda: other.log().count('==== end of zato-daemon dump') >= 2, message='the dumps')
    for text in [*(result.stdout + result.stderr for result in outputs), server.log(), other.log(), server.output(),
                 other.output(), (server.server_dir / 'run' / 'master.json').read_text(),
                 (other.server_dir / 'run' / 'master.json').read_text()]:
        assert PASSWORD not in text


def test_a_wrong_password_is_unreachable_without_showing_it(redis_server, server_factory):
    redis = redis_server(password=PASSWORD)
    server = server_factory('a', start=False, sections=cluster_section(redis.port, 'host-a',
                                                                         extra='password_file = pw\n'))
    (server.server_dir / 'pw').write_text('not-the-password-9\n')
    server.start()
    cluster = wait_until(lambda: (lambda c: c if c['state'] == 'unreachable' else None)(
        json.loads(zato_daemon('info', server.server_dir, '--json', check=True).stdout)['cluster']))
    assert 'Error' in cluster['last_error']
    result = zato_daemon('cluster', server.server_dir)
    assert result.returncode == 69 and 'cannot read the members of cluster test' in result.stderr
    for text in (result.stderr, server.log(), json.dumps(cluster)):
        assert 'not-the-password-9' not in text


def test_cluster_without_redis_url_is_78_and_a_missing_password_file_stops_the_start(tmp_path, server_factory):
    single = server_factory('single', start=False)
    result = zato_daemon('cluster', single.server_dir)
    assert result.returncode == 78 and '[cluster] redis_url is empty' in result.stderr
    assert zato_daemon('cluster', tmp_path / 'nowhere').returncode == 66
    broken = server_factory('broken', start=False, sections=cluster_section(free_port(), 'h',
                                                                             extra='password_file = missing\n'))
    for command in ('check-config', 'start'):
        result = zato_daemon(command, broken.server_dir)
        assert result.returncode == 78, result.stderr
        assert '[cluster] password_file: cannot read' in result.stderr


def test_a_reload_joins_moves_and_leaves_the_cluster(redis_server, server_factory):
    redis = redis_server()
    single = server_factory('a')
    conf = single.server_dir / 'server.conf'
    plain = conf.read_text()
    conf.write_text(plain + cluster_section(redis.port, 'host-a'))
    assert zato_daemon('reload', single.server_dir).returncode == 0
    wait_until(lambda: members_are(single.server_dir, ['host-a']), message='the member to join at the reload')
    # Another member name: the old record goes at once, not at its expiry.
    conf.write_text(plain + cluster_section(redis.port, 'host-z', ttl=60))
    assert zato_daemon('reload', single.server_dir).returncode == 0
    wait_until(lambda: members_are(single.server_dir, ['host-z']), timeout=10)
    # A password file that cannot be read refuses the reload; the member stays.
    conf.write_text(plain + cluster_section(redis.port, 'host-z', ttl=60, extra='password_file = missing\n'))
    result = zato_daemon('reload', single.server_dir)
    assert result.returncode == 78 and '[cluster] password_file: cannot read' in result.stderr
    conf.write_text(plain + cluster_section(redis.port, 'host-z', ttl=60))
    assert members_are(single.server_dir, ['host-z'])
    # Left out again: the member leaves, and info says nothing of a cluster.
    observer = single.server_dir.parent / 'observer'
    observer.mkdir()
    (observer / 'server.conf').write_text(cluster_section(redis.port, 'observer'))
    conf.write_text(plain)
    assert zato_daemon('reload', single.server_dir).returncode == 0
    status, data = wait_until(lambda: (lambda r: r if not r[1]['members'] else None)(cluster_json(observer)),
                              timeout=10)
    assert status == 1
    assert json.loads(zato_daemon('info', single.server_dir, '--json', check=True).stdout)['cluster'] is None
    # Said once, naming the member it was at the time.
    assert single.log().count('Left cluster test as host-z: removed its record') == 1


def test_a_unix_socket_url(redis_server, server_factory):
    redis = redis_server()
    server = server_factory('a', sections=f'[cluster]\nredis_url = unix://{redis.socket}\nhost_name = local\n'
                                           'heartbeat_ttl = 3\n')
    status, data = wait_until(lambda: members_are(server.server_dir, ['local']))
    assert status == 0 and data['redis_url'] == f'unix://{redis.socket}'


def redis_clients(port):
    """The pids holding a TCP connection to 127.0.0.1:port, as ss sees them."""
    output = subprocess.run(['ss', '-Htnp', 'state', 'established', 'dst', f'127.0.0.1:{port}'], capture_output=True,
                            text=True, check=True).stdout
    return {int(pid) for pid in re.findall(r'pid=(\d+)', output)}


@pytest.mark.skipif(shutil.which('ss') is None, reason='ss (iproute2) is not installed')
def test_only_the_master_holds_a_connection_to_redis(redis_server, server_factory):
    redis = redis_server()
    server = server_factory('a', workers=2, sections=cluster_section(redis.port, 'host-a'))
    wait_until(lambda: members_are(server.server_dir, ['host-a']))
    # Workers forked after the master connected (a reload starts new ones) hold no copy of it.
    assert zato_daemon('reload', server.server_dir).returncode == 0
    workers = set(server.worker_pids())
    assert len(workers) == 2
    # Compared with this server's processes only: a server of a test running in parallel may
    # knock on the same port.
    clients = redis_clients(redis.port)
    assert server.pid in clients and not clients & workers


def test_workers_drained_at_a_reload_end_at_once_though_the_cluster_thread_asked_them_at_their_fork(
        redis_server, server_factory):
    # The cluster thread asks the workers for their services through the admin socket, from
    # start on; the master forked its first workers while that call was under way, and the
    # worker that accepted it held the client end too: never an end of file, so at the next
    # reload that worker drained until graceful_timeout (30 s), and a stop waited as long.
    redis = redis_server()
    server = server_factory('a', workers=2, start=False, sections=cluster_section(redis.port, 'host-a', ttl=15))
    conf = server.server_dir / 'server.conf'
    # Long enough that a worker held by the connection is told from one that ends at once.
    conf.write_text(conf.read_text().replace('graceful_timeout = 10', 'graceful_timeout = 60'))
    server.start()
    old = server.worker_pids()
    assert zato_daemon('reload', server.server_dir).returncode == 0

    def old_gone():
        return not any(os.path.exists(f'/proc/{pid}') and not _is_zombie(pid) for pid in old)
    wait_until(old_gone, timeout=15, message='the drained workers to end, well within graceful_timeout')


def _is_zombie(pid):
    try:
        with open(f'/proc/{pid}/stat') as stat:
            return stat.read().rpartition(')')[2].split()[0] == 'Z'
    except OSError:
        return True
