"""Slow calls, samples and module hashes against real servers, through the CLI and the admin API."""

import hashlib
import json
import os
import subprocess

import pytest

from tests.integration.helpers import call, wait_until, zato_daemon

SLOW_SERVICE = '''\
import time
from zato_daemon import Service

class Slowish(Service):
    name = 'demo.slowish'
    slow_threshold = 100

    def handle(self):
        time.sleep(self.request.payload.get('seconds', 0))
        self.response.payload = {'done': True, 'echo': self.request.payload}
'''


def start_with_slowish(server_factory, **options):
    """A server whose every worker deploys demo.slowish at boot (hot-deploy reaches workers
    one by one, so a call right after one worker has it may land on one that has not)."""
    server = server_factory(start=False, **options)
    (server.server_dir / 'slowish.py').write_text(SLOW_SERVICE)
    conf = server.server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace('[services]\n', f'[services]\npaths = {server.server_dir}/slowish.py\n'))
    return server.start()


def slow_rows(server, *args):
    result = zato_daemon('slow', server.server_dir, *args, '--json')
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_slow_call_is_stored_redacted_and_logged(server_factory):
    server = start_with_slowish(server_factory, workers=2)
    status, headers, _ = call(server.port, 'demo.slowish', {'seconds': 0.3, 'password': 'p-secret', 'user': 'bob'})
    assert status == 200
    cid = headers['x-zato-cid']
    rows = wait_until(lambda: slow_rows(server), message='the slow call in the store')
    assert len(rows) == 1
    row = rows[0]
    assert list(row) == ['cid', 'service', 'worker', 'started_at', 'duration_ms', 'status', 'request', 'response',
                         'error']
    assert (row['cid'], row['service'], row['status']) == (cid, 'demo.slowish', 200)
    assert row['duration_ms'] >= 300
    assert '"user": "bob"' in row['request'] and 'p-secret' not in json.dumps(rows)
    assert '"done": true' in row['response']
    assert 'over its slow threshold of 100 ms; stored' in server.log() and cid in server.log()
    # Filters and the table view.
    assert slow_rows(server, 'demo.echo') == []
    assert slow_rows(server, 'demo.slowish', '--since', '2000-01-01T00:00:00') == rows
    table = zato_daemon('slow', server.server_dir)
    assert table.returncode == 0 and 'demo.slowish' in table.stdout and cid in table.stdout
    # The admin API gives the same rows.
    admin = json.loads(zato_daemon('invoke', server.server_dir, 'zato.diagnostics.slow.list', '{}').stdout)
    assert admin == rows


def test_a_threshold_in_server_conf_overrides_the_class(server_factory):
    server = start_with_slowish(server_factory, sections='[slow_thresholds]\ndemo.slowish = 1000\n')
    assert call(server.port, 'demo.slowish', {'seconds': 0.3})[0] == 200
    call(server.port, 'demo.echo', {'flush': 'marker'})
    wait_until(lambda: json.loads(zato_daemon('samples', server.server_dir, 'demo.echo', '--json').stdout),
               message='the store to be written')
    assert slow_rows(server) == []


def test_samples_keep_the_last_calls_and_failures(server_factory):
    server = server_factory(sections='[diagnostics]\nsample_interval = 0\nsamples_keep = 3\n')
    for number in range(11):
        call(server.port, 'demo.echo', {'n': number})
    call(server.port, 'demo.fail', {'n': 'x'})

    def samples(service):
        return json.loads(zato_daemon('samples', server.server_dir, service, '--json').stdout)
    wait_until(lambda: len(samples('demo.echo')) == 3 and samples('demo.fail'), message='the samples')
    assert [json.loads(row['request'])['n'] for row in samples('demo.echo')] == [10, 9, 8]
    failure = samples('demo.fail')[0]
    assert failure['status'] == 500 and failure['response'] is None
    assert failure['error'].startswith('ValueError: demo.fail always fails')


def test_a_busy_service_is_sampled_once_an_interval(server_factory):
    server = server_factory(sections='[diagnostics]\nsample_interval = 60000\n')
    for number in range(20):
        call(server.port, 'demo.echo', {'n': number})
    call(server.port, 'demo.fail', {})
    wait_until(lambda: json.loads(zato_daemon('samples', server.server_dir, 'demo.fail', '--json').stdout),
               message='the failure sample')
    rows = json.loads(zato_daemon('samples', server.server_dir, 'demo.echo', '--json').stdout)
    assert [json.loads(row['request'])['n'] for row in rows] == [0]


def test_switched_off_nothing_is_stored(server_factory):
    server = server_factory(sections='[component_enabled]\nsamples = false\nslow_responses = false\n')
    call(server.port, 'demo.fail', {})
    call(server.port, 'demo.sleep', {'seconds': 0.01})
    assert not (server.server_dir / 'state' / 'diagnostics.sqlite3').exists()
    assert json.loads(zato_daemon('samples', server.server_dir, 'demo.fail', '--json').stdout) == []


def test_a_database_directory_turned_read_only_costs_a_warning_not_a_request(server_factory, tmp_path):
    # Read-only at start, start refuses it (preflight, see test_check_config.py); turned
    # read-only while the server runs (a file system remounted on errors), calls go on.
    mount = tmp_path / 'ro'
    mount.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(mount)]).returncode != 0:
        pytest.fail('cannot mount a tmpfs here (the test needs root)')
    try:
        server = server_factory(sections=f'[diagnostics]\ndatabase = {mount}/diagnostics.sqlite3\nsample_interval = 0\n')
        subprocess.run(['mount', '-o', 'remount,ro', str(mount)], check=True)
        for number in range(5):
            assert call(server.port, 'demo.echo', {'n': number})[2] == {'n': number}
        wait_until(lambda: 'WARNING' in server.log() and 'diagnostics' in server.log(), message='the warning')
        server.stop()
    finally:
        subprocess.run(['umount', str(mount)])


def test_hash_and_verify(server, tmp_path):
    echo_path = json.loads(zato_daemon('invoke', server.server_dir, 'zato.service.get-source-info',
                                       '{"name": "demo.echo"}').stdout)['path']
    expected = hashlib.sha256(open(echo_path, 'rb').read()).hexdigest()
    hashed = zato_daemon('hash', echo_path)
    assert hashed.stdout == f'{expected}  {echo_path}\n'
    assert zato_daemon('verify', server.server_dir, 'demo.echo', echo_path).returncode == 0
    changed = tmp_path / 'echo.py'
    changed.write_bytes(open(echo_path, 'rb').read() + b'\n# changed\n')
    mismatch = zato_daemon('verify', server.server_dir, 'demo.echo', changed)
    assert mismatch.returncode == 1
    assert 'MISMATCH' in mismatch.stdout and expected in mismatch.stdout
    assert hashlib.sha256(changed.read_bytes()).hexdigest() in mismatch.stdout
    assert os.path.exists(echo_path)
