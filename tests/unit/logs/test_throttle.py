"""One report per interval, carrying the count of what it stands for."""

from zato_daemon.logs.throttle import Throttle


def test_first_occurrence_is_reported_then_counted_until_the_interval_passes():
    throttle = Throttle(60.0)
    assert throttle.occurred(0.0) == 1
    assert [throttle.occurred(now) for now in (1.0, 2.0, 59.9)] == [0, 0, 0]
    assert throttle.occurred(60.0) == 4  # the three held back and this one
    assert throttle.occurred(61.0) == 0
    assert throttle.unreported() == 1
    assert throttle.unreported() == 0
    assert throttle.occurred(200.0) == 1


def test_the_end_of_a_burst_is_reported_by_the_periodic_check():
    throttle = Throttle(60.0)
    assert throttle.occurred(0.0) == 1
    for now in (1.0, 2.0, 3.0):
        throttle.occurred(now)
    assert throttle.due(30.0) == 0  # not yet: within the interval of the last report
    assert throttle.due(60.0) == 3
    assert throttle.due(200.0) == 0  # nothing held back
    assert throttle.occurred(200.5) == 1  # more than an interval after the last report: at once
