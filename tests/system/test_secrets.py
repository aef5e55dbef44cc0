"""Secrets under the real systemd (issue 13): a failing call and a logged call carrying secrets in
several shapes, a dump (`systemctl kill -s SIGURG`) while a call is in flight and a keep-alive
connection is idle; then no secret in `journalctl -o verbose`, server.log, the diagnostics
database or the CLI's output, and the files the unit created are 0640 or tighter.

tests/integration/test_secrets.py covers every shape against `start --fg`; this module checks
the sinks only the installed unit has (the journal, the FHS directories, the unit's umask).
"""

import base64
import json
import secrets
import time

import pytest

from tests.system.container import poll
from tests.system.helpers import CONFIG_DIR, PORT, UNIT, ensure_installed, kill_unit, restart, zato_processes
from zato_daemon.logs import levels

pytestmark = pytest.mark.xdist_group('system')

MARKER = 'S3CRET'
LOG = '/var/log/zato-daemon/server.log'
STATE = '/var/lib/zato-daemon'
PICKUP = f'{STATE}/pickup'
RELEASE = f'{STATE}/secrets-release'
HOLD_LIMIT = 30
# No secret in the source: they all arrive in requests.
SERVICES = b'''\
import os
import time

from zato_daemon import Service


class LogInput(Service):
    name = 'secrets.log-input'

    def handle(self):
        self.logger.info('got %s', self.request.payload)
        self.logger.info('headers %s', dict(self.request.headers))
        self.response.payload = {'logged': True}


class Hold(Service):
    """In flight during the dump, with a credentials tuple and a DSN as locals."""
    name = 'secrets.hold'

    def handle(self):
        payload = self.request.payload
        creds = (payload['user'], payload['password'])
        conn_string = 'postgresql://' + payload['user'] + ':' + payload['db_password'] + '@db.example/app'
        self.logger.info('secrets.hold is holding')
        deadline = time.monotonic() + 30
        while not os.path.exists(payload['release_file']) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.response.payload = {'held': len(creds) + len(conn_string)}
'''
# Run inside by Debian's python3: a keep-alive connection that sends one request (a file), reads
# the answer, says "idle" and stays open until the release file appears.
IDLE_CLIENT = '''\
import os, socket, sys, time
request = open(sys.argv[3], 'rb').read()
sock = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
sock.sendall(request)
answer = sock.makefile('rb')
status = answer.readline().split()[1].decode()
length, line = 0, None
while line not in (b'\\r\\n', b''):
    line = answer.readline()
    if line.lower().startswith(b'content-length:'):
        length = int(line.split(b':')[1])
answer.read(length)
print(status, 'idle', flush=True)
deadline = time.monotonic() + 30
while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
    time.sleep(0.05)
sock.close()
'''


class Secrets:
    """Distinct values, each remembering where it was sent."""

    def __init__(self):
        self.where = {}

    def new(self, where):
        value = f'{MARKER}{secrets.token_hex(5)}'
        self.where[value] = where
        return value

    def leaks(self, text):
        """One line per secret found in `text` (as sent, its random part, base64, in a Basic token)."""
        found = []
        for value, where in self.where.items():
            forms = (value, value[len(MARKER):], base64.b64encode(value.encode()).decode(),
                     base64.b64encode(f'alice:{value}'.encode()).decode())
            for form in forms:
                index = text.find(form)
                if index >= 0:
                    shown = text[max(0, index - 80):index + len(form) + 40]
                    found.append(f'{where}: ...{"".join(c if c.isprintable() else "." for c in shown)}...')
                    break
        return found


def basic(secret):
    return 'Basic ' + base64.b64encode(f'alice:{secret}'.encode()).decode()


def shapes(known, call):
    """(query, headers, payload) carrying one secret per shape for `call`."""
    query = (f'?password={known.new(f"query password -> {call}")}'
             f'&access_token={known.new(f"query access_token -> {call}")}')
    headers = {'Authorization': f'Bearer {known.new(f"Authorization: Bearer -> {call}")}',
               'Cookie': f'session={known.new(f"Cookie -> {call}")}',
               'X-Api-Key': known.new(f'X-Api-Key -> {call}'),
               'Proxy-Authorization': basic(known.new(f'Proxy-Authorization: Basic -> {call}'))}
    payload = {'user': 'alice',
               'a': {'b': {'c': {'client_secret': known.new(f'nested client_secret -> {call}')}}},
               'conn_string': f'postgresql://alice:{known.new(f"DSN in conn_string -> {call}")}@db.example/x',
               'callback': f'https://alice:{known.new(f"URL userinfo -> {call}")}@hooks.example/in'}
    return query, headers, payload


def curl(path, query, headers, payload, max_time=10):
    """The curl command line of a JSON POST showing the response headers."""
    command = ['curl', '-sS', '-i', '--max-time', str(max_time), f'http://127.0.0.1:{PORT}{path}{query}',
               '--json', json.dumps(payload)]
    for name, value in headers.items():
        command[1:1] = ['-H', f'{name}: {value}']
    return command


def call(container, path, query, headers, payload):
    """(status, X-Zato-CID) of one call made with curl inside."""
    output = container.run(curl(path, query, headers, payload)).stdout
    head = output.partition('\n\n')[0].splitlines()
    cid = [line.split(':', 1)[1].strip() for line in head if line.lower().startswith('x-zato-cid:')]
    return int(head[0].split()[1]), cid[0] if cid else None


def journal_entries(container, *filters):
    output = container.journal('-u', UNIT, '-o', 'json', '--all', *filters)
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def samples(container, service):
    return json.loads(container.run(['zato-daemon', 'samples', CONFIG_DIR, service, '--json']).stdout)


def unit_pids(container):
    return {pid for _, pid, title in zato_processes(container) if title.endswith(f' {CONFIG_DIR}')}


@pytest.fixture(scope='module')
def server(container, package_deb):
    """The package installed (again, if test_package.py purged it) with the secrets services deployed."""
    ensure_installed(container, package_deb)
    container.put(f'{PICKUP}/secrets_services.py', SERVICES)
    container.run(['chown', 'zato:zato', f'{PICKUP}/secrets_services.py'])
    container.run(['rm', '-f', RELEASE])
    restart(container)
    poll(lambda: call(container, '/services/secrets.log-input', '', {}, {})[0] == 200, 20,
         message='the secrets services')
    yield
    container.run(['rm', '-f', f'{PICKUP}/secrets_services.py', RELEASE])
    restart(container)


@pytest.fixture(scope='module')
def scenario(container, server):
    """The calls and the dump; returns (secrets, the failing and the logged call's cids, the dump entries)."""
    known = Secrets()
    since = container.run(['date', '+%Y-%m-%d %H:%M:%S']).stdout.strip()
    time.sleep(1)  # --since has one-second resolution
    query, headers, payload = shapes(known, 'demo.fail')
    status, failed_cid = call(container, '/services/demo.fail', query, headers, payload)
    assert status == 500
    query, headers, payload = shapes(known, 'secrets.log-input')
    status, logged_cid = call(container, '/services/secrets.log-input', query, headers, payload)
    assert status == 200

    query, headers, payload = shapes(known, 'secrets.hold (in flight)')
    payload.update(password=known.new('tuple local creds'), db_password=known.new('DSN local conn_string'),
                   release_file=RELEASE)
    held = container.popen(curl('/services/secrets.hold', query, headers, payload, max_time=HOLD_LIMIT + 10))
    body = json.dumps({'password': known.new('idle keep-alive: JSON body')}).encode()
    idle_request = (f'POST /services/demo.echo?password={known.new("idle keep-alive: query")} HTTP/1.1\r\n'
                    f'Cookie: session={known.new("idle keep-alive: Cookie")}\r\n'
                    f'Authorization: Bearer {known.new("idle keep-alive: Bearer")}\r\n'
                    f'Host: a\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n').encode() + body
    container.put('/root/idle_client.py', IDLE_CLIENT.encode())
    container.put('/root/idle_request', idle_request)
    idle = container.popen(['python3', '/root/idle_client.py', str(PORT), RELEASE, '/root/idle_request'])

    def dump_entries():
        found = journal_entries(container, f'MESSAGE_ID={levels.DUMP_WRITTEN.message_id}', '--since', since)
        return found if {int(entry['_PID']) for entry in found} >= pids else None
    try:
        assert idle.stdout.readline().split() == ['200', 'idle']
        poll(lambda: 'secrets.hold is holding' in container.get(LOG).decode(errors='replace'), 15,
             message='secrets.hold to be in flight')
        pids = unit_pids(container)
        kill_unit(container, 'SIGURG')
        dumps = poll(dump_entries, 20, message='a dump entry from every process')
    finally:
        container.run(['touch', RELEASE])
        held_output, _ = held.communicate(timeout=HOLD_LIMIT + 20)
        idle.communicate(timeout=HOLD_LIMIT + 20)
        container.run(['rm', '-f', RELEASE])
    assert held_output.split()[1] == '200', held_output
    # The failure sample is in the database (written in the background) before anything reads it.
    poll(lambda: [row for row in samples(container, 'demo.fail') if row['cid'] == failed_cid], 15,
         message='the failure sample')
    return known, failed_cid, logged_cid, dumps


def test_the_calls_and_the_dump_are_in_the_journal(container, scenario):
    # Not vacuous: what the other tests search holds the calls and the dump.
    _, failed_cid, logged_cid, dumps = scenario
    failures = journal_entries(container, f'ZATO_CID={failed_cid}', f'MESSAGE_ID={levels.SERVICE_FAILED.message_id}')
    assert len(failures) == 1 and 'ZATO_INPUT' in failures[0] and 'Traceback' in failures[0]['MESSAGE']
    logged = [entry for entry in journal_entries(container, f'ZATO_CID={logged_cid}')
              if entry['MESSAGE'].startswith(('got ', 'headers '))]
    assert len(logged) == 2, logged
    held = [entry['MESSAGE'] for entry in dumps if 'in Hold.handle' in entry['MESSAGE']]
    assert held and 'creds=' in held[0] and 'conn_string=' in held[0], [entry['MESSAGE'][:2000] for entry in dumps]
    assert 'serve_connection' in held[0]


def test_no_secret_in_the_journal(container, scenario):
    known = scenario[0]
    found = known.leaks(container.journal('-u', UNIT, '-o', 'verbose', '--all'))
    assert not found, 'journalctl -u zato-daemon -o verbose --all:\n' + '\n'.join(found)


def test_no_secret_in_server_log(container, scenario):
    known = scenario[0]
    found = known.leaks(container.get(LOG).decode('latin-1'))
    assert not found, f'{LOG}:\n' + '\n'.join(found)


def test_no_secret_in_the_state_files_or_the_cli(container, scenario):
    known = scenario[0]
    found = []
    names = container.run(['sh', '-c', f'ls {STATE}/*.sqlite3*']).stdout.split()
    assert f'{STATE}/diagnostics.sqlite3' in names
    for name in names:
        found += [f'[{name}] {line}' for line in known.leaks(container.get(name).decode('latin-1'))]
    for command in (['slow', CONFIG_DIR, '--json'], ['samples', CONFIG_DIR, 'demo.fail', '--json'],
                    ['samples', CONFIG_DIR, 'secrets.log-input', '--json'],
                    ['samples', CONFIG_DIR, 'secrets.hold', '--json']):
        output = container.run(['zato-daemon', *command]).stdout
        found += [f'[zato-daemon {" ".join(command)}] {line}' for line in known.leaks(output)]
    assert not found, '\n'.join(found)


def test_files_the_unit_created_are_0640_or_tighter(container, scenario):
    output = container.run(['sh', '-c', f'stat -c "%a %n" {LOG} {STATE}/*.sqlite3*']).stdout
    modes = {name: int(mode, 8) for mode, name in (line.split(' ', 1) for line in output.splitlines())}
    assert LOG in modes and f'{STATE}/diagnostics.sqlite3' in modes, modes
    too_open = {name: f'{mode:o}' for name, mode in modes.items() if mode & 0o137}
    assert not too_open, too_open
