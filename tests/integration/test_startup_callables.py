"""Startup callables against real servers: the seed's example, phases, failure policy."""

import http.server
import json
import threading

import pytest

from tests.integration.helpers import ServerProcess, call, free_port, wait_until, write_server_dir, zato_daemon

# The seed's two callables (../shared/seeds/002_*.txt) with only the import lines changed
# to this package, and the `if` lines the captured page lost put back.
SEED_MODULE = '''\
# -*- coding: utf-8 -*-

# Requests
import requests

# Zato
from zato_daemon.common import CACHE, SERVER_STARTUP
from zato_daemon.common import as_bool

# Type completion imports
if 0:
    from zato_daemon.services.host import ServiceHost as ParallelServer
    from zato_daemon.startup import PhaseCtx

    ParallelServer = ParallelServer
    PhaseCtx = PhaseCtx

def update_fs_config(ctx):
    """ This callable has access to only to file-system based configuration files.
    """
    # type: (PhaseCtx)

    if ctx.phase == SERVER_STARTUP.PHASE.FS_CONFIG_ONLY:

        # server.conf
        server_config = ctx.kwargs['server_config']

        # pickup.conf
        pickup_config = ctx.kwargs['pickup_config']

        # simple-io.conf
        sio_config = ctx.kwargs['sio_config']

        # sso.conf
        sso_config = ctx.kwargs['sso_config']

        # Base directory the server was installed to
        base_dir = ctx.kwargs['base_dir']

        # Consult a remote resource and check
        # if Cassandra connections should be enabled
        response = requests.get('{url}')

        # Convert to a bool object
        is_enabled = as_bool(response.text)

        # Update the server configuration in place
        server_config.component_enabled.cassandara = is_enabled

def create_cache(ctx):
    """ This is the callable that is invoked when the server is started.
    """
    # type: (PhaseCtx)

    if ctx.phase == SERVER_STARTUP.PHASE.AFTER_STARTED:

        # Server object where all our services are deployed to already
        server = ctx.kwargs['server'] # type: ParallelServer

        # Service to invoke
        service = 'zato.cache.builtin.create'

        # Input data to the service
        request = {{
            'cluster_id': server.cluster_id,
            'name': 'my.cache',
            'is_active': True,
            'is_default': False,
            'max_size': 10000,
            'max_item_size': 10000,
            'extend_expiry_on_get': True,
            'extend_expiry_on_set': True,
            'sync_method': CACHE.SYNC_METHOD.IN_BACKGROUND.id,
            'persistent_storage': CACHE.PERSISTENT_STORAGE.NO_PERSISTENT_STORAGE.id,
            'cache_type': CACHE.TYPE.BUILTIN,
        }}

        # Create a cache object by invoke the service
        server.invoke(service, request)
'''

# Ours: what the remote endpoint says decides whether hot-deploy runs, and AFTER_STARTED
# records which workers ran it.
SWITCH_MODULE = '''\
import json
import urllib.request

from zato_daemon.common import SERVER_STARTUP, as_bool

def switch_hot_deploy(ctx):
    if ctx.phase == SERVER_STARTUP.PHASE.FS_CONFIG_ONLY:
        text = urllib.request.urlopen('{url}').read().decode()
        ctx.kwargs['server_config'].component_enabled.hot_deploy = as_bool(text)

def record_worker(ctx):
    if ctx.phase == SERVER_STARTUP.PHASE.AFTER_STARTED:
        server = ctx.kwargs['server']
        info = server.invoke('zato.server.info')
        with open('{record}', 'a') as record:
            record.write(json.dumps({{'worker': ctx.worker_number, 'pid': info['answered_by_pid']}}) + '\\n')

def fail(ctx):
    raise RuntimeError('the remote endpoint said no in ' + ctx.phase)

def fail_after_started(ctx):
    if ctx.phase == SERVER_STARTUP.PHASE.AFTER_STARTED:
        raise RuntimeError('cannot warm up')

def change_port(ctx):
    if ctx.phase == SERVER_STARTUP.PHASE.FS_CONFIG_ONLY:
        ctx.kwargs['server_config'].main.port = {new_port}

def move_files(ctx):
    if ctx.phase == SERVER_STARTUP.PHASE.FS_CONFIG_ONLY:
        server_config = ctx.kwargs['server_config']
        server_config.logging.server_log = '{moved}/server.log'
        server_config.diagnostics.database = '{moved}/diagnostics.db'
        server_config.diagnostics.slow_threshold = 1
'''

CACHE_SERVICE = '''\
from zato_daemon import Service

class UseCache(Service):
    name = 'demo.use-cache'

    def handle(self):
        cache = self.server.caches['my.cache']
        payload = self.request.payload
        if 'set' in payload:
            cache.set(payload['key'], payload['set'])
        self.response.payload = {'value': cache.get(payload['key']), 'pid': self.server.pid}
'''


@pytest.fixture
def endpoint():
    """A local HTTP server standing in for the seed's remote endpoint; `answer` is what it says."""
    state = {'answer': 'true', 'hits': 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state['hits'] += 1
            body = state['answer'].encode()
            self.send_response(200)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state['url'] = f'http://127.0.0.1:{server.server_address[1]}/enabled'
    yield state
    server.shutdown()


def make_server(tmp_path, endpoint, callables, workers=1, policy='fail', new_port=0):
    port = free_port()
    server_dir = write_server_dir(tmp_path / 'server', port, workers=workers,
                                  sections=f'[misc]\nstartup_callable = {callables}\n'
                                           f'startup_callable_failure = {policy}\n')
    extlib = server_dir / 'extlib'
    extlib.mkdir()
    (extlib / 'my_startup.py').write_text(SEED_MODULE.format(url=endpoint['url']))
    (extlib / 'switches.py').write_text(SWITCH_MODULE.format(url=endpoint['url'], record=tmp_path / 'record.jsonl',
                                                             new_port=new_port, moved=tmp_path / 'moved'))
    return ServerProcess(server_dir, port)


def test_the_seed_example_runs_and_its_cache_is_shared_by_workers(tmp_path, endpoint):
    server = make_server(tmp_path, endpoint, 'my_startup.update_fs_config, my_startup.create_cache', workers=2)
    pickup = server.server_dir / 'pickup'
    pickup.mkdir()
    (pickup / 'use_cache.py').write_text(CACHE_SERVICE)
    try:
        server.start()
        assert endpoint['hits'] == 1
        assert 'component_enabled.cassandara, which no setting declares' in server.output()
        wait_until(lambda: call(server.port, 'demo.use-cache', {'key': 'k'})[0] == 200, message='the cache service')
        status, _, body = call(server.port, 'demo.use-cache', {'key': 'k', 'set': 'v1'})
        assert status == 200 and body['value'] == 'v1'
        writer = body['pid']
        # Read until another worker answers: it sees the value set in the first one.
        def other_worker_sees_it():
            _, _, answer = call(server.port, 'demo.use-cache', {'key': 'k'})
            return answer['pid'] != writer and answer['value'] == 'v1'
        wait_until(other_worker_sees_it, message='another worker to read the value')
    finally:
        server.stop()


@pytest.mark.parametrize('answer, deployed', [('true', True), ('false', False)])
def test_fs_config_only_changes_what_starts(tmp_path, endpoint, answer, deployed):
    endpoint['answer'] = answer
    server = make_server(tmp_path, endpoint, 'switches.switch_hot_deploy')
    pickup = server.server_dir / 'pickup'
    pickup.mkdir()
    (pickup / 'use_cache.py').write_text(CACHE_SERVICE.replace('demo.use-cache', 'demo.picked-up'))
    try:
        server.start()
        found = call(server.port, 'demo.picked-up', {'key': 'k'})[0] != 404
        assert found is deployed
    finally:
        server.stop()


def test_after_started_runs_in_every_worker_with_its_number(tmp_path, endpoint):
    server = make_server(tmp_path, endpoint, 'switches.record_worker', workers=2)
    try:
        server.start()
        records = [json.loads(line) for line in (tmp_path / 'record.jsonl').read_text().splitlines()]
        assert sorted(record['worker'] for record in records) == [1, 2]
        assert sorted(record['pid'] for record in records) == server.worker_pids()
    finally:
        server.stop()


def test_a_callable_can_move_the_port(tmp_path, endpoint):
    new_port = free_port()
    server = make_server(tmp_path, endpoint, 'switches.change_port', new_port=new_port)
    server.port = new_port
    try:
        server.start()
        assert call(new_port, 'demo.echo', {'moved': True})[2] == {'moved': True}
    finally:
        server.stop()


def test_the_cli_follows_files_a_callable_moved(tmp_path, endpoint):
    # dump, slow and samples use the paths the running master has, not the files' own.
    server = make_server(tmp_path, endpoint, 'switches.move_files')
    moved = tmp_path / 'moved'
    moved.mkdir()
    try:
        server.start()
        assert call(server.port, 'demo.sleep', {'seconds': 0.05})[0] == 200
        def slow_rows():
            result = zato_daemon('slow', server.server_dir, '--json')
            assert result.returncode == 0, result.stderr
            return json.loads(result.stdout)
        assert wait_until(slow_rows, message='the slow call in the moved database')[0]['service'] == 'demo.sleep'
        dump = zato_daemon('dump', server.server_dir)
        assert dump.returncode == 0 and f'they are in {moved}/server.log' in dump.stdout
        wait_until(lambda: f'master, pid {server.pid}' in (moved / 'server.log').read_text(), message='the dump')
    finally:
        server.stop()


@pytest.mark.parametrize('name, expected', [
    ('no_such_module.function', 'cannot import module no_such_module'),
    ('switches.no_such_function', "module switches has no attribute 'no_such_function'"),
    ('switches', 'write it as module.callable'),
])
def test_a_name_that_does_not_resolve_is_78_at_start_and_in_check_config(tmp_path, endpoint, name, expected):
    server = make_server(tmp_path, endpoint, name)
    for command in (('start', server.server_dir, '--fg'), ('check-config', server.server_dir)):
        result = zato_daemon(*command)
        assert result.returncode == 78, result.stderr
        first_line = result.stderr.splitlines()[0]
        assert first_line.startswith(f'zato-daemon: startup callable {name}') and expected in first_line


def test_a_raising_fs_config_only_callable_stops_the_start_with_its_traceback(tmp_path, endpoint):
    server = make_server(tmp_path, endpoint, 'switches.fail')
    result = zato_daemon('start', server.server_dir, '--fg')
    assert result.returncode == 70
    lines = result.stderr.splitlines()
    assert lines[0] == ("zato-daemon: startup callable switches.fail failed in phase FS_CONFIG_ONLY: "
                        "RuntimeError('the remote endpoint said no in fs-config-only')")
    assert 'Traceback (most recent call last):' in result.stderr and 'switches.py' in result.stderr


def test_a_raising_after_started_callable_stops_the_start(tmp_path, endpoint):
    server = make_server(tmp_path, endpoint, 'switches.fail_after_started')
    result = zato_daemon('start', server.server_dir, '--fg')
    assert result.returncode == 70
    log = (server.server_dir / 'logs' / 'server.log').read_text()
    assert ("startup callable switches.fail_after_started failed in phase AFTER_STARTED: "
            "RuntimeError('cannot warm up')") in log
    assert 'Traceback (most recent call last):' in log


def test_warn_policy_starts_anyway(tmp_path, endpoint):
    server = make_server(tmp_path, endpoint, 'switches.fail', policy='warn')
    try:
        server.start()
        assert call(server.port, 'demo.echo', {'up': 1})[2] == {'up': 1}
        assert 'startup callable switches.fail failed in phase FS_CONFIG_ONLY' in server.output()
        assert 'AFTER_STARTED' in server.log()
    finally:
        server.stop()


def test_reload_runs_fs_config_only_again(tmp_path, endpoint):
    server = make_server(tmp_path, endpoint, 'switches.switch_hot_deploy')
    try:
        server.start()
        server.signal(__import__('signal').SIGHUP)
        wait_until(lambda: 'Reload complete' in server.log(), message='the reload')
        assert endpoint['hits'] == 2
    finally:
        server.stop()


def test_services_import_from_extlib(tmp_path, endpoint):
    server = make_server(tmp_path, endpoint, '')
    (server.server_dir / 'extlib' / 'shared_rules.py').write_text('DISCOUNT = 0.15\n')
    pickup = server.server_dir / 'pickup'
    pickup.mkdir()
    (pickup / 'priced.py').write_text(
        'from shared_rules import DISCOUNT\nfrom zato_daemon import Service\n'
        'class Priced(Service):\n    name = "demo.priced"\n'
        '    def handle(self):\n        self.response.payload = {"discount": DISCOUNT}\n')
    try:
        server.start()
        assert call(server.port, 'demo.priced', {})[2] == {'discount': 0.15}
    finally:
        server.stop()


RELOAD_MODULE = '''\
import os, sys, time
from zato_daemon.common import SERVER_STARTUP

MARKER = {marker!r}

def slow_at_reload(ctx):
    if ctx.phase == SERVER_STARTUP.PHASE.FS_CONFIG_ONLY and os.path.exists(MARKER):
        time.sleep(4)

def exit_at_reload(ctx):
    if ctx.phase == SERVER_STARTUP.PHASE.FS_CONFIG_ONLY and os.path.exists(MARKER):
        sys.exit(3)
'''


def reload_server(tmp_path, endpoint, callable_name, main=''):
    server = make_server(tmp_path, endpoint, f'reloads.{callable_name}')
    conf = server.server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace('[main]\n', f'[main]\n{main}\n'))
    marker = tmp_path / 'reloading'
    (server.server_dir / 'extlib' / 'reloads.py').write_text(RELOAD_MODULE.format(marker=str(marker)))
    return server, marker


def test_a_slow_callable_at_reload_does_not_make_workers_look_hung(tmp_path, endpoint):
    server, marker = reload_server(tmp_path, endpoint, 'slow_at_reload', main='hang_timeout = 2')
    try:
        server.start()
        marker.write_text('')
        server.signal(__import__('signal').SIGHUP)
        wait_until(lambda: 'Reload complete' in server.log(), timeout=30, message='the reload')
        assert 'sent no heartbeat' not in server.log()
    finally:
        server.stop()


def test_sys_exit_in_a_callable_at_reload_refuses_the_reload(tmp_path, endpoint):
    server, marker = reload_server(tmp_path, endpoint, 'exit_at_reload')
    try:
        server.start()
        marker.write_text('')
        server.signal(__import__('signal').SIGHUP)
        wait_until(lambda: 'Reload refused' in server.log(), message='the refusal')
        assert 'SystemExit(3)' in server.log()
        assert call(server.port, 'demo.echo', {'still': 1})[2] == {'still': 1}
        assert server.process.poll() is None
    finally:
        server.stop()
