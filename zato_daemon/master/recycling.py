"""When a worker is replaced for its own good: max_requests and max_worker_memory.

Pure decisions for the master (no I/O but `read_rss`, which reads one small /proc file),
so that each rule is tested case by case; the arbiter does the replacing, the way a
reload does it: the new worker first, then the old one drains.
"""

import os

# How often the master reads its workers' resident memory, and how long a worker must have
# lived before memory replaces it: a fresh worker already over the ceiling (a ceiling set
# too low) is then replaced at most once every MEMORY_RECYCLE_AFTER, not every second.
MEMORY_CHECK_INTERVAL = 1.0
MEMORY_RECYCLE_AFTER = 10.0

PAGE_SIZE = os.sysconf('SC_PAGE_SIZE')


def draw_request_limit(max_requests, jitter_percent, rng):
    """How many requests one worker serves before it is replaced; 0 means never.

    Drawn uniformly from max_requests to max_requests plus `jitter_percent` of it, both
    included, with `rng` (a random.Random), so that workers started together are not all
    replaced together. Runs in the master, before each fork.
    """
    if max_requests <= 0:
        return 0
    return rng.randint(max_requests, max_requests + max_requests * jitter_percent // 100)


def parse_statm(text, page_size=PAGE_SIZE):
    """The resident set size in bytes from the text of /proc/PID/statm (see proc(5)):
    its second field, in pages."""
    return int(text.split()[1]) * page_size


def read_rss(pid):
    """A process's resident set size in bytes, or None when it cannot be read.

    Runs in the master. /proc/PID of a process of the same user is visible even under the
    unit's ProtectProc=invisible and ProcSubset=pid; a worker that just exited, or a /proc
    that hides it, must only skip the check, never stop the master.
    """
    try:
        with open(f'/proc/{pid}/statm', encoding='ascii') as statm:
            return parse_statm(statm.read())
    except (OSError, ValueError, IndexError):
        return None


def should_recycle_for_memory(rss, limit, age, recycle_after=MEMORY_RECYCLE_AFTER):
    """True when a serving worker of `age` seconds with `rss` bytes resident must be replaced.

    `limit` is max_worker_memory (0: never); an unknown `rss` (None) never replaces a worker.
    The caller asks only for workers that serve and are not being replaced already.
    """
    return bool(limit) and rss is not None and rss > limit and age > recycle_after


def format_size(size):
    """'312.4 MiB (327574528 bytes)', for the log."""
    return f'{size / 1024 ** 2:.1f} MiB ({size} bytes)'
