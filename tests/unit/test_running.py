"""The pure halves of running.py: does a process title name a server directory, and has the
reload a command asked for finished, and how."""

import pytest

from zato_daemon.running import ReloadOutcome, directory_in_title, master_title, reload_outcome, title_names

PADDING = b'\0' * 300


@pytest.mark.parametrize('cmdline, expected', [
    (b'zato-daemon: master /srv/a' + PADDING, b'/srv/a'),
    (b'zato-daemon: master /srv/a', b'/srv/a'),
    (b'zato-daemon: master /srv/a b' + PADDING, b'/srv/a b'),
    (b'zato-daemon: master /srv/a   ', b'/srv/a   '),  # padding is title_names' to judge
    (b'zato-daemon: master ' + PADDING, None),
    (b'zato-daemon: worker 1 /srv/a' + PADDING, None),
    # A master before it named itself, and any other process: arguments separated by NULs.
    (b'/usr/bin/python3\0-m\0zato_daemon\0start\0/srv/a\0', None),
    (b'vim\0zato-daemon: master /srv/a\0', None),
    (b'', None),
])
def test_the_directory_a_title_names(cmdline, expected):
    assert directory_in_title(cmdline) == expected


@pytest.mark.parametrize('cmdline, names', [
    (b'zato-daemon: master /srv/a' + PADDING, True),
    (b'zato-daemon: master /srv/a' + b' ' * 40, True),
    (b'zato-daemon: master /srv/a' + b' ' * 40 + PADDING, True),
    (b'zato-daemon: master /srv/ab' + PADDING, False),
    (b'zato-daemon: master /srv' + PADDING, False),
    (b'zato-daemon: master /srv/a/sub' + PADDING, False),
    (b'zato-daemon: master /srv/a/' + PADDING, False),
    (b'zato-daemon: master srv/a' + PADDING, False),
    (b'zato-daemon: worker 1 /srv/a' + PADDING, False),
    (b'python3\0-m\0zato_daemon\0start\0/srv/a\0', False),
    (b'', False),
])
def test_a_title_names_exactly_one_directory(cmdline, names):
    assert title_names(cmdline, {b'/srv/a'}) is names


def test_any_spelling_of_the_directory_counts():
    spellings = {b'/srv/link', b'/srv/real'}
    assert title_names(b'zato-daemon: master /srv/real\0', spellings)
    assert title_names(b'zato-daemon: master /srv/link\0', spellings)
    assert not title_names(b'zato-daemon: master /srv/other\0', spellings)


def test_the_title_the_master_sets_is_the_one_matched():
    assert title_names(master_title('/srv/a').encode() + PADDING, {b'/srv/a'})


# ---- reload_outcome: (master.json, the time the command asked) -> keep waiting, or an outcome

REQUESTED_AT = 1000.0


def status_with(last, running=False, queued=False):
    return {'master_proc_pid': 42, 'reload': {'last': last, 'running': running, 'queued': queued}}


def last(outcome='applied', started_at=REQUESTED_AT + 0.01, finished_at=REQUESTED_AT + 1.51,
         reason='the new workers serve', exit_status=0):
    return {'started_at': started_at, 'finished_at': finished_at, 'outcome': outcome, 'reason': reason,
            'exit_status': exit_status}


@pytest.mark.parametrize('status', [
    None,                                         # master.json missing (being recreated)
    ['not', 'a', 'dict'],
    status_with(None),                            # no reload finished since start
    status_with(None, running=True),              # ours is running
    status_with(last(started_at=REQUESTED_AT - 5), running=True, queued=True),  # an older one finished
    status_with(last(started_at=REQUESTED_AT - 0.001)),
    status_with(last(started_at=None)),
    status_with(last(started_at='1001')),
    status_with(last(started_at=True)),
    {'master_proc_pid': 42, 'reload': None},
    {'master_proc_pid': 42, 'reload': 'applied'},
    {'master_proc_pid': 42, 'reload': {'running': True}},
])
def test_waits_while_no_reload_started_after_the_request_has_finished(status):
    assert reload_outcome(status, REQUESTED_AT) is None


def test_applied_exits_0_with_the_time_it_took():
    assert reload_outcome(status_with(last()), REQUESTED_AT) == ReloadOutcome(
        0, 'reload applied in 1.5 s: the new workers serve')


def test_a_reload_that_started_at_the_very_request_time_counts():
    assert reload_outcome(status_with(last(started_at=REQUESTED_AT)), REQUESTED_AT).exit_status == 0


def test_an_integer_time_counts_as_a_time():
    assert reload_outcome(status_with(last(started_at=1001, finished_at=1003)), REQUESTED_AT).message == \
        'reload applied in 2.0 s: the new workers serve'


def test_applied_without_a_finish_time_says_no_duration():
    assert reload_outcome(status_with(last(finished_at=None)), REQUESTED_AT).message == \
        'reload applied: the new workers serve'


def test_refused_exits_with_the_masters_status_and_reason():
    reason = '/srv/a/server.conf:3: [main] port: expected a port number, got \'x\''
    outcome = reload_outcome(status_with(last('refused', reason=reason, exit_status=78)), REQUESTED_AT)
    assert outcome == ReloadOutcome(78, f'reload refused, the server keeps its previous configuration: {reason}')


def test_failed_exits_with_the_masters_status_and_reason():
    outcome = reload_outcome(status_with(last('failed', reason='new worker 1 exited with status 3 before it was '
                                                                'ready', exit_status=70)), REQUESTED_AT)
    assert outcome.exit_status == 70
    assert outcome.message.startswith('reload failed, the server keeps its previous configuration: new worker 1')


def test_the_reason_is_one_line():
    outcome = reload_outcome(status_with(last('refused', reason='first\n  second\r\nthird', exit_status=78)),
                             REQUESTED_AT)
    assert outcome.message.endswith(': first second third')


def test_a_missing_reason_is_said_so():
    assert reload_outcome(status_with(last('refused', reason=None, exit_status=78)), REQUESTED_AT).message \
        .endswith(': no reason given')


@pytest.mark.parametrize('exit_status', [0, None, True, 256, -1, '78', 7.8])
def test_a_refusal_never_exits_0_or_with_a_status_that_is_not_one(exit_status):
    outcome = reload_outcome(status_with(last('refused', exit_status=exit_status)), REQUESTED_AT)
    assert outcome.exit_status == 70


def test_an_outcome_this_command_does_not_know_is_not_success():
    outcome = reload_outcome(status_with(last('postponed', exit_status=0)), REQUESTED_AT)
    assert outcome.exit_status == 70
    assert "'postponed'" in outcome.message


def test_a_master_that_publishes_no_reload_key_is_said_so():
    outcome = reload_outcome({'master_proc_pid': 42, 'workers': []}, REQUESTED_AT)
    assert outcome.exit_status == 0
    assert 'does not report the outcome' in outcome.message
