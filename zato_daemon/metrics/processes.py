"""What the master reads of its workers in /proc: resident memory, CPU time, open descriptors.

Read from /proc, not asked of the worker, so a worker whose hub is blocked is measured too.
Each reader returns None when the figure cannot be read (the worker just exited, or /proc
hides it): a figure missing from one scrape must never stop the master.
"""

import os
from dataclasses import dataclass

from zato_daemon.master.recycling import read_rss

CLOCK_TICKS = os.sysconf('SC_CLK_TCK')


@dataclass(frozen=True)
class ProcessFigures:
    pid: int
    number: int
    generation: int
    state: str
    rss: int = None
    fds: int = None
    cpu_seconds: float = None


def parse_cpu_seconds(stat_text, ticks=CLOCK_TICKS):
    """User plus system CPU seconds from the text of /proc/PID/stat (proc(5): fields 14 and 15).

    The command name (field 2) may hold spaces and parentheses: the fields are counted from
    its last ')'."""
    fields = stat_text[stat_text.rindex(')') + 2:].split()
    return (int(fields[11]) + int(fields[12])) / ticks


def read_cpu_seconds(pid):
    try:
        with open(f'/proc/{pid}/stat', encoding='ascii', errors='replace') as stat:
            return parse_cpu_seconds(stat.read())
    except (OSError, ValueError, IndexError):
        return None


def count_fds(pid):
    try:
        return len(os.listdir(f'/proc/{pid}/fd'))
    except OSError:
        return None


def read_figures(pid, number, generation, state):
    return ProcessFigures(pid, number, generation, state, read_rss(pid), count_fds(pid), read_cpu_seconds(pid))


def newest_by_number(figures):
    """{worker number: the ProcessFigures of its newest generation}: during a reload two
    processes share a number, and the per-worker gauges follow the one that stays."""
    chosen = {}
    for process in figures:
        current = chosen.get(process.number)
        if current is None or process.generation > current.generation:
            chosen[process.number] = process
    return chosen
