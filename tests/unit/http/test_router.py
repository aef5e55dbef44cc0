"""Routing and status rules, from a parsed request to response bytes, without sockets."""

import json

import pytest

from tests.conftest import REPO_ROOT
from zato_daemon.config import load_config
from zato_daemon.deploy.sources import deploy_configured
from zato_daemon.http.protocol import Request
from zato_daemon.http.router import Router
from zato_daemon.paths import ServerDir
from zato_daemon.services import Service
from zato_daemon.services.host import ServiceHost


class BadHeader(Service):
    name = 'test.bad-header'

    def handle(self):
        self.response.headers['X-Evil'] = 'a\r\nInjected: yes'


class Unserializable(Service):
    name = 'test.unserializable'

    def handle(self):
        self.response.payload = {'value': float('nan')}


class Created(Service):
    name = 'test.created'

    def handle(self):
        self.response.status_code = 201
        self.response.headers['Location'] = '/things/1'
        self.response.payload = {'id': 1, 'cid': self.cid, 'nested': self.invoke('demo.echo', {'n': 1})}


@pytest.fixture
def host(tmp_path):
    config = load_config(REPO_ROOT / 'etc' / 'zato-daemon')
    host = ServiceHost(config, ServerDir(tmp_path))
    deploy_configured(host.store, config, __import__('logging').getLogger('test'))
    host.store.deploy_classes([BadHeader, Unserializable, Created], 'tests')
    return host


def respond(router, method, path, body=b'', keep_alive=True, http_version='1.1'):
    raw = router.respond(Request(method, path, '', {}, body, keep_alive, http_version), keep_alive)
    head, _, payload = raw.partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    headers = dict(line.split(': ', 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(payload) if payload else None


@pytest.mark.parametrize('method, path, body, status', [
    ('POST', '/services/demo.echo', b'{"a": 1}', 200),
    ('POST', '/echo', b'[1, 2]', 200),
    ('GET', '/zato/ping', b'', 200),
    ('POST', '/services/demo.echo', b'{"a": ', 400),
    ('POST', '/services/demo.echo', b'\xff\xfe', 400),
    ('POST', '/services/nope', b'{}', 404),
    ('POST', '/services/', b'{}', 404),
    ('POST', '/elsewhere', b'{}', 404),
    ('POST', '/services/zato.server.info', b'', 404),
    ('GET', '/services/demo.echo', b'', 405),
    ('DELETE', '/echo', b'', 405),
    ('POST', '/services/demo.fail', b'{}', 500),
    ('POST', '/services/test.bad-header', b'', 500),
    ('POST', '/services/test.unserializable', b'', 500),
])
def test_status_rules(host, method, path, body, status):
    router = Router(host, host.config.server_config.channels)
    got, headers, payload = respond(router, method, path, body)
    assert got == status
    assert len(headers['X-Zato-CID']) > 10
    if status >= 400:
        assert payload['cid'] == headers['X-Zato-CID']
        assert payload['status'] == status
        assert 'Traceback' not in payload['error']


def test_admin_router_reaches_builtin_services(host):
    status, _, payload = respond(Router(host, {}, is_admin=True), 'POST', '/services/zato.service.list')
    assert status == 200
    assert 'demo.echo' in [service['name'] for service in payload]


def test_service_status_headers_and_nested_invoke_share_the_cid(host):
    status, headers, payload = respond(Router(host, {}), 'POST', '/services/test.created')
    assert status == 201
    assert headers['Location'] == '/things/1'
    assert payload['cid'] == headers['X-Zato-CID']
    assert payload['nested'] == {'n': 1}


def test_connection_close_and_http10_keep_alive(host):
    router = Router(host, {})
    assert respond(router, 'GET', '/zato/ping', keep_alive=False)[1]['Connection'] == 'close'
    assert respond(router, 'GET', '/zato/ping', http_version='1.0')[1]['Connection'] == 'keep-alive'
