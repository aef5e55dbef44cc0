"""/metrics of the installed package as Debian's own Prometheus tools see it (issue 17).

The packaged server (zato-daemon.service, the shipped server.conf) serves /metrics on
127.0.0.1:17011 inside the container. promtool lints a real scrape; Debian's Prometheus server,
started by this module as a transient unit with a config of its own, scrapes it every second
and answers queries over its HTTP API; workers killed with SIGKILL take no count with them.
The tree's own prometheus.service is masked (container.MASKED_UNITS): this module's Prometheus
is the only one that runs.
"""

import json
import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.system.container import mask_units, poll
from tests.system.helpers import METRICS_PORT, PORT, ensure_installed, restart, scrape, systemctl, worker_pids

pytestmark = pytest.mark.xdist_group('system')

PROMETHEUS_UNIT = 'zato-test-prometheus'
PROMETHEUS_DIR = '/var/tmp/zato-test-prometheus'
PROMETHEUS_ADDRESS = '127.0.0.1:9099'
# Debian's prometheus.service would listen here, were it not masked.
DEBIAN_PROMETHEUS_PORT = 9090
JOB = 'zato-daemon'
PROMETHEUS_CONFIG = f'''\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ['127.0.0.1:{METRICS_PORT}']
'''.encode()
ECHO_OK = 'zato_service_invocations_total{service="demo.echo",outcome="ok"}'
# Service calls for the scrapes: answered 200, 404 (no such service, counted as '(unknown)'),
# 400 (malformed JSON) and 500 (demo.fail raises), so that every outcome and status class
# the server sends has series with counts in them.
ECHO = ('/services/demo.echo', '{"metrics": true}')
UNKNOWN = ('/services/demo.no-such-service', '{}')
MALFORMED = ('/services/demo.echo', '{"not json"')
FAIL = ('/services/demo.fail', '{}')
# Families whose samples never go down while the master runs: the counters, and the
# histograms' cumulative buckets, counts and sums.
MONOTONIC_TYPES = ('counter', 'histogram')


def monotonic_series(exposition):
    """{(sample name, labels): value} of every zato_ counter and histogram sample of the text
    `exposition`; the gauges (in flight, workers alive, memory) may go either way."""
    series = {}
    for family in text_string_to_metric_families(exposition):
        if family.type not in MONOTONIC_TYPES or not family.name.startswith('zato_'):
            continue
        for sample in family.samples:
            if sample.name.endswith('_created'):  # a timestamp, not a count
                continue
            series[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return series


def went_back(before, after):
    """The series of `before` that `after` lacks or has lower: [(series, before, after or None)]."""
    return sorted((key, value, after.get(key)) for key, value in before.items()
                  if key not in after or after[key] < value)


def call(container, times, path, body):
    """`times` POSTs of the JSON-declared `body` with curl inside, in one command: the statuses."""
    # A refused connection is status 000, not a failed command: `serving` polls with it.
    script = ('for i in $(seq "$1"); do curl -sS -o /dev/null -w "%{http_code}\\n" --max-time 10 '
              '-H "Content-Type: application/json" --data-binary "$3" "http://127.0.0.1:$2$4" || true; done')
    output = container.run(['sh', '-c', script, 'call', str(times), str(PORT), body, path]).stdout
    return [int(status) for status in output.split()]


def series_value(exposition, name, **labels):
    """The value of the sample `name` with exactly `labels` in the text `exposition`; None without it."""
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def echo_count(container):
    """demo.echo's ok calls in /metrics now (0 before its first)."""
    return series_value(scrape(container), 'zato_service_invocations_total', service='demo.echo', outcome='ok') or 0


def call_echo(container, times):
    """Calls demo.echo `times` times; returns its count in /metrics once it has exactly these
    calls more (each worker reports once a second; nothing else calls it meanwhile)."""
    before = echo_count(container)
    assert call(container, times, *ECHO) == [200] * times
    expected = before + times
    poll(lambda: echo_count(container) == expected, 10, message=f'{expected} calls of demo.echo in /metrics')
    return expected


# ---- the decisions, case by case (no container)

def family_text(kind, name, samples):
    return f'# HELP {name} x\n# TYPE {name} {kind}\n' + ''.join(f'{line}\n' for line in samples)


def test_monotonic_series_keeps_the_zato_counters_and_histograms_only():
    exposition = (family_text('counter', 'zato_reloads_total', ['zato_reloads_total{result="applied"} 2.0'])
                  + family_text('histogram', 'zato_service_duration_seconds', [
                      'zato_service_duration_seconds_bucket{service="a",le="0.1"} 1.0',
                      'zato_service_duration_seconds_bucket{service="a",le="+Inf"} 3.0',
                      'zato_service_duration_seconds_count{service="a"} 3.0',
                      'zato_service_duration_seconds_sum{service="a"} 0.5'])
                  + family_text('gauge', 'zato_workers_alive', ['zato_workers_alive 2.0'])
                  + family_text('counter', 'process_cpu_seconds_total', ['process_cpu_seconds_total 1.5'])
                  + family_text('counter', 'zato_dumps_total', ['zato_dumps_total 0.0',
                                                                'zato_dumps_created 1700000000.0']))
    assert monotonic_series(exposition) == {
        ('zato_reloads_total', (('result', 'applied'),)): 2.0,
        ('zato_service_duration_seconds_bucket', (('le', '0.1'), ('service', 'a'))): 1.0,
        ('zato_service_duration_seconds_bucket', (('le', '+Inf'), ('service', 'a'))): 3.0,
        ('zato_service_duration_seconds_count', (('service', 'a'),)): 3.0,
        ('zato_service_duration_seconds_sum', (('service', 'a'),)): 0.5,
        ('zato_dumps_total', ()): 0.0,
    }


@pytest.mark.parametrize('before, after, expected', [
    ({'a': 1, 'b': 2}, {'a': 1, 'b': 2}, []),
    ({'a': 1}, {'a': 5}, []),
    ({'a': 1}, {'a': 1, 'new': 0}, []),
    ({'a': 3, 'b': 2}, {'a': 2, 'b': 2}, [('a', 3, 2)]),
    ({'a': 3, 'b': 2}, {'b': 2}, [('a', 3, None)]),
    ({}, {}, []),
])
def test_went_back_lists_the_series_lower_or_gone(before, after, expected):
    assert went_back(before, after) == expected


def test_mask_units_masks_a_unit_of_the_tree_and_removes_its_enable_links(tmp_path):
    (tmp_path / 'usr/lib/systemd/system').mkdir(parents=True)
    (tmp_path / 'usr/lib/systemd/system/prometheus.service').write_text('[Service]\n')
    wants = tmp_path / 'etc/systemd/system/multi-user.target.wants'
    wants.mkdir(parents=True)
    # As the package's postinst leaves them: absolute links, dangling seen from the host.
    (wants / 'prometheus.service').symlink_to('/lib/systemd/system/prometheus.service')
    (wants / 'cron.service').symlink_to('/lib/systemd/system/cron.service')
    assert mask_units(tmp_path, ('prometheus.service', 'absent.service')) == ['prometheus.service']
    assert os.readlink(tmp_path / 'etc/systemd/system/prometheus.service') == '/dev/null'
    assert sorted(path.name for path in wants.iterdir()) == ['cron.service']
    assert not (tmp_path / 'etc/systemd/system/absent.service').is_symlink()


# ---- the installed package, with Debian's promtool and Prometheus

@pytest.fixture(scope='module')
def serving(container, package_deb):
    """The packaged server, restarted on the shipped config (its counts start at zero), serving.

    test_package.py purges the package at its end: installs it again when it is not there."""
    ensure_installed(container, package_deb)
    restart(container)
    poll(lambda: call(container, 1, *ECHO) == [200], 15, message='the packaged server')
    # That one call counted: from here on call_echo() knows every call /metrics should have.
    poll(lambda: echo_count(container) == 1, 10, message='the first call of demo.echo in /metrics')
    return package_deb


def prometheus_report(container):
    status = systemctl(container, 'status', '--no-pager', '--full', PROMETHEUS_UNIT, check=False).stdout
    return f'--- systemctl status ---\n{status}\n--- journal ---\n{container.journal("-u", PROMETHEUS_UNIT)[-3000:]}'


@pytest.fixture(scope='module')
def prometheus(container, serving):
    """Debian's Prometheus server scraping 127.0.0.1:17011 every second: a transient unit of
    this module, as the prometheus user, its config and data in PROMETHEUS_DIR; both go at the end."""
    container.put(f'{PROMETHEUS_DIR}/prometheus.yml', PROMETHEUS_CONFIG)
    container.run(['chown', '-R', 'prometheus:prometheus', PROMETHEUS_DIR])
    container.run(['systemd-run', f'--unit={PROMETHEUS_UNIT}', '--collect', '--uid=prometheus', '--gid=prometheus',
                   '/usr/bin/prometheus', f'--config.file={PROMETHEUS_DIR}/prometheus.yml',
                   f'--storage.tsdb.path={PROMETHEUS_DIR}/data', f'--web.listen-address={PROMETHEUS_ADDRESS}'])
    try:
        def is_ready():
            state = systemctl(container, 'is-active', PROMETHEUS_UNIT, check=False).stdout.strip()
            assert state in ('active', 'activating'), f'{PROMETHEUS_UNIT} is {state}\n{prometheus_report(container)}'
            ready = container.run(['curl', '-sf', '--max-time', '5', f'http://{PROMETHEUS_ADDRESS}/-/ready'],
                                  check=False)
            return ready.returncode == 0
        poll(is_ready, 30, interval=0.2, message=f'Prometheus ready on {PROMETHEUS_ADDRESS}')
        yield
    finally:
        systemctl(container, 'stop', PROMETHEUS_UNIT, check=False)
        container.run(['rm', '-rf', PROMETHEUS_DIR])


def prometheus_api(container, path, **params):
    """GET http://PROMETHEUS_ADDRESS/api/v1/PATH with `params` from inside: the answer's data."""
    arguments = [argument for key, value in params.items() for argument in ('--data-urlencode', f'{key}={value}')]
    result = container.run(['curl', '-sS', '--max-time', '5', '-G', f'http://{PROMETHEUS_ADDRESS}/api/v1/{path}',
                            *arguments])
    answer = json.loads(result.stdout)
    assert answer['status'] == 'success', answer
    return answer['data']


def query(container, promql):
    """The value of the one series the instant query `promql` gives; None while it has none."""
    data = prometheus_api(container, 'query', query=promql)
    assert data['resultType'] == 'vector', data
    assert len(data['result']) <= 1, data['result']
    return float(data['result'][0]['value'][1]) if data['result'] else None


def resets_query(names):
    """PromQL for the counters among `names` that Prometheus saw reset in the last 5 minutes,
    each labelled counter=NAME: resets() drops the metric name, and the series of two counters
    with the same labels would collide without it."""
    return ' or '.join(f'label_replace(resets({name}[5m]), "counter", "{name}", "", "") > 0' for name in names)


def counter_resets(container, names):
    """[(counter, labels, resets)] of the counters `names` that went down in Prometheus' eyes."""
    result = prometheus_api(container, 'query', query=resets_query(names))['result']
    return sorted((row['metric'].pop('counter'), sorted(row['metric'].items()), row['value'][1]) for row in result)


def test_debians_own_prometheus_service_is_masked(container):
    enabled = systemctl(container, 'is-enabled', 'prometheus.service', check=False).stdout.strip()
    assert enabled == 'masked'
    # Nothing answers where it would listen (curl's 7: connection refused).
    refused = container.run(['curl', '-sS', '--max-time', '5', f'http://127.0.0.1:{DEBIAN_PROMETHEUS_PORT}/'],
                            check=False)
    assert refused.returncode == 7, refused


def test_promtool_finds_no_problem_in_a_scrape_after_calls(container, serving):
    assert call(container, 2, *UNKNOWN) == [404] * 2
    assert call(container, 1, *MALFORMED) == [400]
    assert call(container, 1, *FAIL) == [500]
    call_echo(container, 5)
    # The workers report independently: wait for a scrape that holds every call just made.
    expected = [(('zato_service_invocations_total', {'service': '(unknown)', 'outcome': 'client_error'}), 2),
                (('zato_service_invocations_total', {'service': 'demo.fail', 'outcome': 'server_error'}), 1),
                (('zato_service_duration_seconds_count', {'service': 'demo.echo'}), 5),
                (('zato_http_responses_total', {'status_class': '4xx'}), 3),
                (('zato_http_responses_total', {'status_class': '5xx'}), 1)]

    def with_the_calls():
        text = scrape(container)
        return text if all((series_value(text, name, **labels) or 0) >= count
                           for (name, labels), count in expected) else None
    exposition = poll(with_the_calls, 10, message=f'a scrape with {expected}')
    assert series_value(exposition, 'zato_workers_alive') >= 1
    result = container.run(['promtool', 'check', 'metrics'], input=exposition, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, '', ''), exposition


def test_prometheus_scrapes_the_target_and_sees_the_counter_rise(container, prometheus):
    def target():
        # Empty in the moments after /-/ready, while the scrape manager loads the config.
        targets = prometheus_api(container, 'targets', state='active')['activeTargets']
        if not targets:
            return None
        assert [t['labels']['job'] for t in targets] == [JOB], targets
        return targets[0] if targets[0]['health'] == 'up' else None
    up = poll(target, 15, interval=0.5, message='the target up')
    assert up['scrapeUrl'] == f'http://127.0.0.1:{METRICS_PORT}/metrics'
    assert up['lastError'] == ''
    assert query(container, f'up{{job="{JOB}"}}') == 1.0

    # Prometheus' value is exactly what /metrics has once both caught up: the worker's report
    # (1 s) then a scrape (1 s).
    first = call_echo(container, 3)
    poll(lambda: query(container, ECHO_OK) == first, 15, interval=0.5, message=f'{ECHO_OK} == {first} in Prometheus')
    assert call(container, 7, *ECHO) == [200] * 7
    poll(lambda: query(container, ECHO_OK) == first + 7, 15, interval=0.5,
         message=f'{ECHO_OK} == {first + 7} in Prometheus')


def test_counters_survive_workers_killed_with_sigkill(container, serving, prometheus):
    # Every call made is in /metrics, that is reported by the worker that served it.
    calls = call_echo(container, 6)
    workers = worker_pids(container)
    assert workers, 'no worker process'
    before_text = scrape(container)
    before = monotonic_series(before_text)
    died = series_value(before_text, 'zato_worker_restarts_total', reason='died')
    # Each worker in turn, so that whichever served the calls is killed.
    for number, pid in enumerate(workers, 1):
        container.run(['kill', '-KILL', str(pid)])
        poll(lambda: series_value(scrape(container), 'zato_worker_restarts_total', reason='died') == died + number,
             15, message=f'worker pid {pid} replaced')
    poll(lambda: len(set(worker_pids(container)) - set(workers)) == len(workers)
         and series_value(scrape(container), 'zato_workers_alive') == len(workers), 15, message='the new workers')
    after_text = scrape(container)
    assert went_back(before, monotonic_series(after_text)) == []
    assert series_value(after_text, 'zato_service_invocations_total', service='demo.echo', outcome='ok') == calls
    assert call(container, 1, *ECHO) == [200]  # the new workers serve

    # Prometheus scraped all along: it saw the kills and no counter reset.
    poll(lambda: query(container, f'zato_worker_restarts_total{{job="{JOB}",reason="died"}}') == died + len(workers),
         15, interval=0.5, message='the restarts in Prometheus')
    names = prometheus_api(container, 'label/__name__/values', **{'match[]': f'{{job="{JOB}"}}'})
    counters = [name for name in names if name.startswith('zato_') and name.endswith('_total')]
    assert {'zato_service_invocations_total', 'zato_worker_restarts_total'} <= set(counters), names
    assert counter_resets(container, counters) == []

