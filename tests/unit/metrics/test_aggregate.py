"""The master's totals: kept across workers that die, merged across workers and bucket layouts."""

import math

import pytest

from zato_daemon.metrics.aggregate import Aggregate, BadReport, parse_report, rebucket
from zato_daemon.metrics.counting import WorkerCounts

INF = math.inf


def worker_report(calls=(), bounds=(0.1, 1.0), responses=(), caches=(), requests=None, full=True):
    """A report as a worker builds it: `calls` are (service, status, seconds)."""
    counts = WorkerCounts(bounds)
    for service, status, seconds in calls:
        counts.service(service).finished(status, seconds)
    for status_class, count in responses:
        counts.responses[status_class] += count
    for name, hits in caches:
        counts.cache(name).hits += hits
    if requests is not None:
        counts.add_source('requests', lambda: requests)
    return counts.report(full=full)


def totals(aggregate):
    return aggregate.view().totals


def test_a_workers_counts_survive_its_replacement():
    aggregate = Aggregate()
    aggregate.heard(101, worker_report([('a', 200, 0.01)] * 3, responses=[(2, 3)], caches=[('c', 4)], requests=3))
    before = totals(aggregate)
    aggregate.gone(101)
    aggregate.heard(102, worker_report([('a', 500, 0.01)], responses=[(5, 1)], requests=1))
    after = totals(aggregate)
    assert before.services['a'].outcomes == [3, 0, 0]
    assert after.services['a'].outcomes == [3, 0, 1]
    assert after.responses == {'2xx': 3, '5xx': 1}
    assert after.caches['c'] == [4, 0, 0]
    assert after.figures['requests'] == 4


def test_a_worker_gone_without_reporting_again_keeps_its_last_report():
    aggregate = Aggregate()
    aggregate.heard(101, worker_report([('a', 200, 0.01)] * 2))
    aggregate.gone(101)
    aggregate.gone(101)  # reaped twice: counted once
    assert totals(aggregate).services['a'].outcomes == [2, 0, 0]


def test_the_calls_a_dead_worker_had_in_flight_are_not_in_flight_any_more():
    counts = WorkerCounts()
    counts.service('slow').in_flight = 2
    aggregate = Aggregate()
    aggregate.heard(101, counts.report())
    assert totals(aggregate).in_flight == 2
    aggregate.gone(101)
    assert totals(aggregate).in_flight == 0


def test_a_report_without_unchanged_services_keeps_their_last_counts():
    counts = WorkerCounts((1.0,))
    counts.service('a').finished(200, 0.1)
    counts.service('b').finished(200, 0.1)
    aggregate = Aggregate()
    aggregate.heard(101, counts.report())
    counts.service('b').finished(200, 0.1)
    aggregate.heard(101, counts.report())
    assert {name: total.calls for name, total in totals(aggregate).services.items()} == {'a': 1, 'b': 2}


def test_histograms_of_several_workers_merge_bucket_by_bucket():
    aggregate = Aggregate()
    aggregate.heard(101, worker_report([('a', 200, 0.05), ('a', 200, 0.5)]))
    aggregate.heard(102, worker_report([('a', 200, 0.05), ('a', 200, 5.0)]))
    total = totals(aggregate).services['a']
    assert rebucket(total.buckets, (0.1, 1.0)) == [(0.1, 2), (1.0, 3), (INF, 4)]
    assert total.seconds == pytest.approx(5.6)


def test_no_total_goes_down_through_any_sequence_of_reports_and_deaths():
    aggregate = Aggregate()
    previous = None
    for pid in range(100, 110):
        counts = WorkerCounts()
        counts.add_source('requests', lambda: counts.service('a').calls)
        for call in range(3):
            counts.service('a').finished(200 if call % 2 else 404, 0.2)
            aggregate.heard(pid, counts.report())
            current = totals(aggregate)
            if previous is not None:
                assert current.services['a'].calls >= previous.services['a'].calls
                assert current.figures['requests'] >= previous.figures['requests']
            previous = current
        aggregate.gone(pid)
    assert totals(aggregate).services['a'].outcomes == [10 * 1, 10 * 2, 0]
    assert totals(aggregate).figures['requests'] == 30


@pytest.mark.parametrize('buckets, bounds, expected', [
    ({}, (0.1,), [(0.1, 0), (INF, 0)]),
    # The same layout: unchanged.
    ({0.1: 1, 1.0: 2, INF: 3}, (0.1, 1.0), [(0.1, 1), (1.0, 3), (INF, 6)]),
    # A bound gone: its count moves to the next bound up.
    ({0.1: 1, 0.5: 2, 1.0: 3}, (0.1, 1.0), [(0.1, 1), (1.0, 6), (INF, 6)]),
    # A bound added: the counts of bounds both layouts share stay as they were.
    ({0.1: 1, 1.0: 2}, (0.1, 0.5, 1.0), [(0.1, 1), (0.5, 1), (1.0, 3), (INF, 3)]),
    # Past the new highest bound: +Inf.
    ({10.0: 4}, (0.1, 1.0), [(0.1, 0), (1.0, 0), (INF, 4)]),
])
def test_rebucket(buckets, bounds, expected):
    assert rebucket(buckets, bounds) == expected


@pytest.mark.parametrize('report', [
    {},
    {'bounds': [0.1], 'services': {'a': [1, 0, 0, 0, 0.1, [1]]}, 'responses': {}, 'caches': {}},  # 1 bucket of 2
    {'bounds': [0.1], 'services': {'a': [-1, 0, 0, 0, 0.1, [0, 0]]}, 'responses': {}, 'caches': {}},
    {'bounds': [0.1], 'services': {'a': [1, 0, 0, 0, 'x', [1, 0]]}, 'responses': {}, 'caches': {}},
    {'bounds': [0.1], 'services': {'a': [1, 0, 0]}, 'responses': {}, 'caches': {}},
    {'bounds': [0.1], 'services': {}, 'responses': {'2xx': True}, 'caches': {}},
    {'bounds': [0.1], 'services': {}, 'responses': {}, 'caches': {'c': [1, 2]}},
    {'bounds': [0.1], 'services': {}, 'responses': {}, 'caches': {}, 'requests': float('nan')},
    {'bounds': 'x', 'services': {}, 'responses': {}, 'caches': {}},
    {'bounds': [0.1], 'services': [], 'responses': {}, 'caches': {}},
])
def test_a_report_of_another_shape_is_refused_and_the_last_counts_stay(report):
    aggregate = Aggregate()
    aggregate.heard(101, worker_report([('a', 200, 0.01)]))
    with pytest.raises(BadReport):
        aggregate.heard(101, report)
    assert totals(aggregate).services['a'].calls == 1
    assert aggregate.view().master.bad_reports == 1


def test_unknown_status_classes_and_figures_are_ignored():
    counts = parse_report({'bounds': [], 'services': {}, 'responses': {'9xx': 1, '2xx': 2}, 'caches': {},
                           'requests': 3, 'other': 4})
    assert counts.responses == {'2xx': 2}
    assert dict(counts.figures) == {'requests': 3}


def test_cpu_seconds_of_a_worker_number_keep_its_replaced_processes():
    aggregate = Aggregate()
    aggregate.cpu_read(101, 1, 2.0)
    aggregate.cpu_read(101, 1, 1.0)  # lower than the last reading: ignored
    assert aggregate.view().cpu_seconds == {1: 2.0}
    aggregate.gone(101)
    aggregate.cpu_read(102, 1, 0.5)
    assert aggregate.view().cpu_seconds == {1: 2.5}


def test_the_masters_own_counts():
    aggregate = Aggregate()
    aggregate.count('restarts', 'hung')
    aggregate.count('restarts', 'hung')
    aggregate.count('reloads', 'applied')
    aggregate.count('deploys', 'refused')
    aggregate.count('dumps')
    aggregate.count('dump_failures')
    aggregate.count('dump_failures')
    master = aggregate.view().master
    assert (master.restarts, master.reloads, master.deploys, master.dumps, master.dump_failures) == (
        {'hung': 2}, {'applied': 1}, {'refused': 1}, 1, 2)


def test_a_histogram_sum_never_shrinks_by_a_rounding_error():
    aggregate = Aggregate()
    counts = WorkerCounts((1.0,))
    other = WorkerCounts((1.0,))
    last = 0.0
    for step in range(200):
        counts.service('a').finished(200, 0.1 + step * 1e-7)
        other.service('a').finished(200, 1 / 3)
        aggregate.heard(101, counts.report())
        aggregate.heard(102, other.report())
        seconds = totals(aggregate).services['a'].seconds
        assert seconds >= last
        last = seconds


def test_the_view_costs_one_copy_whatever_the_number_of_workers():
    aggregate = Aggregate()
    for pid in range(50):
        aggregate.heard(pid, worker_report([('a', 200, 0.01), ('b', 500, 0.02)]))
    for pid in range(0, 50, 2):
        aggregate.gone(pid)
    view = aggregate.view()
    assert view.totals.services['a'].outcomes == [50, 0, 0]
    assert view.totals.services['b'].outcomes == [0, 0, 50]
    # The copy is the view's own: later reports do not change it.
    aggregate.heard(1, worker_report([('a', 200, 0.01)] * 5))
    assert view.totals.services['a'].outcomes == [50, 0, 0]
    assert totals(aggregate).services['a'].outcomes == [54, 0, 0]
