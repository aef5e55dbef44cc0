"""What the child of a fork() made by a service may not do: serve the worker's clients.

A service may fork (to detach some work, or through a library). The child is a copy of the
worker: its greenlets, the listening sockets and every client connection. Left alone, a
child that returns from handle() would answer its parent's call a second time, and one
that only yields to gevent (a sleep, any I/O) would run the worker's accept loop and other
connections' greenlets, and serve requests its parent then never answers.

So the worker registers, once, a hook that runs in every such child right after fork: it
puts /dev/null in place of the descriptors the worker names (listeners, connections, the
pipe to the master), which cuts the child off from them whatever its greenlets do, and it
marks the process, so that the server's code ends the child when it comes back from a
service (services/host.py) and accepts nothing in it (http/). Only the worker's own
descriptors change, in the child: the parent's sockets are untouched.

Stdlib only; the hook does nothing but system calls, as an at-fork hook must.
"""

import os

_state = {'is_child': False, 'sources': [], 'is_registered': False}


def in_forked_child():
    """True in the child of a fork made after `guard()`, in a worker."""
    return _state['is_child']


def guard(descriptors):
    """Runs in a worker: every fork() from now on cuts the child off from `descriptors()`,
    a callable returning the file descriptors only the worker may use, read at fork time."""
    _state['sources'].append(descriptors)
    if not _state['is_registered']:
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _state['is_registered'] = True


def _after_fork_in_child():
    _state['is_child'] = True
    try:
        null = os.open(os.devnull, os.O_RDWR)
    except OSError:
        return
    try:
        for source in _state['sources']:
            for fd in source():
                try:
                    os.dup2(null, fd)
                except OSError:
                    pass
    finally:
        os.close(null)
