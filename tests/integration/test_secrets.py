"""Secrets sent in every shape a client or a service can produce never leave the process (issue 13).

One server (module scope, [logging] level DEBUG so that the request and response records are
written too) gets calls carrying a distinct secret value per shape and per service: echoed and
sampled, failing (the ERROR record with input and headers), slow (stored with request and
response), logged by the service as an argument (`got %s`) and in free text the policy can parse
(a DSN, a URL's query or userinfo, header lines, exception messages holding a DSN or a Bearer
credential), a dict with int and str keys built by a service.
Then dumps: one while two calls are in flight (their frames hold a credentials tuple, DSNs, a list
of name/value pairs and a raw HTTP request as locals) and two keep-alive connections are idle
(their receive buffers hold the last request), and one each while a header section and a body
are half received (the buffer holds that piece alone, with no request line to recognise).

Then no secret value, nor its random part, its base64 or a Basic token holding it, may appear in
server.log, the --fg stdout, any file under the server directory (the SQLite files with their
-wal/-shm read as raw bytes, while the server runs and after it stopped), or the output of
`slow`, `samples` and `dump`. Other tests check that those sinks really hold the calls and the
dumps, so that nothing passes because nothing was written.

Deliberately not covered (the policy cannot see it, README says so): a bare secret in free text
with nothing around it, e.g. self.logger.info('the code is %s', value), or an exception message
holding one; no such value is sent, so none is asserted.

A separate server checks file modes under `start --fg` with umask 022: every file the server
creates is 0640 or tighter, the admin socket 0660."""

import base64
import json
import os
import re
import secrets
import socket
import stat
import threading
import time
from http.client import HTTPConnection, HTTPResponse

import pytest

from tests.integration.helpers import ServerProcess, free_port, wait_until, write_server_dir, zato_daemon

MARKER = 'S3CRET'
SLOW_SECONDS = 0.25
DUMP_QUIET_PERIOD = 1.5
HOLD_LIMIT = 30  # seconds a held call waits for its release file at most

# No secret value is in this source: every one arrives in a request, so neither the module
# file, its deployed copy nor the source lines a dump shows hold one.
SERVICES = '''\
import os
import time

from zato_daemon import Service


class Fail(Service):
    """Raises: the ERROR record carries the input and the headers."""
    name = 'secrets.fail'

    def handle(self):
        raise ValueError('secrets.fail fails as asked')


class FailText(Service):
    """Logs a caught exception, then raises one: both messages hold secrets the policy can parse."""
    name = 'secrets.fail-text'

    def handle(self):
        p = self.request.payload
        try:
            raise ConnectionError('cannot connect to postgresql://app:' + p['dsn_password'] + '@db.example/app')
        except ConnectionError:
            self.logger.exception('connect failed')
        raise RuntimeError('upstream refused Authorization: Bearer ' + p['bearer_token'])


class Slow(Service):
    """Over its own slow threshold: stored with its request and its response (the same payload)."""
    name = 'secrets.slow'
    slow_threshold = 100

    def handle(self):
        time.sleep(SLOW_SECONDS)
        self.response.payload = self.request.payload


class LogInput(Service):
    """Logs its input and headers as arguments of a record."""
    name = 'secrets.log-input'

    def handle(self):
        payload = self.request.payload
        self.logger.info('got %s', payload)
        self.logger.info('headers %s', dict(self.request.headers))
        self.response.payload = {'logged': True}


class LogText(Service):
    """Logs free text holding secrets in shapes the policy can parse, in the message and in args."""
    name = 'secrets.log-text'

    def handle(self):
        p = self.request.payload
        self.logger.info('connecting to postgresql://app:' + p['dsn_password'] + '@db.example/app')
        self.logger.info('connecting to %s', 'postgresql://app:' + p['dsn_password_arg'] + '@db.example/app')
        self.logger.info('calling https://api.example/v1?access_token=' + p['access_token'] + '&page=1')
        self.logger.info('sending Authorization: Bearer ' + p['bearer_token'])
        self.logger.warning('retrying with %s', 'Cookie: session=' + p['session_cookie'])
        self.logger.info('callback https://' + p['url_token'] + '@hooks.example/in')
        self.response.payload = {'logged': True}


class Mixed(Service):
    """Builds what no client can send, a dict with int and str keys, and logs, stores and returns it."""
    name = 'secrets.mixed'
    slow_threshold = 100

    def handle(self):
        p = self.request.payload
        mixed = {1: 'one', 'password': p['password'], 'inner': {2: 'two', 'token': p['token']}}
        self.logger.info('built %s', mixed)
        time.sleep(SLOW_SECONDS)
        self.response.payload = mixed


def wait_for_release(payload, logger, what):
    logger.info('%s is holding', what)
    deadline = time.monotonic() + HOLD_LIMIT
    while not os.path.exists(payload['release_file']) and time.monotonic() < deadline:
        time.sleep(0.05)


class HoldLocals(Service):
    """In flight during the dump, with a credentials tuple, DSNs and name/value pairs as locals.
    Always slow: how long it is held depends on how fast the dump comes."""
    name = 'secrets.hold-locals'
    slow_threshold = 1

    def handle(self):
        payload = self.request.payload
        creds = (payload['user'], payload['password'])
        conn_string = 'postgresql://' + payload['user'] + ':' + payload['db_password'] + '@db.example/app'
        conninfo = 'host=db.example user=' + payload['user'] + ' password=' + payload['libpq_password']
        options = [('user', payload['user']), ('password', payload['pair_password'])]
        wait_for_release(payload, self.logger, 'secrets.hold-locals')
        self.response.payload = {'held': len(creds) + len(conn_string) + len(conninfo) + len(options)}


class HoldBytes(Service):
    """In flight during the dump, with a raw HTTP request (bytes) holding credentials as a local.
    Always slow, as HoldLocals."""
    name = 'secrets.hold-bytes'
    slow_threshold = 1

    def handle(self):
        payload = self.request.payload
        raw = ('GET /api?password=' + payload['password'] + ' HTTP/1.1\\r\\n'
               'Authorization: Bearer ' + payload['token'] + '\\r\\n'
               'Cookie: session=' + payload['session'] + '\\r\\n'
               'X-Api-Key: ' + payload['api_key'] + '\\r\\n\\r\\n').encode()
        wait_for_release(payload, self.logger, 'secrets.hold-bytes')
        self.response.payload = {'held': len(raw)}
'''.replace('SLOW_SECONDS', repr(SLOW_SECONDS)).replace('HOLD_LIMIT', repr(HOLD_LIMIT))

# The services each body, query and header shape is sent to.
CALLED = ('demo.echo', 'secrets.fail', 'secrets.slow', 'secrets.log-input')
HOLD_SERVICES = ('secrets.hold-locals', 'secrets.hold-bytes')
SAMPLED = (*CALLED, 'secrets.fail-text', 'secrets.log-text', 'secrets.mixed')


class Secrets:
    """Distinct, greppable secret values, each remembering the shape and the call it was sent in."""

    def __init__(self):
        self.where = {}

    def new(self, shape, call):
        value = f'{MARKER}{secrets.token_hex(5)}'
        self.where[value] = f'{shape} -> {call}'
        return value

    @staticmethod
    def forms(value):
        """`value` and the encodings it may travel in: (text, name of the form)."""
        yield value, 'as sent'
        yield value[len(MARKER):], 'its random part'
        yield base64.b64encode(value.encode()).decode(), 'base64'
        yield basic(value).split()[1], 'in a Basic token'
        # The values are letters and digits: URL-encoded or JSON-escaped, they read the same.


def body_shapes(new):
    """(shape, payload) for every shape a JSON body carries; `new(shape)` makes the value."""
    return [
        ('top-level password', {'user': 'alice', 'password': new('top-level password')}),
        ('nested token/api_key/client_secret at depth 4',
         {'a': {'b': {'c': {'token': new('nested token'), 'api_key': new('nested api_key'),
                            'client_secret': new('nested client_secret')}}}, 'n': 1}),
        ('name/value pair list', {'params': [{'name': 'user', 'value': 'alice'},
                                             {'name': 'password', 'value': new('name/value pair list')}]}),
        ('JSON text in a string field', {'blob': json.dumps({'user': 'alice', 'password': new('JSON text')})}),
        ('DSN in conn_string', {'conn_string': f'postgresql://user:{new("DSN in conn_string")}@db.example/x'}),
        ('URL with userinfo', {'callback': f'https://{new("URL userinfo")}@hooks.example/in'}),
        ('form-encoded string', {'form': f'a=1&password={new("form-encoded string")}&b=2'}),
    ]


def header_shapes(new):
    """(shape, query string, headers) for the request target and the header shapes."""
    basic_secret = new('Authorization: Basic')
    return [
        ('query string', f'?password={new("query password")}&access_token={new("query access_token")}', {}),
        ('Authorization: Bearer', '', {'Authorization': f'Bearer {new("Authorization: Bearer")}'}),
        ('Authorization: Basic', '', {'Authorization': basic(basic_secret)}),
        ('Cookie', '', {'Cookie': f'theme=dark; session={new("Cookie session")}'}),
        ('X-Api-Key', '', {'X-Api-Key': new('X-Api-Key')}),
        ('Proxy-Authorization: Basic', '', {'Proxy-Authorization': basic(new('Proxy-Authorization: Basic'))}),
    ]


def basic(secret):
    return 'Basic ' + base64.b64encode(f'alice:{secret}'.encode()).decode()


def send(port, method, target, headers, body=b'', connection=None):
    """One request with headers in the order given (secrets first, so that they sit in the first
    bytes of a receive buffer); returns (status, body bytes). Keeps `connection` open if given."""
    own = connection is None
    connection = connection or HTTPConnection('127.0.0.1', port, timeout=HOLD_LIMIT + 10)
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in [*headers.items(), ('Host', 'a'), ('Content-Type', 'application/json'),
                            ('Content-Length', str(len(body)))]:
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        if own:
            connection.close()


def post(port, service, payload, query='', headers=None):
    """POSTs `payload` as JSON to /services/SERVICE plus `query`; returns (status, body bytes)."""
    return send(port, 'POST', f'/services/{service}{query}', headers or {}, json.dumps(payload).encode())


def wait_for_slow_calls(scenario, server_dir):
    """Until `slow` lists every call of secrets.slow, and secrets.mixed and the held calls; on a
    timeout, says what it listed and how the server log ends."""
    expected = {'secrets.slow': scenario.sent['secrets.slow'], 'secrets.mixed': 1,
                **{service: 1 for service in HOLD_SERVICES}}
    listed = {}

    def complete():
        listed.clear()
        for row in cli_json('slow', server_dir)[1]:
            listed[row['service']] = listed.get(row['service'], 0) + 1
        return all(listed.get(service, 0) >= count for service, count in expected.items())
    try:
        wait_until(complete, timeout=60, message='the slow calls')
    except AssertionError as exc:
        raise AssertionError(f'{exc}: expected {expected}, listed {listed}; server.log ends with:\n'
                             f'{scenario.server.log()[-4000:]}') from None


def cli_json(*args):
    result = zato_daemon(*args, '--json')
    assert result.returncode == 0, result.stderr
    return result.stdout, json.loads(result.stdout)


class Scenario:
    """What the module's server was sent, and everything it wrote."""

    def __init__(self, server):
        self.server = server
        self.secrets = Secrets()
        self.sent = {}  # service -> calls sent to it
        self.sinks = {}  # name -> text
        self.last_dump = -DUMP_QUIET_PERIOD
        self.dumps = {}  # label -> the text of the dumps it caused, from server.log


def send_shapes(scenario):
    port, known = scenario.server.port, scenario.secrets
    for service in CALLED:
        def new(shape, service=service):
            return known.new(shape, service)
        expected = 500 if service == 'secrets.fail' else 200
        for shape, payload in body_shapes(new):
            status, body = post(port, service, payload)
            assert status == expected, (shape, service, body)
        for shape, query, headers in header_shapes(new):
            status, body = post(port, service, {'n': shape}, query, headers)
            assert status == expected, (shape, service, body)
        scenario.sent[service] = len(body_shapes(str)) + len(header_shapes(str))
    # Free text the policy can parse, logged by a service.
    text = {name: known.new(f'free text: {name}', 'secrets.log-text')
            for name in ('dsn_password', 'dsn_password_arg', 'access_token', 'bearer_token', 'session_cookie',
                         'url_token')}
    assert post(port, 'secrets.log-text', text)[0] == 200
    # Exception messages holding a DSN and a Bearer credential: a logged traceback, a failure.
    failing = {name: known.new(f'exception message: {name}', 'secrets.fail-text')
               for name in ('dsn_password', 'bearer_token')}
    assert post(port, 'secrets.fail-text', failing)[0] == 500
    # Mixed key types: built by a service, logged, stored as slow and sampled, returned.
    mixed = {'password': known.new('mixed-key dict: password', 'secrets.mixed'),
             'token': known.new('mixed-key dict: token', 'secrets.mixed')}
    status, body = post(port, 'secrets.mixed', mixed)
    assert status == 200, body
    scenario.sent.update({'secrets.fail-text': 1, 'secrets.log-text': 1, 'secrets.mixed': 1})


def idle_request(known):
    """The bytes of a keep-alive request whose connection then stays idle: its receive buffer holds them."""
    body = json.dumps({'password': known.new('idle keep-alive: JSON body', 'demo.echo via /echo')},
                      separators=(',', ':')).encode()
    target = (f'/echo?password={known.new("idle keep-alive: query password", "/echo")}'
              f'&access_token={known.new("idle keep-alive: query access_token", "/echo")}')
    headers = {'Cookie': f'session={known.new("idle keep-alive: Cookie", "/echo")}'}
    return target, headers, body


def hold_calls(known, release_file):
    """(service, target, headers, payload) of the two calls in flight during the dump."""
    locals_call = ('secrets.hold-locals',
                   f'/services/secrets.hold-locals?access_token={known.new("in flight: query", "hold-locals")}',
                   {'Authorization': basic(known.new('in flight: Authorization: Basic', 'hold-locals')),
                    'X-Api-Key': known.new('in flight: X-Api-Key', 'hold-locals')},
                   {'user': 'bob', 'password': known.new('tuple local creds', 'hold-locals'),
                    'db_password': known.new('DSN local conn_string', 'hold-locals'),
                    'libpq_password': known.new('libpq DSN local conninfo', 'hold-locals'),
                    'pair_password': known.new('list of pairs local options', 'hold-locals'),
                    'release_file': str(release_file)})
    bytes_call = ('secrets.hold-bytes',
                  f'/services/secrets.hold-bytes?password={known.new("in flight: query", "hold-bytes")}',
                  {'Authorization': f'Bearer {known.new("in flight: Authorization: Bearer", "hold-bytes")}',
                   'Cookie': f'session={known.new("in flight: Cookie", "hold-bytes")}'},
                  {'password': known.new('bytes local: query password', 'hold-bytes'),
                   'token': known.new('bytes local: Authorization: Bearer', 'hold-bytes'),
                   'session': known.new('bytes local: Cookie', 'hold-bytes'),
                   'api_key': known.new('bytes local: X-Api-Key', 'hold-bytes'),
                   'release_file': str(release_file)})
    return [locals_call, bytes_call]


def dump(scenario, label):
    """`zato-daemon dump`, then the text of the dumps it caused (master and worker) once both are written."""
    server = scenario.server
    # A request within a second (dump/trigger.py's quiet period) of the previous dump's start is
    # folded into that dump: wait past it.
    time.sleep(max(0.0, scenario.last_dump + DUMP_QUIET_PERIOD - time.monotonic()))
    scenario.last_dump = time.monotonic()
    offset = len(server.log())
    on_stdout = server.output().count('==== end of zato-daemon dump')
    result = zato_daemon('dump', server.server_dir)
    assert result.returncode == 0, result.stderr
    scenario.sinks[f'zato-daemon dump (its output, {label})'] = result.stdout + result.stderr
    wait_until(lambda: server.log()[offset:].count('==== end of zato-daemon dump') >= 2,
               message=f'the dumps of the master and the worker ({label})')
    wait_until(lambda: server.output().count('==== end of zato-daemon dump') >= on_stdout + 2,
               message=f'the dumps on stdout ({label})')
    log = server.log()
    text = log[log.index('==== zato-daemon dump', offset):log.rindex('==== end of zato-daemon dump')]
    scenario.dumps[label] = text
    return text


def dump_while_in_flight_and_idle(scenario):
    """Two keep-alive connections idle after a request, two calls in flight; then `zato-daemon dump`."""
    server, known = scenario.server, scenario.secrets
    target, headers, body = idle_request(known)
    idle = [HTTPConnection('127.0.0.1', server.port, timeout=10) for _ in range(2)]
    release_file = server.server_dir / 'release'
    results = {}
    threads = []
    try:
        for connection in idle:  # the same bytes on both: whichever the dump shows, it shows them
            status, answer = send(server.port, 'POST', target, headers, body, connection)
            assert status == 200, answer
        for service, hold_target, hold_headers, payload in hold_calls(known, release_file):
            def run(service=service, hold_target=hold_target, hold_headers=hold_headers, payload=payload):
                results[service] = send(server.port, 'POST', hold_target, hold_headers, json.dumps(payload).encode())
            threads.append(threading.Thread(target=run, daemon=True))
            threads[-1].start()
        for service in HOLD_SERVICES:
            wait_until(lambda service=service: f'{service} is holding' in server.log(),
                       message=f'{service} to be in flight')
        dump(scenario, 'in flight and idle')
    finally:
        release_file.write_text('')
        for thread in threads:
            thread.join(HOLD_LIMIT + 15)
        for connection in idle:
            connection.close()
    assert {service: status for service, (status, _) in results.items()} == dict.fromkeys(HOLD_SERVICES, 200)
    scenario.sent.update(dict.fromkeys(HOLD_SERVICES, 1))
    scenario.sent['demo.echo'] += len(idle)


def trickled_requests(known):
    """(label, chunks) of requests that arrive in pieces: a dump taken between the second and the
    last piece finds the second one alone in the connection's receive buffer, with no request line."""
    proxy = known.new('trickled header: Proxy-Authorization: Basic', 'demo.echo')
    headers = (f'Authorization: Bearer {known.new("trickled header: Authorization: Bearer", "demo.echo")}\r\n'
               f'Cookie: session={known.new("trickled header: Cookie", "demo.echo")}\r\n'
               f'X-Api-Key: {known.new("trickled header: X-Api-Key", "demo.echo")}\r\n'
               f'Proxy-Authorization: {basic(proxy)}\r\n')
    body = json.dumps({
        'user': 'bob', 'password': known.new('trickled body: password', 'demo.echo'),
        'deep': {'a': {'b': {'api_key': known.new('trickled body: nested api_key', 'demo.echo')}}},
        'params': [{'name': 'password', 'value': known.new('trickled body: name/value pair', 'demo.echo')}],
        'conn_string': f'postgresql://u:{known.new("trickled body: DSN", "demo.echo")}@db.example/x',
        'blob': json.dumps({'token': known.new('trickled body: JSON text', 'demo.echo')}),
        'form': f'a=1&password={known.new("trickled body: form-encoded", "demo.echo")}',
        'rest': 'the last bytes arrive after the dump',
    }).encode()
    return [
        ('a header section arriving', [b'POST /services/demo.echo HTTP/1.1\r\nHost: a\r\n', headers.encode(),
                                       b'Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}']),
        ('a body arriving', [b'POST /services/demo.echo HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n'
                             b'Content-Length: %d\r\n\r\n' % len(body), body[:-20], body[-20:]]),
    ]


def dump_while_requests_trickle_in(scenario):
    """One connection at a time, its request stopped between two pieces while the server dumps."""
    for label, chunks in trickled_requests(scenario.secrets):
        with socket.create_connection(('127.0.0.1', scenario.server.port), timeout=10) as sock:
            for chunk in chunks[:-1]:
                sock.sendall(chunk)
                # Gives the worker time to read each piece on its own (were two read at once, the
                # buffer would start with the request line: shown summarised, still not a leak).
                time.sleep(0.3)
            dump(scenario, label)
            sock.sendall(chunks[-1])
            response = HTTPResponse(sock)
            response.begin()
            assert response.status == 200, response.read()
            response.read()
        scenario.sent['demo.echo'] += 1


def stored(server_dir, service):
    return json.loads(zato_daemon('samples', server_dir, service, '--json').stdout or '[]')


def read_files(root):
    """Every regular file under `root`, as text decoded from its raw bytes (SQLite files included)."""
    found = {}
    for path in sorted(root.rglob('*')):
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(root))] = path.read_bytes().decode('latin-1')
    return found


@pytest.fixture(scope='module')
def scenario(tmp_path_factory):
    """Runs the whole scenario once against one server and collects every sink's text."""
    port = free_port()
    server_dir = write_server_dir(
        tmp_path_factory.mktemp('secrets') / 'server', port, workers=1,
        sections='[logging]\nlevel = DEBUG\n\n'
                 '[diagnostics]\nsample_interval = 0\nsamples_keep = 50\nslow_threshold = 200\n')
    (server_dir / 'secret_services.py').write_text(SERVICES)
    conf = server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace('[services]\n', f'[services]\npaths = {server_dir}/secret_services.py\n'))
    server = ServerProcess(server_dir, port)
    scenario = Scenario(server)
    server.start()
    try:
        send_shapes(scenario)
        dump_while_in_flight_and_idle(scenario)
        dump_while_requests_trickle_in(scenario)
        for service, count in scenario.sent.items():
            wait_until(lambda service=service, count=count: len(stored(server_dir, service)) >= count,
                       message=f'the {count} samples of {service}')
        wait_for_slow_calls(scenario, server_dir)
        sinks = scenario.sinks
        for service in SAMPLED + HOLD_SERVICES:
            sinks[f'samples {service} --json'], _ = cli_json('samples', server_dir, service)
            sinks[f'samples {service}'] = zato_daemon('samples', server_dir, service).stdout
        sinks['slow --json'], scenario.slow_rows = cli_json('slow', server_dir)
        sinks['slow'] = zato_daemon('slow', server_dir).stdout
        scenario.samples = {service: stored(server_dir, service) for service in SAMPLED + HOLD_SERVICES}
        for name, text in read_files(server_dir).items():
            sinks[f'{name} (server running)'] = text
    finally:
        server.stop()
    for name, text in read_files(server_dir).items():
        sinks[f'{name} (server stopped)'] = text
    sinks['server.log'] = server.log()
    sinks['stdout of start --fg'] = server.output()
    for label, text in scenario.dumps.items():
        sinks[f'the dump ({label})'] = text
    return scenario


def excerpt(text, start, end):
    shown = text[max(0, start - 80):end + 40]
    return ''.join(char if char.isprintable() else '.' for char in shown)


def leaks(text, known):
    """Where secret values (or their encodings) appear in `text`: one line per secret, with an excerpt."""
    found = []
    for value, where in known.where.items():
        for form, name in known.forms(value):
            index = text.find(form)
            if index >= 0:
                found.append(f'{where} ({name}): ...{excerpt(text, index, index + len(form))}...')
                break
    for match in re.finditer(MARKER, text):
        if text[match.start():match.start() + len(MARKER) + 10] not in known.where:
            found.append(f'part of a secret: ...{excerpt(text, match.start(), match.end())}...')
    return found


SINK_KINDS = ('server.log', 'stdout of start --fg', 'dumps', 'state files, server running',
              'state files, server stopped', 'slow', 'samples', 'output of zato-daemon dump')


def sinks_of(scenario, kind):
    names = {
        'state files, server running': lambda name: name.endswith('(server running)'),
        'state files, server stopped': lambda name: name.endswith('(server stopped)'),
        'slow': lambda name: name.startswith('slow'),
        'samples': lambda name: name.startswith('samples '),
        'dumps': lambda name: name.startswith('the dump ('),
        'output of zato-daemon dump': lambda name: name.startswith('zato-daemon dump ('),
    }.get(kind, lambda name: name == kind)
    return {name: text for name, text in scenario.sinks.items() if names(name)}


@pytest.mark.parametrize('kind', SINK_KINDS)
def test_no_secret_reaches(scenario, kind):
    chosen = sinks_of(scenario, kind)
    assert chosen, f'no sink of kind {kind!r} was collected'
    found = [f'[{name}] {line}' for name, text in chosen.items() for line in leaks(text, scenario.secrets)]
    assert not found, f'{len(found)} secret(s) leaked:\n' + '\n'.join(found)


def test_the_state_files_include_the_databases_and_their_write_ahead_logs(scenario):
    running = [name for name in scenario.sinks if name.endswith('(server running)')]
    names = {name.split(' (')[0] for name in running}
    assert {'state/diagnostics.sqlite3', 'logs/server.log', 'run/master.json'} <= names, names
    assert any(name.startswith('state/diagnostics.sqlite3-wal') for name in names), names


def test_every_call_was_stored_and_logged(scenario):
    # Not vacuous: the sinks hold the calls whose secrets the other tests look for.
    log = scenario.sinks['server.log']
    for service, count in scenario.sent.items():
        assert len(scenario.samples[service]) >= count, service
    failures = [row for row in scenario.samples['secrets.fail'] if row['status'] == 500]
    assert len(failures) == scenario.sent['secrets.fail']
    assert log.count('secrets.fail failed') == scenario.sent['secrets.fail']
    assert log.count('Traceback (most recent call last)') >= scenario.sent['secrets.fail']
    slow = [row for row in scenario.slow_rows if row['service'] == 'secrets.slow']
    assert len(slow) == scenario.sent['secrets.slow'] and all(row['response'] for row in slow)
    assert {row['service'] for row in scenario.slow_rows} >= {'secrets.mixed', *HOLD_SERVICES}
    assert log.count(' - got ') == scenario.sent['secrets.log-input']
    assert log.count(' - headers ') == scenario.sent['secrets.log-input']
    for line in ('connecting to', 'calling https://api.example/v1', 'sending Authorization', 'retrying with',
                 'callback https://', 'built {'):
        assert line in log, line
    assert 'connect failed' in log and 'ConnectionError: cannot connect to postgresql://' in log
    assert 'RuntimeError: upstream refused Authorization' in log
    assert scenario.samples['secrets.fail-text'][0]['error'].startswith('RuntimeError: upstream refused')
    mixed = scenario.samples['secrets.mixed'][0]
    assert mixed['status'] == 200 and mixed['response'], mixed


def dump_blocks(text):
    """The greenlet blocks of a dump: (number of greenlets, block text)."""
    blocks = []
    for block in re.split(r'\n(?=--- )', text):
        heading = block.split('\n', 1)[0]
        if heading.startswith('--- Greenlet 0x'):
            blocks.append((1, block))
        elif match := re.match(r'--- ([\d,]+) greenlets with this stack', heading):
            blocks.append((int(match[1].replace(',', '')), block))
    return blocks


def connection_blocks(text):
    """(number of greenlets, block) of the dump's greenlets serving HTTP connections."""
    return [(count, block) for count, block in dump_blocks(text) if 'serve_connection' in block]


def test_the_dump_shows_the_calls_in_flight_and_the_idle_connections(scenario):
    text = scenario.dumps['in flight and idle']
    assert re.search(r'==== zato-daemon dump \w+: master, pid', text)
    assert re.search(r'==== zato-daemon dump \w+: worker-1, pid', text)
    assert 'in HoldLocals.handle' in text and 'in HoldBytes.handle' in text
    # The locals are there, their values redacted.
    for name in ('creds=', 'conn_string=', 'conninfo=', 'options=', 'raw='):
        assert name in text, name
    # Two idle keep-alive connections and two in flight: four greenlets serving connections,
    # and the receive buffer of each stack shown.
    blocks = connection_blocks(text)
    assert sum(count for count, _ in blocks) >= 4, text
    assert all('data=' in block for _, block in blocks), text


@pytest.mark.parametrize('label', ['a header section arriving', 'a body arriving'])
def test_the_dump_shows_the_receive_buffer_of_a_request_arriving(scenario, label):
    # One connection, alone with its stack: the variables shown are its own.
    blocks = connection_blocks(scenario.dumps[label])
    assert [count for count, _ in blocks] == [1], scenario.dumps[label]
    assert 'data=' in blocks[0][1]


# --- file modes under a 022 umask

MODE_CACHES = 'sessions = is_default=true, sync_method=in-background, persistent_storage=sql'
PICKUP_SERVICE = '''\
from zato_daemon import Service

class Hello(Service):
    name = 'modes.hello'

    def handle(self):
        self.response.payload = {'hello': True}
'''


def server_files(root, before):
    """(relative path, mode, is socket) of everything under `root` that was not in `before`."""
    found = []
    for path in sorted(root.rglob('*')):
        relative = str(path.relative_to(root))
        if relative in before or path.is_symlink() or path.is_dir():
            continue
        info = path.lstat()
        found.append((relative, stat.S_IMODE(info.st_mode), stat.S_ISSOCK(info.st_mode)))
    return found


def test_files_the_server_creates_are_0640_or_tighter_under_a_022_umask(server_factory):
    server = server_factory(start=False, sections=f'[diagnostics]\nsample_interval = 0\n\n[caches]\n{MODE_CACHES}\n')
    root = server.server_dir
    (root / 'pickup').mkdir()
    before = {str(path.relative_to(root)) for path in root.rglob('*')} | {'stdout.txt'}
    previous = os.umask(0o022)
    try:
        server.start(wait=False)
    finally:
        os.umask(previous)
    server.wait_ready()
    (root / 'hello.tmp').write_text(PICKUP_SERVICE)
    (root / 'hello.tmp').rename(root / 'pickup' / 'hello.py')
    before.add('pickup/hello.py')
    wait_until(lambda: post(server.port, 'modes.hello', {})[0] == 200, message='the pickup service')
    assert post(server.port, 'demo.echo', {'n': 1})[0] == 200
    result = zato_daemon('invoke', root, 'zato.cache.builtin.set', '{"key": "k", "value": 1}')
    assert result.returncode == 0, result.stderr
    wait_until(lambda: stored(root, 'demo.echo'), message='the sample in the diagnostics database')
    wait_until(lambda: (root / 'state' / 'caches.sqlite3').exists(), message='the caches database')

    def check(when):
        files = server_files(root, before)
        names = {name for name, _, _ in files}
        expected = {'logs/server.log', 'state/diagnostics.sqlite3', 'state/caches.sqlite3', 'run/master.json',
                    'run/admin.sock'}
        assert expected <= names, f'{when}: missing {expected - names}'
        too_open = [f'{name} {mode:o}' for name, mode, is_socket in files
                    if not is_socket and mode & 0o137]
        assert not too_open, f'{when}: files readable beyond owner and group, or executable:\n' + '\n'.join(too_open)
        sockets = {name: mode for name, mode, is_socket in files if is_socket}
        assert sockets.get('run/admin.sock') == 0o660, f'{when}: {sockets}'
        return names

    names = check('while the server runs')
    assert any(name.endswith('-wal') for name in names), names
    assert 'run/zato-daemon.pid' in names, names
    server.stop()
    files = server_files(root, before)
    too_open = [f'{name} {mode:o}' for name, mode, is_socket in files if not is_socket and mode & 0o137]
    assert not too_open, 'after the stop: ' + ', '.join(too_open)
