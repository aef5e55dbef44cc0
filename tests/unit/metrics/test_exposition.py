"""The families /metrics exposes, read back with prometheus_client's own parser."""

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from zato_daemon import __version__
from zato_daemon.metrics.aggregate import Aggregate
from zato_daemon.metrics.counting import UNKNOWN_SERVICE, WorkerCounts
from zato_daemon.metrics.exposition import MetricsCollector
from zato_daemon.metrics.processes import ProcessFigures


def scrape(aggregate, bounds=(0.1, 1.0), processes=None, alive=2):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(lambda: (aggregate.view(), bounds, processes or {}, alive)))
    text = generate_latest(registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return text, samples


def test_every_family_is_there_on_an_idle_server_with_its_fixed_labels_at_zero():
    _, samples = scrape(Aggregate())
    assert samples[('zato_build_info', (('version', __version__),))] == 1
    for reason in ('died', 'hung', 'recycled', 'boot_failed'):
        assert samples[('zato_worker_restarts_total', (('reason', reason),))] == 0
    for status_class in ('2xx', '3xx', '4xx', '5xx'):  # no 1xx: never a final answer
        assert samples[('zato_http_responses_total', (('status_class', status_class),))] == 0
    for name in ('zato_dumps_total', 'zato_slow_calls_stored_total', 'zato_samples_stored_total',
                 'zato_diagnostics_rows_dropped_total', 'zato_requests_in_flight'):
        assert samples[(name, ())] == 0
    for process in ('master', 'worker'):
        assert samples[('zato_dump_failures_total', (('process', process),))] == 0
    assert samples[('zato_workers_alive', ())] == 2


def test_dump_failures_of_the_master_and_of_workers_gone_and_live():
    aggregate = Aggregate()
    aggregate.count('dump_failures')
    gone, live = WorkerCounts(), WorkerCounts()
    for _ in range(3):
        gone.dump_failed()
    live.dump_failed()
    aggregate.heard(101, gone.report())
    aggregate.gone(101)
    aggregate.heard(102, live.report())
    _, samples = scrape(aggregate)
    assert samples[('zato_dump_failures_total', (('process', 'master'),))] == 1
    assert samples[('zato_dump_failures_total', (('process', 'worker'),))] == 4


def test_calls_durations_and_caches_by_label():
    counts = WorkerCounts((0.1, 1.0))
    counts.service('crm.get').finished(200, 0.05)
    counts.service('crm.get').finished(404, 0.5)
    counts.service('crm.get').finished(503, 2.0)
    counts.service(UNKNOWN_SERVICE).client_error += 7
    counts.cache('sessions').hits += 3
    counts.cache('sessions').evictions += 1
    counts.responses[2] += 1
    aggregate = Aggregate()
    aggregate.heard(101, counts.report())
    aggregate.count('restarts', 'hung')
    _, samples = scrape(aggregate)
    calls = {labels: value for (name, labels), value in samples.items() if name == 'zato_service_invocations_total'}
    assert calls == {(('outcome', 'ok'), ('service', 'crm.get')): 1,
                     (('outcome', 'client_error'), ('service', 'crm.get')): 1,
                     (('outcome', 'server_error'), ('service', 'crm.get')): 1,
                     (('outcome', 'ok'), ('service', UNKNOWN_SERVICE)): 0,
                     (('outcome', 'client_error'), ('service', UNKNOWN_SERVICE)): 7,
                     (('outcome', 'server_error'), ('service', UNKNOWN_SERVICE)): 0}
    buckets = {labels: value for (name, labels), value in samples.items()
               if name == 'zato_service_duration_seconds_bucket'}
    assert buckets == {(('le', '0.1'), ('service', 'crm.get')): 1, (('le', '1.0'), ('service', 'crm.get')): 2,
                       (('le', '+Inf'), ('service', 'crm.get')): 3}
    assert samples[('zato_service_duration_seconds_count', (('service', 'crm.get'),))] == 3
    assert samples[('zato_service_duration_seconds_sum', (('service', 'crm.get'),))] == 2.55
    assert samples[('zato_cache_hits_total', (('cache', 'sessions'),))] == 3
    assert samples[('zato_cache_evictions_total', (('cache', 'sessions'),))] == 1
    assert samples[('zato_worker_restarts_total', (('reason', 'hung'),))] == 1
    assert samples[('zato_http_responses_total', (('status_class', '2xx'),))] == 1


def test_per_worker_figures_are_labelled_by_worker_number_only():
    processes = {1: ProcessFigures(300, 1, 2, 'ready', rss=4096, fds=9, cpu_seconds=1.0),
                 2: ProcessFigures(301, 2, 2, 'ready', rss=None, fds=None, cpu_seconds=None)}
    aggregate = Aggregate()
    aggregate.cpu_read(300, 1, 1.0)
    text, samples = scrape(aggregate, processes=processes)
    assert samples[('zato_worker_resident_memory_bytes', (('worker', '1'),))] == 4096
    assert samples[('zato_worker_open_fds', (('worker', '1'),))] == 9
    assert samples[('zato_worker_cpu_seconds_total', (('worker', '1'),))] == 1.0
    # A figure /proc did not give is left out, not shown as 0.
    assert ('zato_worker_open_fds', (('worker', '2'),)) not in samples
    assert 'pid=' not in text


def test_counter_families_are_typed_counter_and_named_in_base_units():
    text, _ = scrape(Aggregate())
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith('# TYPE'))
    for name, kind in types.items():
        assert name.startswith('zato_')
        assert kind in ('counter', 'gauge', 'histogram'), (name, kind)
    assert types['zato_service_duration_seconds'] == 'histogram'
    assert types['zato_worker_restarts_total'] == 'counter'
    assert types['zato_requests_in_flight'] == 'gauge'
