"""The master's totals as Prometheus metric families, built at each scrape by prometheus_client.

A custom collector over aggregate.View, not prometheus_client's multiprocess mode: the master
already holds the totals, and nothing lives in per-process files. Names follow the
Prometheus naming guide: the zato_ namespace, base units (seconds, bytes), `_total` on
counters (prometheus_client appends it). Label values are bounded: services that were
called while deployed (counting.UNKNOWN_SERVICE for every other path), caches that exist,
the fixed outcome, status class and reason sets, and worker numbers.
"""

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.utils import floatToGoString

from zato_daemon import __version__
from zato_daemon.metrics.aggregate import (CACHE_EVENTS, DEPLOY_RESULTS, RELOAD_RESULTS, RESTART_REASONS, rebucket)
from zato_daemon.metrics.counting import OUTCOMES, STATUS_CLASSES


def _counter(name, doc, labels=(), values=()):
    family = CounterMetricFamily(name, doc, labels=list(labels))
    for label_values, value in values:
        family.add_metric(list(label_values), value)
    return family


def _gauge(name, doc, labels=(), values=()):
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    for label_values, value in values:
        family.add_metric(list(label_values), value)
    return family


def _fixed(labels, counts):
    """Every value of a fixed label set, 0 included: a rate needs the series before its first count."""
    return [((label,), counts.get(label, 0)) for label in labels]


class MetricsCollector:
    """Registered in a CollectorRegistry of the master's; `snapshot()` gives what to expose:
    (aggregate.View, histogram bounds served, {worker number: ProcessFigures}, workers alive)."""

    def __init__(self, snapshot):
        self.snapshot = snapshot

    def collect(self):
        view, bounds, processes, alive = self.snapshot()
        totals, master = view.totals, view.master
        services = sorted(totals.services.items())
        yield InfoMetricFamily('zato_build', 'The version of zato-daemon serving', value={'version': __version__})
        yield _counter('zato_service_invocations', 'Service calls, by service and outcome (ok: status below 400, '
                       'client_error: 4xx, server_error: 5xx)', ('service', 'outcome'),
                       [((name, outcome), total.outcomes[index]) for name, total in services
                        for index, outcome in enumerate(OUTCOMES)])
        durations = HistogramMetricFamily('zato_service_duration_seconds', 'How long service calls took, by service',
                                          labels=['service'])
        for name, total in services:
            if not total.buckets:
                continue  # no call timed yet (the requests for no deployed service never are)
            durations.add_metric([name], [(floatToGoString(bound), count)
                                          for bound, count in rebucket(total.buckets, bounds)], total.seconds)
        yield durations
        yield _gauge('zato_requests_in_flight', 'Service calls running now, in every worker',
                     values=[((), totals.in_flight)])
        yield _counter('zato_http_responses', 'HTTP responses sent on the service listener, by status class; '
                       'protocol errors (400, 408, 413, 415, 431, 503) included', ('status_class',),
                       _fixed(STATUS_CLASSES[1:], totals.responses))
        yield _counter('zato_worker_restarts', 'Workers replaced, by reason', ('reason',),
                       _fixed(RESTART_REASONS, master.restarts))
        yield _gauge('zato_workers_alive', 'Worker processes running, of every state', values=[((), alive)])
        yield _counter('zato_reloads', 'Reloads, by result', ('result',), _fixed(RELOAD_RESULTS, master.reloads))
        yield _counter('zato_deploys', 'Pickup files deployed, undeployed or refused', ('result',),
                       _fixed(DEPLOY_RESULTS, master.deploys))
        yield _counter('zato_dumps', 'Dumps written, by the master and the workers', values=[((), master.dumps)])
        figures = totals.figures
        yield _counter('zato_dump_failures', 'Parts of dumps that failed (server.log, the journal, stdout, the '
                       'dump record, collecting, the report to the master), by process', ('process',),
                       [(('master',), master.dump_failures), (('worker',), figures.get('dump_failures', 0))])
        yield _counter('zato_slow_calls_stored', 'Slow calls written to the diagnostics database',
                       values=[((), figures.get('slow_stored', 0))])
        yield _counter('zato_samples_stored', 'Sample calls written to the diagnostics database',
                       values=[((), figures.get('samples_stored', 0))])
        yield _counter('zato_diagnostics_rows_dropped', 'Slow and sample calls dropped before they were written '
                       '(the queue was full or the database failed)', values=[((), figures.get('diagnostics_dropped', 0))])
        caches = sorted(totals.caches.items())
        for index, event in enumerate(CACHE_EVENTS):
            yield _counter(f'zato_cache_{event}', f'Cache {event}, by cache, in every worker', ('cache',),
                           [((name, ), counts[index]) for name, counts in caches])
        by_number = sorted(processes.items())
        yield _gauge('zato_worker_resident_memory_bytes', 'Resident memory of each worker', ('worker',),
                     [((str(number),), figures.rss) for number, figures in by_number if figures.rss is not None])
        yield _gauge('zato_worker_open_fds', 'Open file descriptors of each worker', ('worker',),
                     [((str(number),), figures.fds) for number, figures in by_number if figures.fds is not None])
        yield _counter('zato_worker_cpu_seconds', 'CPU time (user and system) of the processes of each worker '
                       'number, the ones replaced included', ('worker',),
                       [((str(number),), seconds) for number, seconds in sorted(view.cpu_seconds.items())])
        yield _counter('zato_metrics_reports_refused', 'Worker reports the master could not read (a bug)',
                       values=[((), master.bad_reports)])
