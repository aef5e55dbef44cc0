"""Caches declared in server.conf, used by services, across workers and restarts."""

from tests.integration.helpers import ServerProcess, call, free_port, wait_until, write_server_dir, zato_daemon

SERVICE = '''\
from zato_daemon import Service

class Remember(Service):
    name = 'demo.remember'

    def handle(self):
        payload = self.request.payload
        cache = self.caches[payload.get('cache', 'sessions')] if payload.get('cache') != 'default' else self.cache
        if 'value' in payload:
            cache.set(payload['key'], payload['value'])
        self.response.payload = {'value': cache.get(payload['key']), 'pid': self.server.pid}
'''


def start(tmp_path, caches, workers=2):
    port = free_port()
    server_dir = write_server_dir(tmp_path / 'server', port, workers=workers, sections=f'[caches]\n{caches}\n')
    pickup = server_dir / 'pickup'
    pickup.mkdir(exist_ok=True)
    (pickup / 'remember.py').write_text(SERVICE)
    return ServerProcess(server_dir, port).start()


def test_declared_persistent_cache_is_shared_and_survives_a_restart(tmp_path):
    server = start(tmp_path, 'sessions = max_size=100, sync_method=in-background, persistent_storage=sql')
    try:
        status, _, body = call(server.port, 'demo.remember', {'key': 'user', 'value': 'alice'})
        assert (status, body['value']) == (200, 'alice')
        writer = body['pid']
        wait_until(lambda: (lambda answer: answer['pid'] != writer and answer['value'] == 'alice')(
            call(server.port, 'demo.remember', {'key': 'user'})[2]), message='the other worker to see it')
    finally:
        server.stop()
    server.start()
    try:
        assert call(server.port, 'demo.remember', {'key': 'user'})[2]['value'] == 'alice'
    finally:
        server.stop()


def test_a_cache_without_persistence_starts_empty_after_a_restart(tmp_path):
    server = start(tmp_path, 'scratch = sync_method=in-background', workers=1)
    try:
        call(server.port, 'demo.remember', {'cache': 'scratch', 'key': 'k', 'value': 1})
        assert call(server.port, 'demo.remember', {'cache': 'scratch', 'key': 'k'})[2]['value'] == 1
    finally:
        server.stop()
    server.start()
    try:
        assert call(server.port, 'demo.remember', {'cache': 'scratch', 'key': 'k'})[2]['value'] is None
    finally:
        server.stop()


def test_the_default_cache_and_the_admin_services(tmp_path):
    server = start(tmp_path, '', workers=1)
    try:
        call(server.port, 'demo.remember', {'cache': 'default', 'key': 'k', 'value': [1, 2]})
        result = zato_daemon('invoke', server.server_dir, 'zato.cache.builtin.get', '{"key": "k"}', '--json')
        assert result.stdout.strip() == '{"key":"k","value":[1,2],"found":true}'
        bad = zato_daemon('invoke', server.server_dir, 'zato.cache.builtin.set', '{"key": "k"}')
        assert bad.returncode == 1 and 'answered 400' in bad.stderr and 'value: required' in bad.stderr
    finally:
        server.stop()


def test_a_bad_declaration_is_a_config_error(tmp_path):
    server_dir = write_server_dir(tmp_path / 's', free_port(), sections='[caches]\nc = max_size=0, colour=blue\n')
    result = zato_daemon('check-config', server_dir)
    assert result.returncode == 78
    assert '[caches] c:' in result.stderr and 'colour: unknown field' in result.stderr and 'max_size' in result.stderr
