"""Slow calls and samples shipped to the cluster's Redis, so that `slow DIR --cluster` and
`samples DIR SERVICE --cluster` show every member's. Pure: keys, caps, the shape of an entry,
what a reader keeps; no redis, no file.

Redis holds, per cluster, member and service, a sorted set of entries scored by the call's
start time:
- `zato:CLUSTER:slow:HOST:SERVICE`, the newest SLOW_CAP slow calls;
- `zato:CLUSTER:samples:HOST:SERVICE`, the newest SAMPLES_CAP samples.
A sorted set rather than a list: an entry is its JSON text, so a row shipped twice (the
master restarted and shipped its database again) is one entry, and the cap keeps the newest
by start time whatever order they were shipped in. Each key expires ENTRY_TTL after its last
write: a member that left the cluster does not keep its records there for ever. HOST holds no
':' (config/validators.cluster_name), so HOST and SERVICE never run into each other.

An entry is redacted before it leaves the host, with the policy `slow` and `samples` print
with (the rows were redacted when stored; an older version's rows, or a secret name added
to [logging] secret_names since, are covered again), and its texts are capped.
"""

import json
import math
from datetime import datetime, timezone

from zato_daemon.cluster.membership import KEY_PREFIX
from zato_daemon.diagnostics.report import redacted_rows, shown
from zato_daemon.diagnostics.store import ROW_KEYS, SAMPLES_KEEP, SAMPLES_TABLE, SLOW_KEEP, SLOW_TABLE

SLOW, SAMPLES = 'slow', 'samples'
# What each kind is called in the store.
TABLES = {SLOW: SLOW_TABLE, SAMPLES: SAMPLES_TABLE}
# Per member and service: as many as a server keeps by default ([diagnostics] slow_keep,
# samples_keep), whatever one member keeps, so that one member cannot fill Redis.
CAPS = {SLOW: SLOW_KEEP, SAMPLES: SAMPLES_KEEP}
# A week after its last write: a weekend's incident is still there on Monday; a member
# gone for good is gone from Redis a week later.
ENTRY_TTL = 7 * 86400
# Each text of an entry (request, response, error) at most this long: the store caps a
# payload at 4096 characters, an older version's rows at 64 KiB; Redis holds at most
# CAP entries of three such texts per member and service.
MAX_TEXT_CHARS = 4096
# The key order of an entry and of `--json`: the store's, and the member's host name.
ENTRY_KEYS = ('host', *ROW_KEYS)
TEXT_KEYS = ('request', 'response', 'error')
# Glob characters of a SCAN pattern, escaped where a service name is part of one.
GLOB_CHARACTERS = '\\*?[]'


# What each other key of an entry holds when it is not null: a table formats them as such.
FIELD_TYPES = {'worker': (int,), 'duration_ms': (int, float), 'status': (int,),
               'request': (str,), 'response': (str,), 'error': (str,)}
class EntryError(ValueError):
    """What Redis holds under a records key is not an entry."""


# ---- keys

def records_key(cluster, kind, host, service):
    return f'{KEY_PREFIX}:{cluster}:{kind}:{host}:{service}'


def records_pattern(cluster, kind, service=None):
    """The keys of every member's records of `kind` (of one service), for SCAN."""
    tail = '*' if service is None else f'*:{escape_glob(service)}'
    return f'{KEY_PREFIX}:{cluster}:{kind}:{tail}'


def escape_glob(text):
    return ''.join(f'\\{char}' if char in GLOB_CHARACTERS else char for char in text)


# ---- shipping

def entry_of(row, host):
    """The entry of a stored row (a dict with ROW_KEYS; an 'id' is left out), redacted and capped."""
    [row] = redacted_rows([{key: row.get(key) for key in ROW_KEYS}])
    entry = {'host': host, **row}
    for key in TEXT_KEYS:
        entry[key] = cap(entry[key])
    return entry


def cap(text):
    if not isinstance(text, str) or len(text) <= MAX_TEXT_CHARS:
        return text
    return f'{text[:MAX_TEXT_CHARS]}... ({len(text) - MAX_TEXT_CHARS} more characters)'


def dump_entry(entry):
    """An entry as the member of a sorted set: the same row always gives the same text."""
    return json.dumps(entry, sort_keys=True, ensure_ascii=False)


def score_of(entry):
    """The sorted set's score of an entry: the call's start, epoch seconds."""
    return iso_epoch(entry['started_at'])


def iso_epoch(text):
    """Epoch seconds of the store's ISO 8601 time ('2026-01-31T08:00:00.123Z')."""
    moment = datetime.fromisoformat(text.replace('Z', '+00:00'))
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def batches(rows_by_kind, cluster, host, budget=math.inf):
    """({key: [(entry text, score), ...]}, {kind: rows taken}) for the rows read from the
    store, by kind, oldest first: the rows whose entries fit in `budget` characters, and the
    first one whatever its size. What is not taken is read again at the next pass."""
    grouped, taken, used = {}, {}, 0
    for kind, rows in rows_by_kind.items():
        taken[kind] = []
        for row in rows:
            entry = entry_of(row, host)
            text = dump_entry(entry)
            if used and used + len(text) > budget:
                break
            used += len(text)
            taken[kind].append(row)
            grouped.setdefault(records_key(cluster, kind, host, entry['service']), []).append(
                (text, score_of(entry)))
    return grouped, taken


def cap_of_key(cluster, key):
    """The cap of a records key of `cluster` (SLOW_CAP or SAMPLES_CAP by its kind)."""
    kind = key[len(f'{KEY_PREFIX}:{cluster}:'):].split(':', 1)[0]
    return CAPS[kind]


class Cursor:
    """Where the shipping thread is in the store: the last row id shipped, by table, for the
    file it read (its device and inode). A file replaced (recreated, moved aside) or whose
    highest id is below the cursor starts again from its first row. Pure."""

    def __init__(self):
        self.file = None
        self.after = {SLOW: 0, SAMPLES: 0}

    def start_for(self, file_identity):
        """Before reading: the file being read now; a new file is read from its start."""
        if file_identity != self.file:
            self.file = file_identity
            self.after = {SLOW: 0, SAMPLES: 0}

    def restarts(self, kind, highest_id):
        """After reading from the cursor: True when the table's highest id is below it (the
        file was emptied or recreated in place), and the cursor is back at its first row."""
        if highest_id < self.after[kind]:
            self.after[kind] = 0
            return True
        return False

    def shipped(self, kind, rows):
        """After the rows read were written to Redis."""
        if rows:
            self.after[kind] = max(self.after[kind], max(row['id'] for row in rows))


# ---- reading (`slow --cluster`, `samples --cluster`)

def parse_entry(text):
    """An entry from Redis, with ENTRY_KEYS in that order; raises EntryError when it is not one
    (another version's, or garbage someone wrote)."""
    try:
        entry = json.loads(text)
    # RecursionError: arrays nested thousands deep (json has no depth limit of its own).
    except (TypeError, ValueError, RecursionError):
        raise EntryError('not JSON') from None
    if not isinstance(entry, dict):
        raise EntryError('not an object')
    for key in ('host', 'service', 'cid', 'started_at'):
        if not isinstance(entry.get(key), str):
            raise EntryError(f'no {key}')
    try:
        iso_epoch(entry['started_at'])
    except (ValueError, OverflowError):
        raise EntryError('started_at is not an ISO 8601 time') from None
    for key, kinds in FIELD_TYPES.items():
        value = entry.get(key)
        # bool is an int to isinstance; NaN and infinities are not JSON that --json may print.
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool) or
                                  (isinstance(value, float) and not math.isfinite(value))):
            raise EntryError(f'its {key} is not a {kinds[-1].__name__}')
    return {key: shown(entry.get(key)) for key in ENTRY_KEYS}


def merge(entries, per_host, service=None, since=None):
    """What `--cluster` prints: the entries (of `service`, started at `since` epoch seconds or
    later) that are unique by host, cid and start, the newest `per_host` of each member,
    newest first. The store lists its newest rows the same way, one member's."""
    unique = {}
    for entry in entries:
        if service is not None and entry['service'] != service:
            continue
        if since is not None and iso_epoch(entry['started_at']) < since:
            continue
        unique.setdefault((entry['host'], entry['cid'], entry['started_at']), entry)
    ordered = sorted(unique.values(), key=lambda entry: (-iso_epoch(entry['started_at']), entry['host'], entry['cid']))
    kept, counts = [], {}
    for entry in ordered:
        counts[entry['host']] = counts.get(entry['host'], 0) + 1
        if counts[entry['host']] <= per_host:
            kept.append(entry)
    return kept
