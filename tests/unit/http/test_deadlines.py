"""The deadline of each phase of a connection, case by case."""

import pytest

from zato_daemon.http.deadlines import BODY, HEADERS, IDLE, PHASES, SENDING, SERVICE, Deadlines

DEADLINES = Deadlines(keep_alive_timeout=60.0, header_timeout=20.0, body_timeout=30.0, body_min_rate=8192)


@pytest.mark.parametrize('phase, since, received, expected', [
    (IDLE, 100.0, 0, (160.0, None)),
    (HEADERS, 100.0, 0, (120.0, 408)),
    (BODY, 100.0, 0, (130.0, 408)),
    (BODY, 100.0, 8192, (131.0, 408)),
    (BODY, 100.0, 1024 * 1024, (258.0, 408)),
    (SERVICE, 100.0, 0, (None, None)),
    (SENDING, 100.0, 0, (160.0, None)),
])
def test_expiry_by_phase(phase, since, received, expected):
    assert DEADLINES.expiry(phase, since, received) == expected


def test_every_phase_has_a_rule_and_an_unknown_one_is_refused():
    for phase in PHASES:
        DEADLINES.expiry(phase, 0.0)
    with pytest.raises(ValueError):
        DEADLINES.expiry('lunch', 0.0)


def test_a_body_sent_at_the_minimum_rate_never_expires():
    # One body_min_rate a second: the deadline stays body_timeout ahead of the clock.
    since = 0.0
    for second in range(1, 600):
        deadline, _ = DEADLINES.expiry(BODY, since, second * DEADLINES.body_min_rate)
        assert deadline - second >= DEADLINES.body_timeout
