"""The pure decisions behind worker recycling: a worker's share of max_requests, its resident
memory read from /proc, and whether that memory replaces it."""

import os
import random

import pytest

from zato_daemon.master.recycling import (MEMORY_RECYCLE_AFTER, draw_request_limit, format_size, parse_statm,
                                          read_rss, should_recycle_for_memory)


class ExtremeRandom:
    """A random source that always draws the lowest, or the highest, value allowed."""

    def __init__(self, highest):
        self.highest = highest

    def randint(self, low, high):
        return high if self.highest else low


# The jittered limit ###########################################################################


@pytest.mark.parametrize('jitter', [0, 10, 100])
def test_no_max_requests_means_no_limit_whatever_the_jitter(jitter):
    assert draw_request_limit(0, jitter, random.Random(1)) == 0


@pytest.mark.parametrize(('max_requests', 'jitter', 'lowest', 'highest'), [
    (100, 10, 100, 110),
    (100, 0, 100, 100),
    (100, 100, 100, 200),
    (1, 10, 1, 1),          # 10 % of 1 request is no request
    (1000, 7, 1000, 1070),
])
def test_the_limit_lies_between_max_requests_and_max_requests_plus_jitter(max_requests, jitter, lowest, highest):
    assert draw_request_limit(max_requests, jitter, ExtremeRandom(highest=False)) == lowest
    assert draw_request_limit(max_requests, jitter, ExtremeRandom(highest=True)) == highest
    rng = random.Random(12)
    draws = {draw_request_limit(max_requests, jitter, rng) for _ in range(2000)}
    assert min(draws) >= lowest and max(draws) <= highest


def test_without_jitter_every_worker_gets_max_requests():
    rng = random.Random(3)
    assert {draw_request_limit(500, 0, rng) for _ in range(100)} == {500}


def test_with_jitter_workers_draw_different_limits_spread_over_the_range():
    rng = random.Random(5)
    draws = [draw_request_limit(1000, 10, rng) for _ in range(1000)]
    assert len(set(draws)) > 50
    # Uniform: about half of the draws in each half of the range.
    assert 400 < sum(1 for draw in draws if draw < 1050) < 600


# Resident memory ##############################################################################


def test_statm_gives_the_resident_pages_times_the_page_size():
    assert parse_statm('52866 8195 2383 1 0 44133 0\n', page_size=4096) == 8195 * 4096


@pytest.mark.parametrize('text', ['', '52866', 'x y z'])
def test_a_statm_that_is_not_as_documented_raises_value_or_index_error(text):
    with pytest.raises((ValueError, IndexError)):
        parse_statm(text, page_size=4096)


def test_this_process_has_a_resident_size():
    rss = read_rss(os.getpid())
    assert rss is not None and 1024 ** 2 < rss < 100 * 1024 ** 3


def test_a_process_that_is_gone_or_unreadable_gives_none(monkeypatch):
    assert read_rss(2 ** 22 + 12345) is None       # above pid_max's ceiling: no such process

    def hidden(*args, **kwargs):
        raise PermissionError(13, 'Permission denied')
    monkeypatch.setattr('builtins.open', hidden)
    assert read_rss(os.getpid()) is None


# The memory decision ##########################################################################


LIMIT = 512 * 1024 ** 2
OLD_ENOUGH = MEMORY_RECYCLE_AFTER + 0.5


@pytest.mark.parametrize(('rss', 'limit', 'age', 'expected'), [
    (LIMIT + 1, LIMIT, OLD_ENOUGH, True),               # over the ceiling, lived long enough
    (LIMIT, LIMIT, OLD_ENOUGH, False),                  # at the ceiling is not over it
    (LIMIT - 1, LIMIT, OLD_ENOUGH, False),
    (LIMIT * 4, 0, OLD_ENOUGH, False),                  # 0: no ceiling
    (None, LIMIT, OLD_ENOUGH, False),                   # /proc could not be read: skip
    (LIMIT * 4, LIMIT, MEMORY_RECYCLE_AFTER, False),    # too young: at most once every 10 s a slot
    (LIMIT * 4, LIMIT, 0.0, False),
    (LIMIT * 4, LIMIT, 3600.0, True),
])
def test_a_worker_is_replaced_for_memory_only_over_the_ceiling_and_old_enough(rss, limit, age, expected):
    assert should_recycle_for_memory(rss, limit, age) is expected


def test_sizes_are_shown_in_mib_and_bytes():
    assert format_size(LIMIT) == '512.0 MiB (536870912 bytes)'
