"""What `zato-daemon deploy` and `undeploy` do once the command line is read: publish to the
cluster and wait for every live member's outcome, or, for a single host, put the file in the
local pickup directory and wait for the pickup thread's. cli.py finds the directory and the
configuration, and prints; the decisions are modules.py's.
"""

import time
from dataclasses import dataclass, field

from zato_daemon.cluster import modules
from zato_daemon.deploy.manifest import ManifestError, read_manifest, write_atomically
from zato_daemon.deploy.pickup import local_outcome, read_refusals
from zato_daemon.errors import UsageError
from zato_daemon.services.registry import sha256_of

POLL = 0.2


@dataclass
class Item:
    """One module to deploy (source) or undeploy (source None), by pickup file name."""

    name: str
    source: str = None
    # {host: {'outcome', 'reason'}}, filled in as they arrive.
    outcomes: dict = field(default_factory=dict)
    publication: str = None

    @property
    def kind(self):
        return modules.MODULE if self.source is not None else modules.TOMBSTONE


def read_item(path):
    """A module to deploy from a local file; UsageError (64) for one that cannot be read, is
    not UTF-8 text, or is not named as a pickup file."""
    from pathlib import Path
    path = Path(path)
    problem = modules.module_name_problem(path.name)
    if problem is not None:
        raise UsageError(f'{path}: {problem}')
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f'{path}: {exc.strerror}') from None
    try:
        return Item(path.name, data.decode('utf-8'))
    except UnicodeDecodeError:
        raise UsageError(f'{path}: not UTF-8 text') from None


def undeploy_item(name):
    problem = modules.module_name_problem(name)
    if problem is not None:
        raise UsageError(problem)
    return Item(name)


def to_cluster(client, settings, key, items, timeout):
    """Publishes every item, then reads outcomes until every live member reported on each, or
    `timeout`. Returns the live members' host names. Raises what redis-py raises."""
    from zato_daemon.cluster.deploy import publish, read_outcomes
    from zato_daemon.cluster.membership import read_members
    hosts = [member['host_name'] for member in read_members(client, settings.name)]
    for item in items:
        item.publication = publish(client, settings, key, item.kind, item.name, item.source or '',
                                   settings.host_name)
    deadline = time.monotonic() + timeout
    while True:
        for item in items:
            item.outcomes = read_outcomes(client, settings, item.publication)
        if all(modules.is_complete(hosts, item.outcomes) for item in items) or time.monotonic() >= deadline:
            return hosts
        time.sleep(POLL)


def to_pickup(paths, host, items, timeout):
    """Writes (or removes) each item in the local pickup directory, atomically, then waits for
    the pickup thread's outcome of each, at most `timeout`. Raises OSError."""
    paths.pickup_dir.mkdir(parents=True, exist_ok=True)
    for item in items:
        target = paths.pickup_dir / item.name
        if item.source is not None:
            write_atomically(target, item.source.encode('utf-8'))
        else:
            target.unlink(missing_ok=True)
    wanted = {item.name: sha256_of(item.source.encode('utf-8')) if item.source is not None else None
              for item in items}
    deadline = time.monotonic() + timeout
    while True:
        try:
            entries = read_manifest(paths.deployed_dir) or {}
        except ManifestError:
            entries = {}
        refusals = read_refusals(paths.deployed_dir)
        for item in items:
            outcome = local_outcome(entries, refusals, item.name, wanted[item.name])
            item.outcomes = {} if outcome is None else {host: {'outcome': outcome[0], 'reason': outcome[1]}}
        if all(item.outcomes for item in items) or time.monotonic() >= deadline:
            return [host]
        time.sleep(POLL)


def report(hosts, items):
    """(exit status, text lines, JSON) of a deploy: 0 when every live member deployed every item."""
    status = 0 if hosts else 1
    lines, data = [], {}
    if not hosts:
        lines.append('no live member now: stored in the cluster, members deploy it when they join')
    for item in items:
        item_status, rows = modules.summarize(hosts, item.outcomes)
        status = max(status, item_status)
        data[item.name] = {'publication': item.publication, 'kind': item.kind,
                           'hosts': {host: {'outcome': outcome, 'reason': reason} for host, outcome, reason in rows}}
        width = max((len(host) for host, _, _ in rows), default=0)
        for host, outcome, reason in rows:
            lines.append(f'{item.name}  {host:<{width}}  {outcome}' + (f': {reason}' if reason else ''))
    return status, lines, {'ok': status == 0, 'hosts': hosts, 'modules': data}
