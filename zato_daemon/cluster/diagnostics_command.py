"""What `slow DIR --cluster`, `samples DIR SERVICE --cluster` and `dump DIR --cluster` do once
cli.py has found the directory and the cluster's settings: read every member's records from
Redis, or publish a dump request and wait for every live member's answer. The decisions are
records.py's and dumps.py's; each function raises what redis-py raises.
"""

import json
import time

from zato_daemon.cluster import dumps, records
from zato_daemon.cluster.membership import read_members

POLL = 0.2
SCAN_COUNT = 1000


def read_entries(client, settings, kind, service=None, since=None):
    """Every member's entries of `kind` (records.SLOW or SAMPLES), of one service or all,
    started at `since` epoch seconds or later; unreadable entries left out, in no order."""
    keys = sorted(client.scan_iter(match=records.records_pattern(settings.name, kind, service), count=SCAN_COUNT))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.zrangebyscore(key, '-inf' if since is None else since, '+inf')
    entries = []
    for texts in pipe.execute() if keys else ():
        for text in texts:
            try:
                entries.append(records.parse_entry(text))
            except records.EntryError:
                continue
    return entries


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
        answers = read_answers(client, settings, request_id)
        if set(hosts) <= set(answers) or time.monotonic() >= deadline:
            return hosts, answers
        time.sleep(POLL)


def read_answers(client, settings, request_id):
    answers = {}
    for host, text in client.hgetall(dumps.answers_key(settings.name, request_id)).items():
        try:
            answer = json.loads(text)
        except ValueError:
            continue
        if isinstance(answer, dict):
            answers[host] = answer
    return answers
