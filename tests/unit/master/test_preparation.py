"""When a reload's (or a start's) FS_CONFIG_ONLY callable has run too long: case by case, and a
real preparation thread that overruns, is refused, and leaves the caller free."""

import pytest

from zato_daemon.master.preparation import Preparation, describe_overdue


@pytest.mark.parametrize('progress, now, reason', [
    ({'time_limit': 30}, 1000.0, None),                                     # no callable running
    ({'time_limit': 30, 'running': ('mod.f', 'FS_CONFIG_ONLY', 100.0)}, 130.0, None),  # at the limit
    ({'time_limit': 30, 'running': ('mod.f', 'FS_CONFIG_ONLY', 100.0)}, 130.5,
     'startup callable mod.f is still running in phase FS_CONFIG_ONLY after 30 s ([misc] startup_callable_timeout)'),
    ({'time_limit': 2.5, 'running': ('mod.f (importing its module)', 'FS_CONFIG_ONLY', 0.0)}, 3.0,
     'startup callable mod.f (importing its module) is still running in phase FS_CONFIG_ONLY after 2.5 s '
     '([misc] startup_callable_timeout)'),
])
def test_describe_overdue(progress, now, reason):
    assert describe_overdue(progress, now) == reason


def test_a_preparation_that_hangs_is_overdue_and_the_caller_goes_on(tmp_path):
    (tmp_path / 'server.conf').write_text('[misc]\nstartup_callable = hangs.forever\nstartup_callable_timeout = 1\n')
    (tmp_path / 'extlib').mkdir()
    (tmp_path / 'extlib' / 'hangs.py').write_text('import threading\nEVENT = threading.Event()\n'
                                                   'def forever(ctx):\n    EVENT.wait(30)\n')
    now = [0.0]
    preparation = Preparation(tmp_path, check=lambda config, paths: None, clock=lambda: now[0]).start()
    try:
        assert not preparation.finished.wait(0.5)
        name, phase, started = preparation.progress['running']
        assert (name, phase) == ('hangs.forever', 'FS_CONFIG_ONLY')
        now[0] = started + 0.5
        assert preparation.overdue() is None
        now[0] = started + 1.5
        assert 'hangs.forever is still running in phase FS_CONFIG_ONLY after 1 s' in preparation.overdue()
    finally:
        import hangs  # the callable's module, imported by the preparation from extlib
        hangs.EVENT.set()
    assert preparation.finished.wait(10) and preparation.error is None and preparation.result is not None
