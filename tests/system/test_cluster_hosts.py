"""A cluster of three real hosts (issue 18): the .deb installed in three booted Debian 12
containers, each in its own network namespace on a bridge (tests/system/hosts.py), and Debian's
redis-server on host 1, with a password (requirepass) that every member reads from its
password_file.

What is tested is what exists of the cluster: membership and `zato-daemon cluster`, across
hosts, with Redis stopped and a host cut off the network. The tests run in file order on one
LAN; each first brings the cluster back to full health (`healthy`), so that one failing does
not fail the next. The cases of the pure helpers (LAN names and addresses, config editing)
come first and need no container.
"""

import hashlib
import ipaddress
import json
import re
import secrets
import time

import pytest

from tests.system.conftest import is_loadgroup
from tests.system.container import PACKAGES, base_tree, host_problems, poll
from tests.system.helpers import CONFIG_DIR, PORT, UNIT, assert_active, install, post, restart, server_info, systemctl
from tests.system import hosts
from zato_daemon.logs import levels

pytestmark = pytest.mark.xdist_group('system')

TREE_PACKAGES = PACKAGES + ('redis-server',)
REDIS_UNIT = 'redis-server'
REDIS_PORT = 6379
CLUSTER = 'lan'
# Short, so that a member cut off or killed is gone within seconds; heartbeats every 5/3 s.
HEARTBEAT_TTL = 5
# From zato_daemon/cluster/connection.py (not imported: that imports redis-py, which the test
# runner need not have): a member waits at most BACKOFF_MAX between attempts, each of which
# gives up after TIMEOUT.
BACKOFF_MAX = 30
REDIS_TIMEOUT = 2
# How long a member may take to be listed again once it reaches Redis again: its back-off's
# longest wait, one attempt, and a little for `cluster` itself.
REJOIN_BOUND = BACKOFF_MAX + REDIS_TIMEOUT + 5
PASSWORD_FILE = 'redis.password'
PICKUP_DIR = '/var/lib/zato-daemon/pickup'
PICKUP_NAME = 'hosts_hello.py'
PICKUP_SERVICE = 'cluster.hosts.hello'
PICKUP_MODULE = b'''from zato_daemon import Service


class Hello(Service):
    name = 'cluster.hosts.hello'

    def handle(self):
        self.response.payload = {'hello': 'from the cluster'}
'''


# ---- pure helpers, and their cases

def with_settings(text, section, values):
    """`text` of an ini file with the `key = value` lines of `section` set to `values`. Every
    key must be there already (the shipped server.conf lists every key): a key missing is a
    ValueError, never a second line the loader would refuse."""
    lines = text.splitlines(keepends=True)
    current, missing = None, dict(values)
    for number, line in enumerate(lines):
        header = re.match(r'\[([^]]+)\]\s*$', line)
        if header:
            current = header[1]
            continue
        key = re.match(r'([^#;\s][^=]*?)\s*=', line)
        if current == section and key and key[1] in missing:
            lines[number] = f'{key[1]} = {missing.pop(key[1])}\n'
    if missing:
        raise ValueError(f'[{section}] has no {", ".join(sorted(missing))}')
    return ''.join(lines)


def test_with_settings_sets_keys_of_the_section_only():
    text = '[main]\nname = a\n\n[cluster]\n# name = in a comment\nname = default\nhost_name =\n'
    assert with_settings(text, 'cluster', {'name': 'lan', 'host_name': 'h1'}) == \
        '[main]\nname = a\n\n[cluster]\n# name = in a comment\nname = lan\nhost_name = h1\n'


def test_with_settings_refuses_a_key_the_section_lacks():
    with pytest.raises(ValueError, match=r'\[cluster\] has no heartbeat_ttl'):
        with_settings('[main]\nheartbeat_ttl = 1\n[cluster]\nname = x\n', 'cluster', {'heartbeat_ttl': 5})


def test_lan_namespace_names_carry_the_pid():
    assert hosts.namespace_names(42, 'abc123', 2) == ('zt-lan-42-abc123', ['zt-h1-42-abc123', 'zt-h2-42-abc123'])


@pytest.mark.parametrize('name, alive, stale', [
    ('zt-lan-42-abc123', False, True),
    ('zt-h3-42-abc123', False, True),
    ('zt-lan-42-abc123', True, False),   # a run still going
    ('zt-lan', False, False),            # not one of ours: DESIGN.md's manual recipe
    ('zt-h1', False, False),
    ('other-42-abc123', False, False),
    ('zt-lan-42-abc123-x', False, False),
])
def test_stale_namespaces(name, alive, stale):
    assert hosts.stale_namespaces([name], lambda pid: alive) == ([name] if stale else [])


def nets(*texts):
    return [ipaddress.ip_network(text, strict=False) for text in texts]


@pytest.mark.parametrize('used, subnet', [
    ([], '10.231.0.0/24'),
    (nets('192.0.2.0/24', 'fd00::/64'), '10.231.0.0/24'),
    (nets('10.231.7.0/24'), '10.232.0.0/24'),          # anywhere in the /16 counts
    (nets('10.231.0.0/16', '10.232.5.5/32'), '10.233.0.0/24'),
    (nets('10.0.0.0/8'), None),                        # all of 10/8: none is free
])
def test_free_subnet(used, subnet):
    if subnet is None:
        with pytest.raises(hosts.LanError, match='is used on this machine'):
            hosts.free_subnet(used)
    else:
        assert hosts.free_subnet(used) == ipaddress.ip_network(subnet)


def test_networks_in_use_reads_addresses_and_routes_but_not_the_default():
    addresses = json.dumps([{'ifname': 'eth0', 'addr_info': [
        {'family': 'inet', 'local': '192.0.2.2', 'prefixlen': 24},
        {'family': 'inet6', 'local': 'fd00::2', 'prefixlen': 64}]}])
    routes = json.dumps([{'dst': 'default', 'gateway': '192.0.2.1'}, {'dst': '10.240.0.0/16'},
                         {'dst': '10.241.3.4'}])
    assert hosts.networks_in_use(addresses, routes) == nets('192.0.2.0/24', '10.240.0.0/16', '10.241.3.4/32')


def test_host_address():
    subnet = ipaddress.ip_network('10.231.0.0/24')
    assert [str(hosts.host_address(subnet, index)) for index in (1, 2, 254)] == ['10.231.0.1', '10.231.0.2',
                                                                             '10.231.0.254']
    for index in (0, 255):
        with pytest.raises(ValueError, match='does not fit'):
            hosts.host_address(subnet, index)


# ---- the LAN and the cluster

@pytest.fixture(scope='module')
def lan(request):
    """Three booted hosts on a bridge; redis-server.service masked in each (its default
    configuration is not the cluster's), unmasked and configured on h1 by `cluster`."""
    if not is_loadgroup(request.config):
        pytest.fail('system tests under pytest-xdist need --dist loadgroup', pytrace=False)
    problems = host_problems() + hosts.host_problems()
    if problems:
        pytest.fail('cannot run the system tests on this machine: ' + '; '.join(problems), pytrace=False)
    started = time.monotonic()
    base = base_tree(TREE_PACKAGES)
    print(f'\nbase tree {base.name}: {time.monotonic() - started:.1f} s (0 when cached)')
    started = time.monotonic()
    with hosts.Lan(base, 3, masked=(f'{REDIS_UNIT}.service',)) as made:
        print(f'LAN {made.subnet}: 3 hosts booted in {time.monotonic() - started:.1f} s')
        yield made


def redis_config(address, password):
    """Debian's redis-server.service runs `redis-server /etc/redis/redis.conf --supervised
    systemd --daemonize no`: this is that file, on h1's LAN address and loopback, nothing kept
    on disk (a Redis restart starts empty, as after a failover to a fresh one)."""
    return (f'bind {address} 127.0.0.1\nport {REDIS_PORT}\nrequirepass {password}\nprotected-mode yes\n'
            'save ""\nappendonly no\nlogfile ""\ndir /var/lib/redis\npidfile /run/redis/redis-server.pid\n').encode()


@pytest.fixture(scope='module')
def cluster(lan, package_deb):
    """The .deb installed on every host, each a member of cluster `lan` on h1's Redis with the
    password in /etc/zato-daemon/redis.password; returns the password."""
    password = secrets.token_urlsafe(24)
    h1 = lan.host('h1')
    h1.container.run(['systemctl', 'unmask', REDIS_UNIT])
    h1.container.put('/etc/redis/redis.conf', redis_config(h1.address, password), mode=0o640)
    h1.container.run(['chown', 'redis:redis', '/etc/redis/redis.conf'])
    systemctl(h1.container, 'start', REDIS_UNIT)
    assert_active(h1.container, REDIS_UNIT)
    url = f'redis://{h1.address}:{REDIS_PORT}/0'
    for host in lan.hosts:
        container = host.container
        result = install(container, package_deb)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        # Redis answers across the LAN, and wants the password.
        assert redis_cli(container, h1.address, password, 'ping').stdout.strip() == 'PONG'
        container.put(f'{CONFIG_DIR}/{PASSWORD_FILE}', f'{password}\n'.encode(), mode=0o640)
        container.run(['chown', 'root:zato', f'{CONFIG_DIR}/{PASSWORD_FILE}'])
        conf = container.get(f'{CONFIG_DIR}/server.conf').decode()
        container.put(f'{CONFIG_DIR}/server.conf', with_settings(conf, 'cluster', {
            'redis_url': url, 'password_file': PASSWORD_FILE, 'name': CLUSTER, 'host_name': host.name,
            'heartbeat_ttl': HEARTBEAT_TTL}).encode())
        restart(container)
    return password


def redis_cli(container, address, password, *command):
    # REDISCLI_AUTH, not -a: the password stays out of the process list.
    return container.run(['env', f'REDISCLI_AUTH={password}', 'redis-cli', '-h', str(address), '-p',
                          str(REDIS_PORT), *command])


def cluster_view(container, *options):
    """(exit status, output) of `zato-daemon cluster /etc/zato-daemon OPTIONS` inside."""
    result = container.run(['zato-daemon', 'cluster', CONFIG_DIR, *options], check=False)
    return result.returncode, result.stdout + result.stderr


def view_json(container):
    """(exit status, the --json document, or None when the command printed none)."""
    status, output = cluster_view(container, '--json')
    try:
        return status, json.loads(output)
    except ValueError:
        return status, None


def listed(container):
    """The host names `cluster` lists, as seen from `container`; None when it cannot tell."""
    _, view = view_json(container)
    return None if view is None else sorted(member['host_name'] for member in view['members'])


def all_listed(lan, seen_from='h2'):
    """The three members are listed with their services known: `cluster` exits 0."""
    status, view = view_json(lan.host(seen_from).container)
    return status == 0 and view and sorted(member['host_name'] for member in view['members']) == ['h1', 'h2', 'h3']


def journal_events(container, event):
    output = container.journal('-u', UNIT, '-o', 'json', f'MESSAGE_ID={event.message_id}')
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def cluster_state(container):
    return server_info(container)['cluster']['state']


def echo_serves(container):
    status, _, body = post(container, PORT, '/services/demo.echo', {'from': 'a host of the LAN'})
    assert status == 200, body
    assert json.loads(body) == {'from': 'a host of the LAN'}


@pytest.fixture
def healthy(lan, cluster):
    """Every link up, Redis and every server running, all three listed (after an earlier test
    that failed half-way, too)."""
    for host in lan.hosts:
        if not lan.link_up(host):
            lan.restore(host)
    h1 = lan.host('h1').container
    if systemctl(h1, 'is-active', REDIS_UNIT, check=False).stdout.strip() != 'active':
        systemctl(h1, 'start', REDIS_UNIT)
    for host in lan.hosts:
        if systemctl(host.container, 'is-active', UNIT, check=False).stdout.strip() != 'active':
            restart(host.container)
    poll(lambda: all_listed(lan), REJOIN_BOUND, interval=0.5, message='h1, h2 and h3 listed with their services')
    return lan


def test_every_member_is_listed_with_one_version_and_the_same_services(healthy):
    status, view = view_json(healthy.host('h2').container)
    assert status == 0, view
    assert view['consistent'] is True and view['cluster'] == CLUSTER
    assert view['redis_url'] == f'redis://{healthy.host("h1").address}:{REDIS_PORT}/0'
    assert [member['host_name'] for member in view['members']] == ['h1', 'h2', 'h3']
    assert len({member['version'] for member in view['members']}) == 1
    assert len({member['pid'] for member in view['members']}) >= 1
    services = view['services']
    assert {'demo.echo', 'demo.sleep', 'demo.fail'} <= set(services)
    for name, row in services.items():
        assert row['same'] is True, (name, row)
        assert sorted(row['hashes']) == ['h1', 'h2', 'h3'] and len(set(row['hashes'].values())) == 1, (name, row)


def test_the_password_shows_nowhere(healthy, cluster):
    for host in healthy.hosts:
        container = host.container
        info = container.run(['zato-daemon', 'info', CONFIG_DIR]).stdout
        assert 'cluster: lan as' in info and cluster not in info
        _, text = cluster_view(container)
        assert cluster not in text
        assert cluster not in container.journal()  # every unit's, the server's included
        assert cluster.encode() not in container.get('/var/log/zato-daemon/server.log')


def drop_pickup_file(container):
    # Written beside the pickup directory and moved in, as the README says: the server never
    # sees half a file.
    container.put(f'/var/lib/zato-daemon/.{PICKUP_NAME}.new', PICKUP_MODULE)
    container.run(['mv', f'/var/lib/zato-daemon/.{PICKUP_NAME}.new', f'{PICKUP_DIR}/{PICKUP_NAME}'])


def test_a_module_on_one_host_only_differs_until_every_host_has_it(healthy):
    h1, h2, h3 = (healthy.host(name).container for name in ('h1', 'h2', 'h3'))
    for container in (h1, h2, h3):
        container.run(['rm', '-f', f'{PICKUP_DIR}/{PICKUP_NAME}'])
    poll(lambda: all_listed(healthy) and PICKUP_SERVICE not in view_json(h2)[1]['services'], 30,
         interval=0.5, message=f'{PICKUP_SERVICE} deployed nowhere')
    sha256 = hashlib.sha256(PICKUP_MODULE).hexdigest()

    drop_pickup_file(h1)

    def differs():
        status, view = view_json(h2)
        return status == 1 and view and PICKUP_SERVICE in view['services'] and (status, view)

    status, view = poll(differs, 30, interval=0.5, message=f'{PICKUP_SERVICE} listed for h1 only')
    assert view['consistent'] is False
    assert view['services'][PICKUP_SERVICE] == {'same': False, 'hashes': {'h1': sha256, 'h2': None, 'h3': None}}
    status, text = cluster_view(h2)
    assert status == 1
    assert f'DIFFERS {PICKUP_SERVICE}' in text and f'h1  {sha256}' in text, text

    drop_pickup_file(h2)
    drop_pickup_file(h3)
    poll(lambda: all_listed(healthy), 30, interval=0.5, message='the module on every host, cluster exit 0')
    assert view_json(h2)[1]['services'][PICKUP_SERVICE] == {'same': True,
                                                            'hashes': {'h1': sha256, 'h2': sha256, 'h3': sha256}}
    for container in (h1, h2, h3):
        status, _, body = post(container, PORT, f'/services/{PICKUP_SERVICE}', {})
        assert (status, json.loads(body)) == (200, {'hello': 'from the cluster'})


def test_redis_stopped_every_host_serves_on_and_every_member_rejoins(healthy):
    h1 = healthy.host('h1').container
    warned_before = {host.name: len(journal_events(host.container, levels.CLUSTER_UNREACHABLE))
                     for host in healthy.hosts}
    systemctl(h1, 'stop', REDIS_UNIT)
    try:
        for host in healthy.hosts:
            poll(lambda: cluster_state(host.container) == 'unreachable', HEARTBEAT_TTL + REDIS_TIMEOUT + 5,
                 interval=0.5, message=f'{host.name} saying the cluster is unreachable')
        for host in healthy.hosts:
            echo_serves(host.container)
            info = server_info(host.container)
            assert info['cluster']['reachable'] is False and 'ConnectionError' in info['cluster']['last_error']
        assert cluster_view(healthy.host('h3').container)[0] == 69
        # Past the first retries of the back-off (1 s, then 2 s), which must not warn again.
        since = min(server_info(host.container)['cluster']['since'] for host in healthy.hosts)
        poll(lambda: time.time() - since > 4, 10, interval=0.5, message='two retries of the back-off')
        for host in healthy.hosts:
            warned = len(journal_events(host.container, levels.CLUSTER_UNREACHABLE))
            assert warned == warned_before[host.name] + 1, f'{host.name}: {warned - warned_before[host.name]} warnings'
            assert_active(host.container)
    finally:
        systemctl(h1, 'start', REDIS_UNIT)
    started = time.monotonic()
    poll(lambda: all_listed(healthy), REJOIN_BOUND, interval=0.5, message='every member listed again')
    print(f'\nRedis back: every member listed again after {time.monotonic() - started:.1f} s')
    for host in healthy.hosts:
        assert cluster_state(host.container) == 'reachable'


def test_a_host_cut_off_serves_locally_expires_and_rejoins(healthy):
    h2, h3 = healthy.host('h2').container, healthy.host('h3').container
    healthy.cut('h3')
    cut_at = time.monotonic()
    try:
        echo_serves(h3)
        poll(lambda: listed(h2) == ['h1', 'h2'], HEARTBEAT_TTL + 10, interval=0.5,
             message='h3 gone from cluster after its heartbeat expired')
        gone_after = time.monotonic() - cut_at
        poll(lambda: cluster_state(h3) == 'unreachable', REJOIN_BOUND, interval=0.5,
             message='h3 saying the cluster is unreachable')
        echo_serves(h3)
        assert listed(h3) is None and cluster_view(h3)[0] == 69  # h3 cannot read Redis either
    finally:
        healthy.restore('h3')
    restored_at = time.monotonic()
    poll(lambda: all_listed(healthy), REJOIN_BOUND, interval=0.5, message='h3 listed again')
    print(f'\nh3 cut: gone after {gone_after:.1f} s (heartbeat_ttl {HEARTBEAT_TTL}); '
          f'listed again {time.monotonic() - restored_at:.1f} s after the link came back')


def test_a_stopped_member_is_gone_at_once(healthy):
    h2, h3 = healthy.host('h2').container, healthy.host('h3').container
    _, before = view_json(h3)
    [last_seen] = [member['last_seen'] for member in before['members'] if member['host_name'] == 'h2']
    systemctl(h2, 'stop', UNIT)
    # Read once, right after the stop: h2's key, had it not been removed, would still live.
    assert listed(h3) == ['h1', 'h3']
    assert time.time() - last_seen < HEARTBEAT_TTL, 'the stop took too long to tell removal from expiry'
    assert listed(h2) == ['h1', 'h3']  # `cluster` needs no server running on its host
