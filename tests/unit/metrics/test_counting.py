"""What a worker counts, and the reports it builds from it."""

import json

from zato_daemon.metrics.counting import DEFAULT_BUCKETS, ServiceCounts, WorkerCounts


def test_a_call_counts_by_outcome_from_its_status():
    counts = ServiceCounts((0.1, 1.0))
    for status in (200, 204, 302, 400, 404, 499, 500, 503):
        counts.finished(status, 0.05)
    assert (counts.ok, counts.client_error, counts.server_error) == (3, 3, 2)
    assert counts.calls == 8


def test_a_duration_lands_in_the_first_bucket_whose_bound_is_at_least_it():
    counts = ServiceCounts((0.1, 1.0))
    for seconds in (0.0, 0.1, 0.10001, 1.0, 1.5, 1e9):
        counts.finished(200, seconds)
    # (0, 0.1], (0.1, 1.0], (1.0, +Inf): a duration equal to a bound is in that bound's bucket.
    assert counts.buckets == [2, 2, 2]
    assert counts.seconds == 0.0 + 0.1 + 0.10001 + 1.0 + 1.5 + 1e9


def test_a_report_is_json_and_carries_every_kind_of_count():
    counts = WorkerCounts((0.5,))
    counts.service('crm.get').finished(200, 0.1)
    counts.service('crm.get').in_flight = 2
    counts.responses[2] += 3
    counts.responses[4] += 1
    counts.cache('default').hits += 5
    counts.add_source('requests', lambda: 7)
    counts.dump_failed()
    counts.dump_failed()
    report = json.loads(json.dumps(counts.report()))
    assert report == {'bounds': [0.5], 'services': {'crm.get': [1, 0, 0, 2, 0.1, [1, 0]]},
                      'responses': {'2xx': 3, '4xx': 1}, 'caches': {'default': [5, 0, 0]}, 'requests': 7,
                      'dump_failures': 2}


def test_a_report_leaves_out_services_unchanged_since_the_last_one_unless_full():
    counts = WorkerCounts()
    counts.service('a').finished(200, 0.01)
    counts.service('b').finished(200, 0.01)
    assert set(counts.report()['services']) == {'a', 'b'}
    counts.service('b').finished(500, 0.01)
    assert set(counts.report()['services']) == {'b'}
    assert counts.report()['services'] == {}
    assert set(counts.report(full=True)['services']) == {'a', 'b'}


def test_a_call_starting_or_ending_makes_its_service_reported_again():
    counts = WorkerCounts()
    service = counts.service('a')
    counts.report()
    service.in_flight += 1
    assert set(counts.report()['services']) == {'a'}
    service.in_flight -= 1
    assert set(counts.report()['services']) == {'a'}


def test_a_source_that_fails_leaves_its_figure_out_and_the_report_whole():
    counts = WorkerCounts()
    counts.add_source('requests', lambda: 1 / 0)
    report = counts.report()
    assert 'requests' not in report and report['bounds'] == list(DEFAULT_BUCKETS)

