"""The service call each greenlet serves, for dumps (issue 19).

ServiceHost.run() (services/host.py) puts `(cid, service name, time.time())` in the current
greenlet's own __dict__ under CALL_KEY around service.handle(), inline since it costs every
request, and puts back what was there when handle() returns: None, or the entry of the
caller of a nested call (self.invoke inside a service). The dump thread reads each greenlet's
entry with call_of(): one plain dict lookup, which runs no code of the greenlet (Rule 1 and
Rule 2 of collect.py).

Why in the greenlet and not one dict keyed by greenlet: that dict's get, set and delete on
every request cost about 1,000 CPU instructions (the delete leaves a slot that the next
insert cannot reuse, so the dict keeps resizing), 0.5 % of a whole request; two sets in a
dict the greenlet already has cost a fraction of that, and the entry dies with its greenlet.

Imports nothing: collect.py reads entries with call_of() in the master too, which loads
neither gevent nor greenlet.
"""

CALL_KEY = '_zato_daemon_call'


def call_of(greenlet_dict):
    """(cid, service, started) of the call a greenlet (by its __dict__) serves, or None."""
    entry = greenlet_dict.get(CALL_KEY) if type(greenlet_dict) is dict else None
    return entry if type(entry) is tuple and len(entry) == 3 else None
