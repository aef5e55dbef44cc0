"""Modules deployed to a whole cluster: what a publication is, how it is signed, and what a
member and `zato-daemon deploy` decide from what Redis holds. Pure (but read_key); no redis.

Redis holds, per cluster:
- `zato:CLUSTER:modules`, a hash: pickup file name -> the latest record of that name (a module,
  or a tombstone once undeployed). Durable: a member that was away reads it when it returns.
- `zato:CLUSTER:deploys`, a stream capped at STREAM_MAXLEN: one entry per publication, naming
  the file and the publication, so that members act within about a second. Members read the
  record from the hash, never from the stream: an entry is only a nudge.
- `zato:CLUSTER:deploy:PUBLICATION`, a hash: member host name -> its outcome, for the command
  to read; it expires after OUTCOME_TTL.

A record is signed with HMAC-SHA256 under the cluster key over its kind, name and source: a
member deploys nothing whose signature does not verify with its own copy of the key, so write
access to Redis alone does not let anyone run code (or remove it) on the hosts.
"""

import hashlib
import hmac
import json
import os
import re
import stat

from zato_daemon.cluster.membership import KEY_PREFIX
from zato_daemon.deploy.pickup import is_pickup_file, is_presentable_name
from zato_daemon.errors import ConfigError

RECORD_VERSION = 1
MODULE, TOMBSTONE = 'module', 'tombstone'
STREAM_MAXLEN = 1000
# Long enough for any deploy command to read its outcomes; short enough not to pile up.
OUTCOME_TTL = 86400
KEY_FILE_KEY = '[cluster] key_file'
MIN_KEY_LENGTH = 32
MAX_KEY_FILE = 4096
# Outcomes a member reports.
DEPLOYED, UNDEPLOYED, REFUSED, SIGNATURE_REFUSED = 'deployed', 'undeployed', 'refused', 'signature refused'
SUCCESSES = frozenset((DEPLOYED, UNDEPLOYED))


PUBLICATION_ID = re.compile(r'[0-9a-f]{32}')


class RecordError(ValueError):
    """A record that cannot be used: not one, or its signature or hash does not verify."""


def is_publication_id(value):
    return isinstance(value, str) and PUBLICATION_ID.fullmatch(value) is not None


def module_name_problem(name):
    """Why `name` cannot be a module deployed to the cluster (it becomes a file name in every
    member's pickup directory), or None."""
    if '/' in name or '\0' in name or not is_pickup_file(name):
        return (f'{name!r} is not a pickup file name: a .py file name without a directory, not starting '
                'with . or _')
    if not is_presentable_name(name):
        return f'{name!r} is not printable UTF-8'
    return None


# ---- keys

def modules_key(cluster):
    return f'{KEY_PREFIX}:{cluster}:modules'


def stream_key(cluster):
    return f'{KEY_PREFIX}:{cluster}:deploys'


def outcome_key(cluster, publication):
    return f'{KEY_PREFIX}:{cluster}:deploy:{publication}'


# ---- the key file

def read_key(path):
    """The cluster key a file holds (its first line, as bytes); raises ConfigError when the file
    is missing, unreadable, writable by group or others (anyone who may write it may sign), or
    too short. The key itself is never part of a message."""
    try:
        with open(path, 'rb') as stream:
            mode = os.fstat(stream.fileno()).st_mode
            data = stream.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise ConfigError(f'cannot read the cluster key file {path}: {exc.strerror}', key=KEY_FILE_KEY) from None
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(f'the cluster key file {path} is writable by its group or by others (mode '
                          f'{stat.S_IMODE(mode):04o}): make it 0640 root:zato', key=KEY_FILE_KEY)
    if len(data) > MAX_KEY_FILE:
        raise ConfigError(f'{path} is over {MAX_KEY_FILE} bytes: it should hold one line, the key', key=KEY_FILE_KEY)
    lines = data.splitlines()
    key = lines[0].strip() if lines else b''
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f'the cluster key in {path} is shorter than {MIN_KEY_LENGTH} bytes: make one with '
                          f'head -c 32 /dev/urandom | base64 > {path}', key=KEY_FILE_KEY)
    return key


# ---- records

def sha256_text(source):
    return hashlib.sha256(source.encode('utf-8')).hexdigest()


def signature(key, kind, name, source):
    """HMAC-SHA256 over kind, name and source, NUL-separated (neither a kind nor a file name
    holds a NUL, so no two triples give one message)."""
    message = b'\0'.join((b'zato-daemon deploy 1', kind.encode(), name.encode('utf-8'), source.encode('utf-8')))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def make_record(key, kind, name, source, publication, host, now):
    """A signed record; `source` is '' for a tombstone."""
    return {'record_version': RECORD_VERSION, 'kind': kind, 'name': name, 'source': source,
            'sha256': sha256_text(source), 'signature': signature(key, kind, name, source),
            'publication': publication, 'host': host, 'published_at': now}


def dump_record(record):
    return json.dumps(record, sort_keys=True)


def load_record(text, expected_name):
    """The record a hash field holds, checked for shape and for the field it was stored under;
    raises RecordError saying what is wrong."""
    if text is None:
        raise RecordError('not UTF-8 text')
    try:
        record = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        raise RecordError('not JSON') from None
    if not isinstance(record, dict) or record.get('record_version') != RECORD_VERSION:
        raise RecordError(f'not a record of version {RECORD_VERSION}')
    for field in ('kind', 'name', 'source', 'sha256', 'signature', 'publication', 'host'):
        if not isinstance(record.get(field), str):
            raise RecordError(f'no {field}')
    if record['kind'] not in (MODULE, TOMBSTONE):
        raise RecordError(f'unknown kind {record["kind"]!r}')
    if record['name'] != expected_name:
        raise RecordError(f'stored under {expected_name!r} but names {record["name"]!r}')
    problem = module_name_problem(record['name'])
    if problem is not None:
        raise RecordError(problem)
    if not is_publication_id(record['publication']):
        raise RecordError('its publication id is not one')
    # Not signed, and shown in log lines: no control character may forge one.
    if not record['host'].isprintable() or len(record['host']) > 255:
        raise RecordError('its publishing host is not a printable name')
    return record


def verify(key, record):
    """Raises RecordError unless the record's signature verifies with `key` and its sha256 is
    its source's. Compared in constant time: a forger learns nothing from how long it took."""
    expected = signature(key, record['kind'], record['name'], record['source'])
    # compare_digest raises TypeError on non-ASCII text: a forged record holding some stopped
    # the deploy thread's catch-up at every pass instead of being refused.
    if not record['signature'].isascii() or not hmac.compare_digest(expected, record['signature']):
        raise RecordError('its signature does not verify with this member\'s cluster key')
    if record['sha256'] != sha256_text(record['source']):
        raise RecordError('its sha256 is not that of its source')


# ---- what a member does

def catch_up(records, local):
    """What a member writes and removes to match the cluster. `records`: {name: record} of the
    verified records; `local`: {name: sha256} of the pickup files it has. Returns
    (to_write, to_remove), lists of names. A name the cluster does not hold is left alone
    (a local file, or Redis emptied by a restart: members keep serving what they have)."""
    to_write, to_remove = [], []
    for name, record in sorted(records.items()):
        if record['kind'] == MODULE and local.get(name) != record['sha256']:
            to_write.append(name)
        elif record['kind'] == TOMBSTONE and name in local:
            to_remove.append(name)
    return to_write, to_remove


# ---- what `zato-daemon deploy` decides

def summarize(hosts, outcomes):
    """(exit status, lines) for one publication. `hosts`: the live members' host names;
    `outcomes`: {host: {'outcome': ..., 'reason': ...}} as reported. 0 when every live member
    reports success, 1 otherwise (a member that reported nothing: 'no outcome')."""
    lines, status = [], 0
    for host in sorted(set(hosts) | set(outcomes)):
        outcome = outcomes.get(host)
        if outcome is None:
            lines.append((host, 'no outcome', 'nothing reported within the time limit'))
            status = 1
            continue
        lines.append((host, outcome.get('outcome', '?'), outcome.get('reason') or ''))
        if outcome.get('outcome') not in SUCCESSES:
            status = 1
    return status, lines


def is_complete(hosts, outcomes):
    """Whether every live member reported."""
    return set(hosts) <= set(outcomes)
