"""The open-files limit: raised at start, and checked against max_connections.

Every client connection holds a descriptor. A process started by systemd gets a soft
limit of 1024 whatever its hard limit (524288 on Debian 12), and the soft one is what
accept() runs into: at 1024 a worker refused every health check while slow clients held
its descriptors. The master raises the soft limit to the hard one before it forks, so that
every worker inherits it; the packaged units also set LimitNOFILE=.

Stdlib only: runs in the master, before it forks the first worker.
"""

import resource

# Descriptors a worker holds besides client connections: server.log, the journal socket,
# the databases and their -wal files, pipes to the master, the listeners, the dump thread.
RESERVED_DESCRIPTORS = 64
_NR_OPEN = '/proc/sys/fs/nr_open'


def raise_open_files_limit():
    """Raises this process's soft RLIMIT_NOFILE to its hard limit; returns the soft limit in effect.

    An unlimited hard limit is taken as the kernel's nr_open. A refusal (a sandbox filtering
    setrlimit, as SystemCallFilter=~@resources does) leaves the limit as it was.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else _nr_open()
    if target is not None and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def is_enough_for(soft_limit, max_connections):
    """Whether a worker with this soft limit can hold max_connections client connections."""
    return soft_limit == resource.RLIM_INFINITY or soft_limit >= max_connections + RESERVED_DESCRIPTORS


def _nr_open():
    try:
        with open(_NR_OPEN) as nr_open:
            return int(nr_open.read())
    except (OSError, ValueError):
        return None
