"""The deadline of each phase of a connection, case by case."""

import pytest

from zato_daemon.http.deadlines import BODY, HEADERS, IDLE, PHASES, SENDING, SERVICE, Deadlines

DEADLINES = Deadlines(keep_alive_timeout=60.0, header_timeout=20.0, body_timeout=30.0, body_min_rate=8192)


@pytest.mark.parametrize('phase, since, received, last_received, expected', [
    (IDLE, 100.0, 0, None, (160.0, None)),
    (HEADERS, 100.0, 0, None, (120.0, 408)),
    (BODY, 100.0, 0, None, (130.0, 408)),
    # Steady senders earn a second per body_min_rate bytes ...
    (BODY, 100.0, 8192, 101.0, (131.0, 408)),
    (BODY, 100.0, 1024 * 1024, 200.0, (230.0, 408)),
    (BODY, 100.0, 1024 * 1024, 240.0, (258.0, 408)),
    # ... but never more than body_timeout after the last bytes: a fast burst then a stall.
    (BODY, 100.0, 1024 * 1024, 100.3, (130.3, 408)),
    (SERVICE, 100.0, 0, None, (None, None)),
    (SENDING, 100.0, 0, None, (160.0, None)),
])
def test_expiry_by_phase(phase, since, received, last_received, expected):
    assert DEADLINES.expiry(phase, since, received, last_received) == expected


def test_every_phase_has_a_rule_and_an_unknown_one_is_refused():
    for phase in PHASES:
        DEADLINES.expiry(phase, 0.0)
    with pytest.raises(ValueError):
        DEADLINES.expiry('lunch', 0.0)


def test_a_body_sent_at_the_minimum_rate_never_expires():
    # One body_min_rate a second: the deadline stays ahead of the clock.
    for second in range(1, 600):
        deadline, _ = DEADLINES.expiry(BODY, 0.0, second * DEADLINES.body_min_rate, float(second))
        assert deadline - second >= DEADLINES.body_timeout


def test_a_body_trickled_slower_than_the_minimum_rate_expires():
    # One byte a second earns almost nothing: cut at about body_timeout, however long it goes on.
    expired_at = next(second for second in range(1, 600)
                      if DEADLINES.expiry(BODY, 0.0, second, float(second))[0] < second)
    assert 30 <= expired_at <= 31
