"""What `slow DIR --cluster`, `samples DIR SERVICE --cluster` and `dump DIR --cluster` do once
cli.py has found the directory and the cluster's settings: read every member's records from
Redis, or publish a dump request and wait for every live member's answer. The decisions are
records.py's and dumps.py's; each function raises what redis-py raises.
"""

import json
import time

from zato_daemon.cluster import dumps, records
from zato_daemon.cluster.membership import read_members
from zato_daemon.cluster.thread import raw_replies, raw_reply

POLL = 0.2
SCAN_COUNT = 1000
# Keys read at most by `slow --cluster` or `samples --cluster`: a member writes one per service
# and kind, so this is ten thousand services across the cluster.
MAX_KEYS = 10_000
# Keys read per round trip: what is held at once before merging stays a few MB, whatever
# entries someone wrote (at most CAPS[kind] entries of MAX_ENTRY_BYTES per key).
KEYS_PER_READ = 10
# Rows kept at most, the newest: a Redis holding entries of thousands of made-up hosts does not
# make the command hold (or print) millions.
MAX_ROWS = 5000
# An entry is at most three texts of 4096 characters (records.MAX_TEXT_CHARS), JSON-escaped:
# anything longer was not written by a member.
MAX_ENTRY_BYTES = 128 * 1024
# Answers to a dump request read at most: one per member.
MAX_ANSWERS = 1000


def read_entries(client, settings, kind, service=None, since=None, notes=None):
    """Every member's newest entries of `kind` (records.SLOW or SAMPLES), of one service or
    all, started at `since` epoch seconds or later: what records.merge keeps of them, in no
    particular order. Whatever else Redis holds is left out: a key of another type, an entry
    that is not one, not UTF-8, or longer than MAX_ENTRY_BYTES.

    Bounded whatever Redis holds (someone with write access can write millions of entries):
    at most the newest CAPS[kind] entries of each key, of at most MAX_KEYS keys, read
    KEYS_PER_READ keys at a time and merged as they come, so that what is held at once is a
    few thousand entries; at most MAX_ROWS are kept, the newest. An entry must name the host
    and service of its key. `notes`: a list, given a line for the operator when keys or rows
    were left out."""
    per_key = records.CAPS[kind]
    low = '-inf' if since is None else repr(float(since))
    prefix = f'{records.KEY_PREFIX}:{settings.name}:{kind}:'.encode('utf-8')
    kept, chunk, count, dropped = [], [], 0, False
    for key in _matching_keys(client, records.records_pattern(settings.name, kind, service)):
        if count == MAX_KEYS:
            if notes is not None:
                notes.append(f'more than {MAX_KEYS} keys hold {kind} records of cluster {settings.name}: '
                             f'only {MAX_KEYS} were read')
            break
        count += 1
        chunk.append(key)
        if len(chunk) == KEYS_PER_READ:
            kept, dropped = _merged_with(kept, _read_keys(client, prefix, chunk, low, per_key), per_key, service,
                                         since, dropped)
            chunk = []
    if chunk:
        kept, dropped = _merged_with(kept, _read_keys(client, prefix, chunk, low, per_key), per_key, service, since,
                                     dropped)
    if dropped and notes is not None:
        notes.append(f'more than {MAX_ROWS} {kind} records in cluster {settings.name}: only the newest {MAX_ROWS} '
                     'are listed')
    return kept


def _matching_keys(client, pattern):
    """The keys matching `pattern`, as bytes (a key name need not be UTF-8), each once."""
    cursor, seen = b'0', set()
    while True:
        cursor, keys = raw_reply(client, 'SCAN', cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT)
        for key in keys:
            if key not in seen:
                seen.add(key)
                yield key
        if cursor == b'0':
            return


def _read_keys(client, prefix, keys, low, per_key):
    entries = []
    commands = [('ZREVRANGEBYSCORE', key, '+inf', low, 'LIMIT', 0, per_key) for key in keys]
    for key, texts in zip(keys, raw_replies(client, commands)):
        if isinstance(texts, Exception):
            continue
        try:
            host, service = key[len(prefix):].decode('utf-8').split(':', 1)
        except ValueError:
            continue
        for text in texts:
            if len(text) > MAX_ENTRY_BYTES:
                continue
            try:
                entry = records.parse_entry(text.decode('utf-8'))
            except (UnicodeDecodeError, records.EntryError):
                continue
            if entry['host'] == records.shown(host) and entry['service'] == records.shown(service):
                entries.append(entry)
    return entries


def _merged_with(kept, entries, per_key, service, since, dropped):
    """(the newest MAX_ROWS that records.merge keeps of both, whether any were dropped so far)."""
    merged = records.merge([*kept, *entries], per_key, service, since)
    return merged[:MAX_ROWS], dropped or len(merged) > MAX_ROWS


def request_dump(client, settings, key, timeout):
    """Publishes a signed dump request, then reads answers until every live member answered,
    or `timeout`. Returns (the live members' host names, {host: answer})."""
    hosts = [member['host_name'] for member in read_members(client, settings.name)]
    request_id = dumps.new_request_id()
    client.xadd(dumps.stream_key(settings.name),
                dumps.make_request(key, settings.name, request_id, settings.host_name, time.time()),
                maxlen=dumps.STREAM_MAXLEN, approximate=True)
    deadline = time.monotonic() + timeout
    while True:
        answers = read_answers(client, settings, request_id, hosts)
        if set(hosts) <= set(answers) or time.monotonic() >= deadline:
            return hosts, answers
        time.sleep(POLL)


def read_answers(client, settings, request_id, hosts=()):
    """{host: answer} of a request; a field or answer that is not UTF-8 JSON of an object is left
    out. A hash of more than MAX_ANSWERS fields (someone wrote it: the request id is a secret
    only until the request is on the stream) is read for the live `hosts` alone."""
    key = dumps.answers_key(settings.name, request_id)
    if raw_reply(client, 'HLEN', key) <= MAX_ANSWERS:
        reply = raw_reply(client, 'HGETALL', key)
        # RESP3 (redis-py 5 and later) answers a map; RESP2 (4.3) a flat list of names and values.
        pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2])
    else:
        hosts = sorted(hosts)
        pairs = zip((host.encode('utf-8') for host in hosts), raw_reply(client, 'HMGET', key, *hosts) if hosts else ())
    answers = {}
    for host, text in pairs:
        if text is None or len(text) > MAX_ENTRY_BYTES:
            continue
        try:
            answer = json.loads(text.decode('utf-8'))
            host = host.decode('utf-8')
        # RecursionError: arrays nested thousands deep.
        except (ValueError, RecursionError):
            continue
        if isinstance(answer, dict):
            answers[host] = answer
    return answers
