"""Routing, admission and status rules, from a parsed request to response bytes, without sockets."""

import json
import logging

import gevent
import pytest
from greenlet import GreenletExit

from tests.conftest import REPO_ROOT
from zato_daemon.config import load_config
from zato_daemon.deploy.sources import deploy_configured
from zato_daemon.errors import ConnectionAborted, HttpError
from zato_daemon.http.protocol import Request
from zato_daemon.http.router import Router
from zato_daemon.paths import ServerDir
from zato_daemon.services import Service
from zato_daemon.services.host import ServiceHost

JSON = {'content-type': 'application/json'}


class CustomBaseException(BaseException):
    pass


def raising(name, make_exception):
    class Raising(Service):
        def handle(self):
            raise make_exception()
    Raising.name = name
    return Raising


def answering(name, **response):
    class Answering(Service):
        def handle(self):
            for key, value in response.items():
                setattr(self.response, key, value)
    Answering.name = name
    return Answering


class SelfReferencing(Service):
    name = 'test.circular'

    def handle(self):
        payload = {}
        payload['self'] = payload
        self.response.payload = payload


class Unprintable:
    def __str__(self):
        raise RuntimeError('no text for this one')


class UnprintableError(Exception):
    def __str__(self):
        raise RuntimeError('no text for this exception either')


def _deep(levels):
    value = []
    for _ in range(levels):
        value = [value]
    return value


RAISING = {
    'test.keyboard-interrupt': KeyboardInterrupt,
    'test.system-exit': lambda: SystemExit(3),
    'test.generator-exit': GeneratorExit,
    'test.greenlet-exit': GreenletExit,
    'test.custom-base': CustomBaseException,
    'test.gevent-timeout': lambda: gevent.Timeout(1),
    'test.value-error': lambda: ValueError('plain failure'),
    'test.connection-aborted': ConnectionAborted,
    'test.unprintable-exception': lambda: UnprintableError(),
}

UNSENDABLE = {
    'test.nan': {'payload': {'value': float('nan')}},
    'test.surrogate': {'payload': {'text': 'a\ud800b'}},
    'test.too-deep': {'payload': _deep(5000)},
    'test.unprintable': {'payload': {'x': Unprintable()}},
    'test.status-100': {'status_code': 100},
    'test.status-101': {'status_code': 101},
    'test.status-199': {'status_code': 199},
    'test.status-600': {'status_code': 600},
    'test.status-text': {'status_code': '200'},
    'test.status-bool': {'status_code': True},
    'test.header-crlf': {'headers': {'X-Evil': 'a\r\nInjected: yes'}},
    'test.header-nul': {'headers': {'X-Evil': 'a\x00b'}},
    'test.header-name': {'headers': {'X Evil': 'a'}},
    'test.header-unicode': {'headers': {'X-Name': 'caf\u20ac'}},
}


@pytest.fixture
def host(tmp_path):
    config = load_config(REPO_ROOT / 'etc' / 'zato-daemon')
    host = ServiceHost(config, ServerDir(tmp_path).resolve(config))
    deploy_configured(host.store, config, (), logging.getLogger('test'))
    classes = [raising(name, factory) for name, factory in RAISING.items()]
    classes += [answering(name, **response) for name, response in UNSENDABLE.items()]
    classes += [SelfReferencing, answering('test.created', status_code=201, payload={'id': 1},
                                           headers={'Location': '/things/1'}),
                answering('test.owned-headers', payload={'a': 1},
                          headers={'Content-Length': '999', 'Transfer-Encoding': 'chunked', 'Connection': 'close',
                                   'Date': 'yesterday', 'X-Zato-CID': 'forged', 'Server': 'other',
                                   'Content-Encoding': 'gzip', 'Access-Control-Allow-Origin': '*',
                                   'X-Kept': 'yes'}),
                answering('test.problem-json', status_code=409, payload={'title': 'conflict'},
                          headers={'content-type': 'application/problem+json'}),
                answering('test.html', payload='<b>', headers={'Content-Type': 'text/html'}),
                answering('test.no-content', status_code=204, payload={'dropped': True}),
                answering('test.reset-content', status_code=205, payload={'dropped': True})]
    host.store.deploy_classes(classes, 'tests')
    return host


def respond(router, method, path, body=b'', headers=None, keep_alive=True, http_version='1.1'):
    request = Request(method, path, '', dict(JSON if headers is None else headers), body, keep_alive, http_version)
    raw = router.respond(request, keep_alive)
    head, _, payload = raw.partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    pairs = [line.split(': ', 1) for line in lines[1:]]
    return int(lines[0].split()[1]), dict(pairs), (json.loads(payload) if payload else None), pairs


@pytest.mark.parametrize('method, path, body, headers, status', [
    ('POST', '/services/demo.echo', b'{"a": 1}', JSON, 200),
    ('POST', '/echo', b'[1, 2]', JSON, 200),
    ('POST', '/echo', b'[1, 2]', {'content-type': 'application/json; charset=UTF-8'}, 200),
    ('POST', '/echo', b'[1, 2]', {'content-type': 'application/vnd.api+json'}, 200),
    ('POST', '/echo', b'', JSON, 200),
    ('GET', '/zato/ping', b'', {}, 200),
    ('POST', '/zato/ping', b'', JSON, 200),
    ('POST', '/services/demo.echo', b'{"a": ', JSON, 400),
    ('POST', '/services/demo.echo', b'\xff\xfe', JSON, 400),
    ('POST', '/services/nope', b'{}', JSON, 404),
    ('POST', '/services/', b'{}', JSON, 404),
    ('POST', '/elsewhere', b'{}', JSON, 404),
    ('POST', '/services/zato.server.info', b'', JSON, 404),
    ('GET', '/services/demo.echo', b'', {}, 405),
    ('DELETE', '/echo', b'', JSON, 405),
    ('POST', '/services/demo.fail', b'{}', JSON, 500),
    # What a browser sends cross-site without a preflight, and what curl -d sends.
    ('POST', '/echo', b'{"a": 1}', {}, 415),
    ('POST', '/echo', b'', {}, 415),
    ('POST', '/echo', b'{"a": 1}', {'content-type': 'text/plain'}, 415),
    ('POST', '/echo', b'a=1', {'content-type': 'application/x-www-form-urlencoded'}, 415),
    ('POST', '/echo', b'--x--', {'content-type': 'multipart/form-data; boundary=x'}, 415),
    ('POST', '/echo', b'[1]', {'content-type': 'application/json; charset=latin-1'}, 415),
    ('POST', '/echo', b'[1]', {'content-type': 'application/jsonp'}, 415),
    ('GET', '/zato/ping', b'{}', {}, 415),
    ('POST', '/echo', b'[1]', {'origin': 'https://evil.example', **JSON}, 403),
    ('POST', '/echo', b'[1]', {'origin': 'null', **JSON}, 403),
    ('GET', '/zato/ping', b'', {'origin': 'https://evil.example'}, 403),
])
def test_status_rules(host, method, path, body, headers, status):
    got, response_headers, payload, _ = respond(Router(host, host.config.server_config.channels), method, path,
                                                body, headers)
    assert got == status
    assert len(response_headers['X-Zato-CID']) > 10
    if status >= 400:
        assert payload['cid'] == response_headers['X-Zato-CID']
        assert payload['status'] == status
        assert 'Traceback' not in payload['error']


@pytest.mark.parametrize('body, problem', [
    (b'[' * 65 + b']' * 65, 'nested deeper than 64 levels'),
    (b'[' * 5000, 'nested deeper than 64 levels'),
    (b'{"a": NaN}', 'NaN is not a JSON value'),
    (b'[Infinity]', 'Infinity is not a JSON value'),
    (b'[-Infinity]', '-Infinity is not a JSON value'),
    (b'[1e999]', 'too large for a float'),
    (b'{"a": "\\ud800"}', 'lone surrogate'),
    (b'{"\\udfff": 1}', 'lone surrogate'),
    (b'"\xed\xa0\x80"', 'not UTF-8'),
    (b'"caf\xe9"', 'not UTF-8'),
    (b'\xef\xbb\xbf{}', 'malformed JSON'),
    (b'{"a": 1} x', 'malformed JSON'),
])
def test_unacceptable_json_is_400_saying_why(host, body, problem):
    status, _, payload, _ = respond(Router(host, {}), 'POST', '/services/demo.echo', body)
    assert status == 400
    assert problem in payload['error']


def test_json_at_the_depth_limit_and_valid_pairs_are_accepted(host):
    router = Router(host, {})
    nested = b'[' * 64 + b']' * 64
    assert respond(router, 'POST', '/services/demo.echo', nested)[0] == 200
    assert respond(router, 'POST', '/services/demo.echo', b'"\\ud83d\\ude00"')[2] == '\U0001f600'


@pytest.mark.parametrize('name', sorted(RAISING))
def test_every_exception_a_service_raises_is_a_500_with_one_error_record(host, caplog, name):
    status, headers, payload, _ = respond(Router(host, {}), 'POST', f'/services/{name}')
    assert status == 500
    assert payload['cid'] == headers['X-Zato-CID']
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].cid == payload['cid'] and errors[0].service == name
    assert errors[0].exc_info is not None and errors[0].message_id


class HttpErrorWith(Service):
    """Raises HttpError with the status and message the request names, of whatever type."""

    name = 'test.http-error'

    def handle(self):
        payload = self.request.payload
        raise HttpError(Unprintable() if payload.get('unprintable') else payload['message'], payload['status'])


@pytest.mark.parametrize('status, message, expected', [
    (404, 'no such customer', 404),
    (409, 'conflict', 409),
    (503, 'busy', 503),
    (450.5, 'fractional', 500),
    ('404', 'text status', 500),
    (302, 'redirect', 500),
    (600, 'too big', 500),
    (True, 'boolean', 500),
])
def test_a_service_refusing_a_call_sets_a_4xx_and_anything_else_is_a_500(host, status, message, expected):
    host.store.deploy_classes([HttpErrorWith], 'errors')
    got, headers, payload, _ = respond(Router(host, {}), 'POST', '/services/test.http-error',
                                       json.dumps({'status': status, 'message': message}).encode())
    assert (got, payload['status']) == (expected, expected)
    assert (message in payload['error']) is (400 <= expected < 500)


def test_an_http_error_whose_message_cannot_be_shown_is_a_500(host):
    host.store.deploy_classes([HttpErrorWith], 'errors')
    assert respond(Router(host, {}), 'POST', '/services/test.http-error',
                   b'{"status": 404, "unprintable": true}')[0] == 500


class FailingRecorder:
    def after_call(self, *args):
        raise RuntimeError('the recorder broke')


def test_a_failing_recorder_never_costs_the_answer(host, caplog):
    status, _, payload, _ = respond(Router(host, {}, recorder=FailingRecorder()), 'POST', '/services/demo.echo',
                                    b'[1]')
    assert (status, payload) == (200, [1])
    assert 'Cannot record the call' in caplog.text


def test_a_bug_of_the_router_is_a_500_with_the_cid(host, caplog, monkeypatch):
    router = Router(host, {})
    monkeypatch.setattr(router, 'route', lambda path: 1 / 0)
    status, headers, payload, _ = respond(router, 'POST', '/services/demo.echo', b'[1]')
    assert status == 500 and payload['cid'] == headers['X-Zato-CID']
    assert 'ZeroDivisionError' in caplog.text


def test_head_gets_the_headers_of_get_and_no_body(host):
    router = Router(host, {})
    raw = router.respond(Request('HEAD', '/zato/ping', '', {}, b'', True, '1.1'), True)
    head, _, body = raw.partition(b'\r\n\r\n')
    assert head.startswith(b'HTTP/1.1 200 ') and b'Content-Length: ' in head and body == b''
    raw = router.respond(Request('HEAD', '/services/demo.echo', '', {}, b'', True, '1.1'), True)
    assert raw.startswith(b'HTTP/1.1 405 ') and raw.endswith(b'\r\n\r\n')


@pytest.mark.parametrize('name', sorted(UNSENDABLE))
def test_a_response_that_cannot_be_sent_is_a_500_with_its_error_record_in_full(host, caplog, name):
    status, headers, payload, _ = respond(Router(host, {}), 'POST', f'/services/{name}', b'{"in": 1}')
    assert status == 500
    assert payload['cid'] == headers['X-Zato-CID']
    [error] = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert name in error.getMessage() and '{"in": 1}' in error.getMessage()
    assert error.exc_info is not None


def test_circular_payload_is_a_500(host):
    assert respond(Router(host, {}), 'POST', '/services/test.circular')[0] == 500


def test_admin_router_reaches_builtin_services(host):
    status, _, payload, _ = respond(Router(host, {}, is_admin=True), 'POST', '/services/zato.service.list')
    assert status == 200
    assert 'demo.echo' in [service['name'] for service in payload]


def test_service_status_and_headers(host):
    status, headers, payload, _ = respond(Router(host, {}), 'POST', '/services/test.created')
    assert (status, headers['Location'], payload) == (201, '/things/1', {'id': 1})


def test_headers_the_server_owns_are_sent_once_and_the_attempt_logged_once(host, caplog):
    router = Router(host, {})
    for _ in range(2):
        status, headers, payload, pairs = respond(router, 'POST', '/services/test.owned-headers')
        names = [name.lower() for name, _ in pairs]
        assert status == 200 and payload == {'a': 1}
        assert len(names) == len(set(names)), pairs
        assert 'transfer-encoding' not in names and 'connection' not in names
        assert headers['Content-Length'] == str(len(json.dumps(payload, separators=(',', ':'))))
        assert headers['X-Zato-CID'] != 'forged' and headers['Server'] == 'zato-daemon'
        assert headers['X-Kept'] == 'yes'
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert 'access-control-allow-origin' not in names and 'content-encoding' not in names
    assert len(warnings) == 8  # one per header, not one per call
    assert all('test.owned-headers' in message for message in warnings)


def test_a_json_content_type_replaces_the_servers_and_any_other_is_dropped(host):
    status, headers, _, pairs = respond(Router(host, {}), 'POST', '/services/test.problem-json')
    assert (status, headers['Content-Type']) == (409, 'application/problem+json')
    assert [name.lower() for name, _ in pairs].count('content-type') == 1
    assert respond(Router(host, {}), 'POST', '/services/test.html')[1]['Content-Type'] == 'application/json'


def test_no_content_has_neither_body_nor_length_and_reset_content_says_zero(host):
    status, headers, payload, _ = respond(Router(host, {}), 'POST', '/services/test.no-content')
    assert (status, payload) == (204, None)
    assert 'Content-Length' not in headers
    status, headers, payload, _ = respond(Router(host, {}), 'POST', '/services/test.reset-content')
    assert (status, payload, headers['Content-Length']) == (205, None, '0')


def test_http10_keep_alive_is_the_same_for_success_and_error(host):
    router = Router(host, {})
    for path in ('/zato/ping', '/nowhere'):
        assert respond(router, 'GET', path, headers={}, http_version='1.0')[1]['Connection'] == 'keep-alive'
        assert respond(router, 'GET', path, headers={}, keep_alive=False)[1]['Connection'] == 'close'


def test_an_allowed_origin_is_served_with_cors_headers(host):
    host.config.server_config.main.allowed_origins = ['https://portal.example.com']
    router = Router(host, {})
    status, headers, _, _ = respond(router, 'POST', '/services/demo.echo', b'{}',
                                    {'origin': 'https://portal.example.com', **JSON})
    assert status == 200
    assert headers['Access-Control-Allow-Origin'] == 'https://portal.example.com'
    assert headers['Vary'] == 'Origin' and 'X-Zato-CID' in headers['Access-Control-Expose-Headers']
    assert respond(router, 'POST', '/services/demo.echo', b'{}', {'origin': 'https://portal.example.com:8443',
                                                                   **JSON})[0] == 403


def test_preflights_follow_the_same_rule(host):
    host.config.server_config.main.allowed_origins = ['https://portal.example.com']
    router = Router(host, {})
    asking = {'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type'}
    status, headers, payload, _ = respond(router, 'OPTIONS', '/services/demo.echo',
                                          headers={'origin': 'https://portal.example.com', **asking})
    assert (status, payload) == (204, None)
    assert headers['Access-Control-Allow-Origin'] == 'https://portal.example.com'
    assert headers['Access-Control-Allow-Methods'] == 'POST'
    assert headers['Access-Control-Allow-Headers'] == 'Content-Type'
    status, headers, _, _ = respond(router, 'OPTIONS', '/services/demo.echo',
                                    headers={'origin': 'https://evil.example', **asking})
    assert status == 403 and 'Access-Control-Allow-Origin' not in headers
    status, headers, _, _ = respond(router, 'OPTIONS', '/zato/ping', headers={})
    assert (status, headers['Allow']) == (204, 'GET, HEAD, POST')
    assert respond(router, 'OPTIONS', '/nowhere', headers={})[0] == 404


class RecordingRecorder:
    def __init__(self):
        self.calls = []

    def after_call(self, name, cid, started, ended, payload, outcome):
        self.calls.append((name, payload, outcome))


def test_the_recorder_gets_one_outcome_per_call_whatever_happened(host):
    recorder = RecordingRecorder()
    router = Router(host, {}, recorder=recorder)
    respond(router, 'POST', '/services/demo.echo', b'{"a": 1}')
    respond(router, 'POST', '/services/test.keyboard-interrupt', b'[2]')
    respond(router, 'POST', '/services/test.nan', b'[3]')
    respond(router, 'POST', '/services/demo.echo', b'{', )  # refused before any call
    [(_, first, ok), (_, second, raised), (_, third, unsendable)] = recorder.calls
    assert (first, ok.status, ok.failure, ok.response.payload) == ({'a': 1}, 200, None, {'a': 1})
    assert (second, raised.status, type(raised.failure), raised.response) == ([2], 500, KeyboardInterrupt, None)
    assert (third, unsendable.status, type(unsendable.failure)) == ([3], 500, ValueError)
    assert unsendable.response.payload['value'] != unsendable.response.payload['value']  # the NaN kept


class PoisonedStatus(int):
    """An int that would render as anything, header lines included."""

    def __str__(self):
        return '202 Accepted\r\nSet-Cookie: poisoned=1'

    __format__ = __repr__ = lambda self, *args: str(self)


def test_an_int_subclass_status_is_sent_as_its_value_and_spoils_no_other_response(host):
    host.store.deploy_classes([answering('test.poisoned', status_code=PoisonedStatus(202), payload={'a': 1}),
                               answering('test.accepted', status_code=202, payload={'b': 2})], 'tests')
    router = Router(host, {})
    for name in ('test.poisoned', 'test.accepted'):
        raw = router.respond(Request('POST', f'/services/{name}', '', dict(JSON), b'{}', True, '1.1'), True)
        assert raw.startswith(b'HTTP/1.1 202 Accepted\r\nServer: zato-daemon\r\n')
        assert b'poisoned' not in raw
