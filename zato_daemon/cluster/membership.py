"""This member's record in Redis, and the master's thread that keeps it there.

A member is one key, `zato:CLUSTER:member:HOST`, holding its record as JSON, written with a
time to live of heartbeat_ttl and rewritten every third of it: a member that stops writing
(stopped, killed, cut off) is gone once its key expires, with nothing to clean up. Only the
master writes it, from a thread of its own (like the pickup thread): the master's loop never
waits on Redis, and a worker never talks to it.

The record's pure parts (key names, the record, reachability and what to log about it) are
functions and a small state machine, tested case by case; `Membership` executes them.
"""

import json
import time
from dataclasses import dataclass

from zato_daemon.admin import call_service
from zato_daemon.cluster.thread import ClusterThread, raw_reply, utf8_or_none
from zato_daemon.errors import ZatoDaemonError
from zato_daemon.logs import levels

KEY_PREFIX = 'zato'
RECORD_VERSION = 1
# Built-in services are the same code for one version, which the record names already.
BUILTIN_PREFIX = 'zato.'
# How long the thread waits for a worker to list the deployed services: the admin socket is
# local, and a worker answers in milliseconds or is busy; the last list known is kept then.
SERVICES_TIMEOUT = 1.0
# At stop, how long the thread may take to remove this member's key.
STOP_TIMEOUT = 5.0


# ---- pure

def member_key(cluster, host_name):
    return f'{KEY_PREFIX}:{cluster}:member:{host_name}'


def members_pattern(cluster):
    """The keys of every member of a cluster, for SCAN."""
    return f'{KEY_PREFIX}:{cluster}:member:*'


# A cluster has a handful of members; a Redis holding more keys of the pattern was written by
# something else, and `cluster` must not read millions of them.
MAX_MEMBER_KEYS = 10_000


def heartbeat_interval(ttl):
    """How often the record is rewritten: two heartbeats may be lost before the key expires."""
    return ttl / 3


def deployed_services(described):
    """{service name: module SHA-256} from what zato.service.list answers, built-ins left out."""
    return {service['name']: service['sha256'] for service in described
            if not service['name'].startswith(BUILTIN_PREFIX)}


def member_record(identity, services, now):
    """The record a member publishes. `identity`: host_name, pid, version, listen, started_at;
    `services`: {name: sha256}, or None until a worker has listed them."""
    return dict(identity, record_version=RECORD_VERSION, last_seen=now, services=services)


def parse_record(text):
    """A member's record from its key's value, or None when it is not one (another version's,
    or garbage someone wrote): `cluster` shows what it can read."""
    try:
        record = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get('host_name'), str):
        return None
    services = record.get('services')
    if services is not None and not isinstance(services, dict):
        return None
    return record


class Link:
    """Whether this member reaches Redis, and what to log about it: one WARNING when it stops
    reaching it (or cannot at start), one INFO when it does again (or at once). Pure: `now`
    and the errors come from the caller."""

    UNKNOWN, REACHABLE, UNREACHABLE = 'unknown', 'reachable', 'unreachable'

    def __init__(self):
        self.state = self.UNKNOWN
        self.last_error = None
        self.since = None
        self.delay = None  # the back-off's last wait, None while Redis answers

    def succeeded(self, now):
        """After a heartbeat written: the event to log, or None."""
        self.delay = None
        if self.state == self.REACHABLE:
            return None
        self.state, self.since = self.REACHABLE, now
        return levels.CLUSTER_JOINED

    def failed(self, now, error, next_delay):
        """After a heartbeat that could not be written: the event to log, or None. The wait
        before the next attempt is `self.delay` afterwards."""
        self.last_error = error
        self.delay = next_delay(self.delay)
        if self.state == self.UNREACHABLE:
            return None
        self.state, self.since = self.UNREACHABLE, now
        return levels.CLUSTER_UNREACHABLE

    def as_dict(self):
        return {'state': self.state, 'reachable': self.state == self.REACHABLE, 'since': self.since,
                'last_error': self.last_error}


# ---- I/O

def fetch_services(admin_socket):
    """{name: sha256} deployed by the workers, asked through the admin socket as `info` does;
    None when no worker answers now."""
    try:
        status, _, answer = call_service(admin_socket, 'zato.service.list', timeout=SERVICES_TIMEOUT)
    except (ZatoDaemonError, OSError):
        return None
    if status != 200 or not isinstance(answer, list):
        return None
    return deployed_services(answer)


def read_members(client, cluster):
    """Every member's record (unreadable ones left out), by host name. Raises what redis-py raises.

    Keys and records are read as Redis holds them (raw_reply): anyone who can write Redis may
    have put bytes that are not UTF-8 there, and the client's decoding would fail the whole
    listing on them. At most MAX_MEMBER_KEYS keys are read."""
    keys, cursor = [], b'0'
    while len(keys) < MAX_MEMBER_KEYS:
        cursor, batch = raw_reply(client, 'SCAN', cursor, 'MATCH', members_pattern(cluster), 'COUNT', 1000)
        keys.extend(batch)
        if int(cursor) == 0:
            break
    values = raw_reply(client, 'MGET', *sorted(keys)[:MAX_MEMBER_KEYS]) if keys else []
    records = (parse_record(utf8_or_none(value)) for value in values)
    return sorted((record for record in records if record is not None), key=lambda record: record['host_name'])


@dataclass
class Identity:
    """What the master says about itself in its record, beside the services."""

    pid: int
    version: str
    listen: str
    started_at: float

    def as_dict(self, host_name):
        return {'host_name': host_name, 'pid': self.pid, 'version': self.version, 'listen': self.listen,
                'started_at': self.started_at}


class Membership(ClusterThread):
    """The master's thread: writes this member's record every heartbeat_interval while Redis
    answers, and after a growing delay while it does not; removes it at stop.

    `services()` returns {name: sha256} or None (unknown now: the last one known is kept).
    `on_change()` is called from the thread when the link changes state (the master then
    rewrites master.json, which `info` reads).
    """

    THREAD_NAME = 'zato-daemon: cluster'

    def __init__(self, settings, identity, services, logger, on_change=lambda: None):
        super().__init__(logger)
        self.services = services
        self.on_change = on_change
        self.link = Link()
        self._settings = settings
        self._identity = identity
        self._written_key = None
        self._known_services = None

    # ---- from the master's loop

    def update(self, settings=None, identity=None):
        """At a reload: new [cluster] settings or a new listening address, used from the next heartbeat."""
        with self._lock:
            self._settings = settings or self._settings
            self._identity = identity or self._identity
        self.wake()

    def status(self):
        """For master.json and `info`: the cluster, this member and the link; nothing secret."""
        with self._lock:
            return dict(self._settings.describe(), **self.link.as_dict())

    def join(self, timeout=STOP_TIMEOUT):
        """At the master's exit: waits for the key's removal, at most `timeout`."""
        super().join(timeout)

    # ---- the thread

    def _step(self):
        """Writes the record once; returns how long to wait before the next."""
        with self._lock:
            settings, identity = self._settings, self._identity
        services = self.services()
        if services is not None:
            self._known_services = services
        key = member_key(settings.name, settings.host_name)
        try:
            client = self._redis.client_for(settings)
            record = member_record(identity.as_dict(settings.host_name), self._known_services, time.time())
            client.set(key, json.dumps(record, sort_keys=True), px=int(settings.heartbeat_ttl * 1000))
            if self._written_key not in (None, key):
                # host_name or name changed at a reload: the old record goes at once (on
                # another Redis, it expires there).
                client.delete(self._written_key)
            self._written_key = key
            with self._lock:
                event = self.link.succeeded(time.time())
            wait = heartbeat_interval(settings.heartbeat_ttl)
        except self.connection.REDIS_ERRORS as exc:
            self._redis.close()
            error = self.connection.describe_error(exc, settings)
            with self._lock:
                event = self.link.failed(time.time(), error, self.connection.next_delay)
            wait = self.link.delay
        if event is not None:
            self._log(event, settings)
            self.on_change()
        return wait

    def _log(self, event, settings):
        if event is levels.CLUSTER_JOINED:
            self.logger.info('Joined cluster %s on %s as %s; heartbeat every %.3g s', settings.name,
                             settings.shown_url, settings.host_name, heartbeat_interval(settings.heartbeat_ttl),
                             extra=event.extra)
        else:
            self.logger.warning('Cannot reach the Redis of cluster %s: %s; serving on, trying again after %.3g s, '
                                'doubling to %.3g s', settings.name, self.link.last_error, self.link.delay,
                                self.connection.BACKOFF_MAX, extra=event.extra)

    def _finish(self):
        """At stop: this member's key goes now rather than when it expires (best effort: a
        Redis that does not answer lets it expire)."""
        settings = self._settings
        if self._written_key is None:
            self._redis.close()
            return  # never registered: nothing to leave
        how = f'its record expires within {settings.heartbeat_ttl:g} s (Redis does not answer)'
        try:
            if self._redis.client is not None:
                self._redis.client.delete(self._written_key)
                how = 'removed its record'
        except self.connection.REDIS_ERRORS:
            pass
        finally:
            self._redis.close()
        self.logger.info('Left cluster %s as %s: %s', settings.name, settings.host_name, how,
                         extra=levels.CLUSTER_LEFT.extra)
