"""The open-files limit raised at start and checked against max_connections."""

import resource

import pytest

from zato_daemon.rlimits import RESERVED_DESCRIPTORS, is_enough_for, raise_open_files_limit


@pytest.mark.parametrize('limit, max_connections, expected', [
    (1024, 1000, False),
    (1000 + RESERVED_DESCRIPTORS, 1000, True),
    (1000 + RESERVED_DESCRIPTORS - 1, 1000, False),
    (65536, 1000, True),
    (resource.RLIM_INFINITY, 10 ** 9, True),
])
def test_is_enough_for(limit, max_connections, expected):
    assert is_enough_for(limit, max_connections) is expected


def test_the_soft_limit_is_raised_to_the_hard_one():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 512:
        pytest.skip(f'needs a finite hard limit of at least 512, not {hard}')
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        assert raise_open_files_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 256), hard))
