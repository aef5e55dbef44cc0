"""Which service call a greenlet serves, read by dumps from its frames (issue 19).

A service call is a frame of ServiceHost.run() (services/host.py) on the greenlet's stack:
its locals `cid`, `name` and `started` (time.time() before service.handle()) say which call
and since when; the innermost such frame is the call in flight (a nested call, self.invoke
inside a service, has its own frame, and its caller's is current again once it returns).
host.py registers its run() here at import (register()); collect.py reads those frames'
locals through _StackReader, like every other variable (its Rule 5), and asks call_in().

Why frames and not a registry that run() fills and empties: the dump already reads frames,
so the hot path pays only the clock reading. Keeping a dict of calls by greenlet cost 2,800
CPU instructions a request (1.4 %, bench/request_instructions.py: getcurrent(), the entry,
and dict operations on the greenlet's dict or a shared one); the clock alone is about 650.

Imports nothing: collect.py uses it in the master too, which loads neither gevent nor greenlet.
"""

# ids of the code objects whose frames are service calls, and the functions, which keep
# those code objects (and so their ids) alive.
CALL_CODE_IDS = set()
_CALL_FUNCTIONS = []

# The locals of such a frame that make the entry: (cid, service name, started).
CALL_LOCALS = ('cid', 'name', 'started')


def register(function):
    """Makes frames of `function` service calls; it has CALL_LOCALS as locals. Returns it."""
    _CALL_FUNCTIONS.append(function)
    CALL_CODE_IDS.add(id(function.__code__))
    return function


def call_in(namespace):
    """(cid, service, started) from the locals of a service call's frame, or None when they are
    not (yet) plain values: a frame read before it set `started` is not in a call yet."""
    if type(namespace) is not dict:
        return None
    cid, name, started = (namespace.get(local) for local in CALL_LOCALS)
    if type(cid) is str and type(name) is str and type(started) is float:
        return cid, name, started
    return None
