"""Whether a probed module may be deployed: the one rule for pickup files and configured modules.

Pure: given what the disposable child reported (deploy/probe.py's ProbeResult) and which
names are held already, it says accept, or refuse with a one-line reason. The callers
log, copy and raise.
"""

import signal
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """Accept, or refuse with a reason (and the module's line, when the error has one).

    `is_clash`: refused only because another module holds one of its service names, so it is
    judged again when the set of held names changes.
    """

    accepted: bool
    reason: str = ''
    line: int = None
    is_clash: bool = False


ACCEPT = Verdict(True)


def signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return f'signal {number}'


def judge(result, holders):
    """The verdict on one probed module.

    `holders`: {service name: who holds it (a file name, "the built-in services", ...)}, for
    every module that stays deployed, the module's own previous version excluded.
    """
    if result.time_limit is not None:
        return Verdict(False, f'still importing after {result.time_limit:g} s')
    if result.signal_number is not None:
        return Verdict(False, f'killed by {signal_name(result.signal_number)} during import')
    if result.exit_status is not None:
        return Verdict(False, f'exited with status {result.exit_status} during import')
    if result.error:
        return Verdict(False, result.error, result.line)
    for name in sorted(result.services):
        if name in holders:
            return Verdict(False, f'service {name} is already defined by {holders[name]}', is_clash=True)
    return ACCEPT
