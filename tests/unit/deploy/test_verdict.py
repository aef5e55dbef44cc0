"""The rule that decides whether a probed module is deployed, case by case."""

import signal

import pytest

from zato_daemon.deploy.probe import ProbeResult, Target
from zato_daemon.deploy.verdict import ACCEPT, Verdict, judge

TARGET = Target('file', '/srv/pickup/b.py')


def result(**fields):
    return ProbeResult(TARGET, **fields)


def test_a_clean_import_with_free_names_is_accepted():
    assert judge(result(sha256='ab', services=('crm.get', 'crm.set')), {'other.x': 'a.py'}) == ACCEPT


@pytest.mark.parametrize('fields, reason', [
    ({'exit_status': 3}, 'exited with status 3 during import'),
    ({'exit_status': 0}, 'exited with status 0 during import'),
    ({'signal_number': signal.SIGSEGV}, 'killed by SIGSEGV during import'),
    ({'signal_number': 200}, 'killed by signal 200 during import'),
    ({'time_limit': 10.0}, 'still importing after 10 s'),
    ({'time_limit': 2.5}, 'still importing after 2.5 s'),
    ({'error': 'defines no Service subclass with a name'}, 'defines no Service subclass with a name'),
])
def test_a_failed_import_is_refused_with_its_reason(fields, reason):
    assert judge(result(**fields), {}) == Verdict(False, reason)


def test_an_exception_keeps_the_line_it_came_from():
    verdict = judge(result(error="exception while importing: RuntimeError('x')", line=7), {})
    assert verdict == Verdict(False, "exception while importing: RuntimeError('x')", 7)


def test_a_failure_is_reported_before_any_clash():
    # Names from a module that did not import are not names it holds.
    assert not judge(result(exit_status=1, services=('s',)), {'s': 'a.py'}).is_clash


def test_a_name_held_by_another_module_is_a_clash_naming_the_holder():
    verdict = judge(result(sha256='ab', services=('z.last', 'crm.get')), {'crm.get': 'a.py', 'z.last': 'c.py'})
    # The first clashing name in sorted order, so the reason is the same on every scan.
    assert verdict == Verdict(False, 'service crm.get is already defined by a.py', is_clash=True)


def test_builtin_and_configured_holders_are_named_as_given():
    verdict = judge(result(sha256='ab', services=('zato.ping',)), {'zato.ping': 'the built-in services'})
    assert verdict.reason == 'service zato.ping is already defined by the built-in services'
