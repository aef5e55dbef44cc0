"""The per-second view of top: rates and percentiles over the interval between two views."""

import math

import pytest

from zato_daemon.metrics.aggregate import Aggregate
from zato_daemon.metrics.counting import WorkerCounts
from zato_daemon.metrics.live import quantile, snapshot
from zato_daemon.metrics.processes import ProcessFigures

INF = math.inf


@pytest.mark.parametrize('q, cumulative, expected', [
    (0.5, [], None),
    (0.5, [(0.1, 0), (INF, 0)], None),
    # All in the first bucket: linear from 0 to its bound.
    (0.5, [(0.1, 10), (INF, 10)], 0.05),
    (0.99, [(0.1, 10), (INF, 10)], 0.099),
    # The rank falls in the second bucket: from 0.1 to 1.0.
    (0.5, [(0.1, 2), (1.0, 6), (INF, 6)], 0.1 + 0.9 * (3 - 2) / 4),
    # Empty buckets before the rank are skipped.
    (0.5, [(0.1, 0), (1.0, 0), (2.0, 4), (INF, 4)], 1.5),
    # In +Inf: the highest finite bound, as histogram_quantile answers.
    (0.99, [(0.1, 1), (1.0, 1), (INF, 100)], 1.0),
])
def test_quantile(q, cumulative, expected):
    result = quantile(q, cumulative)
    assert result == pytest.approx(expected) if expected is not None else result is None


def view_after(aggregate, counts):
    aggregate.heard(101, counts.report())
    return aggregate.view()


def test_rates_and_percentiles_cover_only_the_calls_of_the_interval():
    aggregate, counts = Aggregate(), WorkerCounts((0.1, 1.0))
    for _ in range(10):
        counts.service('old').finished(200, 5.0)
    first = view_after(aggregate, counts)
    for _ in range(4):
        counts.service('busy').finished(200, 0.05)
    counts.service('busy').finished(500, 0.5)
    counts.service('busy').in_flight = 3
    second = view_after(aggregate, counts)
    workers = [(1, 1, 101, 'ready')]
    processes = {101: ProcessFigures(101, 1, 1, 'ready', rss=1000, fds=12, cpu_seconds=1.5)}
    shown = snapshot(first, second, (0.1, 1.0), 2.0, workers, processes, 1234.5)
    busy, old = shown['services']
    assert busy == {'service': 'busy', 'calls_per_second': 2.5, 'errors_per_second': 0.5, 'error_rate': 0.2,
                    'p50_seconds': pytest.approx(0.0625), 'p99_seconds': pytest.approx(0.1 + 0.9 * 0.95),
                    'in_flight': 3, 'calls_total': 5, 'errors_total': 1}
    # No call of `old` ended in the interval: no rate, no percentile, its totals still there.
    assert old == {'service': 'old', 'calls_per_second': 0.0, 'errors_per_second': 0.0, 'error_rate': None,
                   'p50_seconds': None, 'p99_seconds': None, 'in_flight': 0, 'calls_total': 10, 'errors_total': 0}
    assert shown['workers'] == [{'number': 1, 'generation': 1, 'pid': 101, 'state': 'ready', 'rss_bytes': 1000,
                                 'cpu_seconds': 1.5, 'open_fds': 12, 'requests': 0, 'in_flight': 3}]
    assert shown['totals'] == {'calls_per_second': 2.5, 'in_flight': 3, 'workers_alive': 1, 'restarts': {}}
    assert (shown['time'], shown['interval_seconds'], shown['version']) == (1234.5, 2.0, 1)


def test_the_first_view_has_totals_and_no_rates():
    aggregate, counts = Aggregate(), WorkerCounts()
    counts.service('a').finished(200, 0.01)
    shown = snapshot(None, view_after(aggregate, counts), (0.1,), 0.0, [], {}, 1.0)
    assert shown['services'][0]['calls_total'] == 1 and shown['services'][0]['calls_per_second'] == 0.0
    assert shown['workers'] == []


def test_a_worker_not_read_in_proc_shows_without_figures():
    shown = snapshot(None, Aggregate().view(), (0.1,), 1.0, [(2, 1, 555, 'booting')], {}, 1.0)
    assert shown['workers'] == [{'number': 2, 'generation': 1, 'pid': 555, 'state': 'booting', 'rss_bytes': None,
                                 'cpu_seconds': None, 'open_fds': None, 'requests': 0, 'in_flight': 0}]
