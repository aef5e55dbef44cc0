"""Cluster-wide deploy: the master's thread that takes modules published to the cluster, and
the publishing side `zato-daemon deploy` and `undeploy` use. What Redis holds and every
decision are in modules.py; this executes them.

A member never imports what it reads from Redis itself: a record whose signature verifies is
written atomically into the local pickup directory, where the pickup thread checks it in a
disposable process like any file dropped there (deploy/pickup.py), and its outcome (the
manifest, refused.json) is what the member reports. A tombstone removes the pickup file.

The thread, like the heartbeat's (membership.py), has its own Redis client and never holds
up the master's loop. Reconnecting (at start, after Redis was unreachable or restarted) it
reads the whole modules hash and catches up before it follows the stream again.
"""

import json
import time
import uuid

from zato_daemon.cluster import modules
from zato_daemon.cluster.thread import (ClusterThread, raw_hash, raw_reply, stream_entries, stream_position,
                                        utf8_or_none)
from zato_daemon.deploy.manifest import ManifestError, read_manifest, write_atomically
from zato_daemon.deploy.pickup import local_outcome, read_refusals
from zato_daemon.logs import levels
from zato_daemon.services.registry import sha256_of

# How long one XREAD waits for a publication: a stop or a reload is heard within it.
READ_BLOCK = 1.0
# How often outcomes pending in the pickup thread are looked at while no publication arrives.
OUTCOME_POLL = 0.2
# With no key, or hot deploy off, nothing to catch up: the thread only answers publications.
NO_KEY_REASON = 'this member has no usable cluster key ([cluster] key_file); it accepts no cluster deploy'
HOT_DEPLOY_OFF_REASON = 'hot deploy is off on this member ([hot_deploy] in server.conf); nothing reaches its pickup directory'


class Pending:
    """A module written to (or removed from) the pickup directory, waiting for the pickup thread.
    `publications`: every publication waiting for it (a name published twice in a row: the
    first command waits on the version that replaced its own, and hears what became of it)."""

    def __init__(self, publications, name, sha256, deadline):
        self.publications, self.name, self.sha256, self.deadline = publications, name, sha256, deadline


class ClusterDeployer(ClusterThread):
    """The master's thread taking cluster deploys. `key` is the cluster key, or None (the
    member then refuses every publication, saying why); `paths` the ServerPaths (pickup and
    deployed directories); `outcome_wait` how long the pickup thread may take to decide."""

    THREAD_NAME = 'zato-daemon: cluster deploy'

    def __init__(self, settings, key, paths, hot_deploy, outcome_wait, logger):
        super().__init__(logger)
        self._config = (settings, key, paths, hot_deploy, outcome_wait)
        self._last_id = None
        self._pending = {}           # name -> Pending
        self._refused_records = set()  # (name, signature) of records refused and logged already

    # ---- from the master's loop

    def update(self, settings, key, paths, hot_deploy, outcome_wait):
        """At a reload; the next pass reconnects if the cluster changed, and catches up."""
        with self._lock:
            self._config = (settings, key, paths, hot_deploy, outcome_wait)
            self._synced = False

    def join(self, timeout=READ_BLOCK + 2 * 2.0):
        super().join(timeout)

    # ---- the thread

    def _step(self):
        """One pass: connect and catch up if needed, report what the pickup thread decided,
        read the stream for a moment. Returns how long to wait before the next pass."""
        (settings, key, paths, hot_deploy, outcome_wait), must_sync = self._pass_config()
        try:
            client = self._redis.client_for(settings)
            if must_sync:
                # Taken before the hash is read: a publication made meanwhile is seen twice, never missed.
                self._last_id = stream_position(client, modules.stream_key(settings.name))
                if key is not None and hot_deploy:
                    self._catch_up(client, settings, key, paths, outcome_wait)
            self._report_pending(client, settings, paths)
            block = OUTCOME_POLL if self._pending else READ_BLOCK
            answer = raw_reply(client, 'XREAD', 'COUNT', 100, 'BLOCK', int(block * 1000),
                               'STREAMS', modules.stream_key(settings.name), self._last_id)
            for entry_id, fields in stream_entries(answer):
                self._last_id = entry_id
                if fields is not None:
                    self._take(client, settings, key, paths, hot_deploy, outcome_wait, fields)
            self._delay = None
            return 0
        except self.connection.REDIS_ERRORS as exc:
            # A Redis that answers but refuses (a deploys key of another type, written by
            # something else) is said: the heartbeat thread would not, and deploys would stop unsaid.
            return self._redis_lost(exc, settings, 'Cluster deploys', refused='read the cluster deploys')

    def _catch_up(self, client, settings, key, paths, outcome_wait):
        stored = raw_hash(raw_reply(client, 'HGETALL', modules.modules_key(settings.name)))
        records = {}
        for name, text in stored.items():
            record = self._verified(client, settings, key, name, text)
            if record is not None:
                records[name] = record
        local = {}
        for name in records:
            try:
                local[name] = sha256_of((paths.pickup_dir / name).read_bytes())
            except OSError:
                pass
        to_write, to_remove = modules.catch_up(records, local)
        if to_write or to_remove:
            self.logger.info('Catching up with cluster %s: %d module(s) to deploy, %d to remove', settings.name,
                             len(to_write), len(to_remove), extra=levels.CLUSTER_CATCHING_UP.extra)
        for name in to_write + to_remove:
            self._apply(client, settings, paths, outcome_wait, records[name])

    def _take(self, client, settings, key, paths, hot_deploy, outcome_wait, fields):
        """One stream entry: the latest record of its name, checked and applied."""
        name, publication = fields.get('name'), fields.get('publication')
        if not isinstance(name, str) or not modules.is_publication_id(publication):
            return
        if key is None or not hot_deploy:
            self._report(client, settings, publication, modules.REFUSED,
                         NO_KEY_REASON if key is None else HOT_DEPLOY_OFF_REASON)
            return
        raw = raw_reply(client, 'HGET', modules.modules_key(settings.name), name)
        if raw is None:
            return  # gone since (Redis emptied): nothing to deploy
        text = utf8_or_none(raw)
        record = self._verified(client, settings, key, name, text, also=publication)
        if record is not None:
            self._apply(client, settings, paths, outcome_wait, record, also=publication)

    def _verified(self, client, settings, key, name, text, also=None):
        """The record, or None after refusing it: one ERROR per record, and its outcome reported
        (to publication `also` too: the stream entry's, if the hash holds a newer one)."""
        try:
            record = modules.load_record(text, name)
            modules.verify(key, record)
            return record
        except modules.RecordError as exc:
            publication = _field(text, 'publication')
            marker = (name, _field(text, 'signature'))
            if marker not in self._refused_records:
                self._refused_records.add(marker)
                self.logger.error('Refused the module %r published to cluster %s: %s; nothing written',
                                  name, settings.name, exc, extra=levels.CLUSTER_SIGNATURE_REFUSED.extra)
            for target in {publication, also} - {None}:
                if modules.is_publication_id(target):
                    self._report(client, settings, target, modules.SIGNATURE_REFUSED, str(exc))
            return None

    def _apply(self, client, settings, paths, outcome_wait, record, also=None):
        name = record['name']
        publications = {record['publication'], also} - {None}
        path = paths.pickup_dir / name
        try:
            if record['kind'] == modules.MODULE:
                source = record['source'].encode('utf-8')
                try:
                    current = sha256_of(path.read_bytes())
                except FileNotFoundError:
                    current = None
                if current != record['sha256']:
                    paths.pickup_dir.mkdir(parents=True, exist_ok=True)
                    write_atomically(path, source)
                sha256 = record['sha256']
            else:
                path.unlink(missing_ok=True)
                sha256 = None
        except OSError as exc:
            reason = f'cannot write {path}: {exc.strerror or exc}'
            self.logger.error('Refused the module %s published to cluster %s by %s: %s', name, settings.name,
                              record['host'], reason, extra=levels.CLUSTER_DEPLOY_REFUSED.extra)
            for publication in publications:
                self._report(client, settings, publication, modules.REFUSED, reason)
            return
        what = f'sha256 {sha256}' if sha256 else 'undeploy'
        self.logger.info('Took %s (%s) published to cluster %s by %s; the pickup directory checks it', name, what,
                         settings.name, record['host'], extra=levels.CLUSTER_DEPLOY_ACCEPTED.extra)
        previous = self._pending.get(name)
        if previous is not None:
            # Replaced before the pickup thread decided: the earlier publications hear what
            # became of the version that replaced theirs.
            publications |= previous.publications
        self._pending[name] = Pending(publications, name, sha256, time.monotonic() + outcome_wait)

    def _report_pending(self, client, settings, paths):
        if not self._pending:
            return
        try:
            entries = read_manifest(paths.deployed_dir) or {}
        except ManifestError:
            entries = {}
        refusals = read_refusals(paths.deployed_dir)
        now = time.monotonic()
        for name, pending in list(self._pending.items()):
            outcome = local_outcome(entries, refusals, name, pending.sha256)
            if outcome is None and now < pending.deadline:
                continue
            if outcome is None:
                outcome = (modules.REFUSED, 'the pickup directory decided nothing in time (is hot deploy on?)')
            for publication in sorted(pending.publications):
                self._report(client, settings, publication, *outcome)
            del self._pending[name]

    @staticmethod
    def _report(client, settings, publication, outcome, reason=''):
        key = modules.outcome_key(settings.name, publication)
        client.hset(key, settings.host_name, json.dumps({'outcome': outcome, 'reason': reason}))
        client.expire(key, modules.OUTCOME_TTL)


def _field(text, name):
    """A field of what may not be a record at all (for reporting a refusal), or None."""
    try:
        value = json.loads(text).get(name)
    except (TypeError, ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, str) else None


# ---- publishing (zato-daemon deploy / undeploy)

def new_publication():
    return uuid.uuid4().hex


def publish(client, settings, key, kind, name, source, host):
    """Stores the signed record as the latest of its name, then announces it; returns the
    publication id. Raises what redis-py raises."""
    publication = new_publication()
    record = modules.make_record(key, kind, name, source, publication, host, time.time())
    pipe = client.pipeline(transaction=True)
    pipe.hset(modules.modules_key(settings.name), name, modules.dump_record(record))
    pipe.xadd(modules.stream_key(settings.name), {'name': name, 'publication': publication},
              maxlen=modules.STREAM_MAXLEN, approximate=True)
    pipe.execute()
    return publication


def read_outcomes(client, settings, publication):
    """{host: {'outcome', 'reason'}} reported so far for a publication."""
    outcomes = {}
    for host, text in raw_hash(raw_reply(client, 'HGETALL', modules.outcome_key(settings.name, publication))).items():
        try:
            outcome = json.loads(text)
        except (TypeError, ValueError, RecursionError):
            continue
        if isinstance(outcome, dict):
            outcomes[host] = outcome
    return outcomes
