"""/metrics of a real server: counts across workers killed, hung, recycled and retired by a
reload; the answers the router never sees; the listener's configuration and faults."""

import json
import os
import signal
import socket
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.background import CallsInBackground
from tests.integration.helpers import call, free_port, request, wait_until, zato_daemon
from zato_daemon.config import load_config

SPIN = '''\
import time
from zato_daemon import Service

class Spin(Service):
    name = 'demo.spin'

    def handle(self):
        deadline = time.monotonic() + self.request.payload['seconds']
        while time.monotonic() < deadline:
            pass
'''

GOOD_MODULE = '''\
from zato_daemon import Service

class Hello(Service):
    name = 'demo.hello'

    def handle(self):
        self.response.payload = {'hello': True}
'''

# Monotonic series: counters and the parts of histograms.
MONOTONIC_SUFFIXES = ('_total', '_bucket', '_count', '_sum')


def metrics_port(server):
    return load_config(server.server_dir).server_config.metrics.port


def scrape(server, port=None):
    """{(sample name, sorted labels): value} of one scrape."""
    url = f'http://127.0.0.1:{port or metrics_port(server)}/metrics'
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def echo_calls(samples, outcome='ok'):
    return value(samples, 'zato_service_invocations_total', service='demo.echo', outcome=outcome)


def assert_nothing_went_down(before, after):
    went_down = {key: (was, after.get(key)) for key, was in before.items()
                 if key[0].startswith('zato_') and key[0].endswith(MONOTONIC_SUFFIXES) and after.get(key, -1) < was}
    assert went_down == {}


def make_calls(server, count):
    for number in range(count):
        assert call(server.port, 'demo.echo', {'n': number})[0] == 200


def test_scrapes_during_load_and_after_a_kill_9_never_go_backwards(server_factory):
    server = server_factory(workers=2)
    with CallsInBackground(server.port, pause=0.002) as calls:
        wait_until(lambda: echo_calls(scrape(server)) >= 50, message='counts of the calls')
        before = scrape(server)
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(server.worker_pids()) == 2 and victim not in server.worker_pids(),
                   message='the replacement of the killed worker')
        wait_until(lambda: echo_calls(scrape(server)) > echo_calls(before) + 50, message='more calls counted')
        after = scrape(server)
    assert calls.answered > 100
    assert_nothing_went_down(before, after)
    assert value(after, 'zato_worker_restarts_total', reason='died') == 1
    assert value(after, 'zato_workers_alive') == 2
    # Every call answered is counted but those of the killed worker's last second.
    final = wait_until(lambda: (lambda samples: samples if echo_calls(samples) >= calls.answered - 2000 else None)(
        scrape(server)), message='the last reports')
    assert echo_calls(final) <= calls.answered + len(calls.failures)


def test_workers_retired_by_a_reload_lose_no_count(server_factory):
    server = server_factory(workers=2)
    make_calls(server, 40)
    old_pids = set(server.worker_pids())
    server.signal(signal.SIGHUP)
    wait_until(lambda: 'Reload complete' in server.log() and not old_pids & set(server.worker_pids())
               and len(server.worker_pids()) == 2, message='the reload')
    wait_until(lambda: all(not os.path.exists(f'/proc/{pid}') for pid in old_pids), message='the old workers gone')
    samples = wait_until(lambda: (lambda s: s if echo_calls(s) == 40 else None)(scrape(server)),
                         message='every call counted')
    assert value(samples, 'zato_reloads_total', result='applied') == 1
    assert value(samples, 'zato_http_responses_total', status_class='2xx') >= 40
    assert value(samples, 'zato_service_duration_seconds_count', service='demo.echo') == 40
    assert value(samples, 'zato_worker_restarts_total', reason='died') == 0


def test_recycled_workers_lose_no_count(server_factory):
    server = server_factory(workers=1, main='max_requests = 30\nmax_requests_jitter = 0')
    make_calls(server, 100)
    samples = wait_until(lambda: (lambda s: s if echo_calls(s) == 100 else None)(scrape(server)),
                         message='every call counted')
    # The first worker asks for its replacement at its 30th request and serves on until the
    # replacement is ready: how many recycles 100 quick calls make depends on boot times.
    assert value(samples, 'zato_worker_restarts_total', reason='recycled') >= 1


def test_a_hung_worker_is_counted_as_such_and_its_counts_stay(server_factory):
    server = server_factory(workers=2, main='hang_timeout = 2', start=False)
    (server.server_dir / 'pickup').mkdir()
    (server.server_dir / 'pickup' / 'spin.py').write_text(SPIN)
    server.start()
    make_calls(server, 20)
    before = wait_until(lambda: (lambda s: s if echo_calls(s) == 20 else None)(scrape(server)),
                        message='the calls counted')
    try:
        call(server.port, 'demo.spin', {'seconds': 30})
    except OSError:
        pass  # the hung worker is killed under the call
    samples = wait_until(lambda: (lambda s: s if value(s, 'zato_worker_restarts_total', reason='hung') == 1
                                  else None)(scrape(server)), timeout=30, message='the hang counted')
    assert_nothing_went_down(before, samples)
    # The hung worker was dumped before it was killed: the master heard its dump.
    assert value(samples, 'zato_dumps_total') >= 1


def test_answers_the_router_never_sees_count_by_status_class(server_factory):
    server = server_factory(workers=1, main='max_request_size = 100')
    before = scrape(server)
    with socket.create_connection(('127.0.0.1', server.port), timeout=5) as sock:
        sock.sendall(b'NOT HTTP\r\n\r\n')
        assert sock.recv(100).startswith(b'HTTP/1.1 400')
    status, _, _ = request(server.port, 'POST', '/services/demo.echo', b'[' + b'1,' * 100 + b'1]')
    assert status == 413
    assert request(server.port, 'GET', '/no/such/path')[0] == 404
    after = wait_until(lambda: (lambda s: s if value(s, 'zato_http_responses_total', status_class='4xx') >= 3
                                else None)(scrape(server)), message='the refusals counted')
    assert value(after, 'zato_http_responses_total', status_class='4xx') == 3
    assert value(after, 'zato_service_invocations_total', service='(unknown)', outcome='client_error') == 1
    assert echo_calls(after) == echo_calls(before)


def test_a_scanner_of_random_paths_adds_no_series(server_factory):
    server = server_factory(workers=1)
    for number in range(30):
        request(server.port, 'POST', f'/services/no.such.{number}', {})
        request(server.port, 'GET', f'/random/{number}')
    samples = wait_until(lambda: (lambda s: s if value(s, 'zato_service_invocations_total', service='(unknown)',
                                                       outcome='client_error') == 60 else None)(scrape(server)),
                         message='the scan counted')
    services = {dict(labels).get('service') for (name, labels) in samples if name.startswith('zato_service_')}
    assert services == {'(unknown)', 'zato.ping'}


def test_deploys_dumps_and_cache_uses_are_counted(server_factory):
    server = server_factory(workers=1)
    pickup = server.server_dir / 'pickup'
    (pickup / 'hello.py').write_text(GOOD_MODULE)
    (pickup / 'broken.py').write_text('this is not python\n')
    for payload in ({'key': 'k'}, None, {'key': 'k'}):
        if payload is None:
            assert zato_daemon('invoke', server.server_dir, 'zato.cache.builtin.set',
                               json.dumps({'key': 'k', 'value': 1})).returncode == 0
        else:
            assert zato_daemon('invoke', server.server_dir, 'zato.cache.builtin.get',
                               json.dumps(payload)).returncode == 0
    os.kill(server.pid, signal.SIGURG)

    def counted():
        samples = scrape(server)
        done = (value(samples, 'zato_deploys_total', result='deployed') == 1
                and value(samples, 'zato_deploys_total', result='refused') == 1
                and value(samples, 'zato_dumps_total') == 2  # the master's and its worker's
                and value(samples, 'zato_cache_hits_total', cache='default') == 1)
        return samples if done else None
    samples = wait_until(counted, message='the deploys, dumps and cache uses')
    assert value(samples, 'zato_cache_misses_total', cache='default') == 1


def test_with_metrics_off_no_port_is_opened_and_top_says_why(server_factory):
    port = free_port()
    server = server_factory(workers=1, sections=f'[metrics]\nenabled = false\nport = {port}\n')
    make_calls(server, 3)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(('127.0.0.1', port), timeout=2).close()
    result = zato_daemon('invoke', server.server_dir, 'zato.server.metrics')
    assert 'metrics are off on this server' in result.stdout + result.stderr
    assert not (server.server_dir / 'run' / 'metrics.json').exists()


def test_a_metrics_port_in_use_stops_the_start_naming_the_setting(server_factory):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = server_factory(workers=1, sections=f'[metrics]\nport = {port}\n', start=False)
        server.start(wait=False)
        assert server.wait_exit(30) == 69
    assert (f'cannot listen on 127.0.0.1:{port}: another process listens there; change [metrics] port or host '
            'in server.conf') in server.output()


def test_a_reload_moves_the_metrics_port_or_is_refused_when_the_new_one_is_taken(server_factory):
    first, second = free_port(), free_port()
    server = server_factory(workers=1, sections=f'[metrics]\nport = {first}\n')
    make_calls(server, 5)
    wait_until(lambda: echo_calls(scrape(server, first)) == 5, message='the calls counted')
    conf = server.server_dir / 'server.conf'
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        busy = taken.getsockname()[1]
        conf.write_text(conf.read_text().replace(f'port = {first}', f'port = {busy}'))
        server.signal(signal.SIGHUP)
        wait_until(lambda: 'change [metrics] port or host' in server.log(), message='the refused reload')
    assert echo_calls(scrape(server, first)) == 5
    conf.write_text(conf.read_text().replace(f'port = {busy}', f'port = {second}'))
    server.signal(signal.SIGHUP)
    wait_until(lambda: server.log().count('Reload complete') == 1, message='the reload')
    samples = scrape(server, second)
    assert echo_calls(samples) == 5 and value(samples, 'zato_reloads_total', result='refused') == 1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(('127.0.0.1', first), timeout=2).close()


def test_info_names_where_the_metrics_are(server_factory):
    server = server_factory(workers=1)
    result = zato_daemon('info', server.server_dir, '--json')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)['metrics'] == f'http://127.0.0.1:{metrics_port(server)}/metrics'


def test_calls_reported_while_the_master_was_stopped_all_count(server_factory):
    # Several reports wait in the pipe: each leaves out the services unchanged since the one
    # before, so applying only the last of them lost the calls.
    server = server_factory(workers=1)
    os.kill(server.pid, signal.SIGSTOP)
    try:
        make_calls(server, 20)
        time.sleep(2.5)  # more reports, without calls, pile up behind the one that carries them
    finally:
        os.kill(server.pid, signal.SIGCONT)
    wait_until(lambda: echo_calls(scrape(server)) == 20, message='every call counted')
    old_pids = set(server.worker_pids())
    server.signal(signal.SIGHUP)
    wait_until(lambda: 'Reload complete' in server.log() and not old_pids & set(server.worker_pids()),
               message='the reload')
    wait_until(lambda: all(not os.path.exists(f'/proc/{pid}') for pid in old_pids), message='the old worker gone')
    assert echo_calls(scrape(server)) == 20
