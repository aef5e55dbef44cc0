"""The master loop's wait: a tick, or less when a worker's respawn falls due sooner."""

from zato_daemon.master.arbiter import LOOP_TICK, loop_timeout


def test_with_nothing_due_the_master_waits_a_tick():
    assert loop_timeout(100.0, []) == LOOP_TICK


def test_a_respawn_due_sooner_than_a_tick_shortens_the_wait():
    assert abs(loop_timeout(100.0, [100.1, 130.0]) - 0.1) < 1e-9


def test_respawns_already_due_or_later_than_a_tick_do_not_change_it():
    assert loop_timeout(100.0, [99.0, 100.0, 101.5]) == LOOP_TICK
