"""`zato-daemon dump DIR --cluster`: a request every member dumps for, and their answers.
Pure: keys, the signed request, what a member accepts, what the command prints; no redis.

Redis holds, per cluster:
- `zato:CLUSTER:dumps`, a stream capped at STREAM_MAXLEN: one entry per request, its fields
  the request itself. Members follow it (XREAD) from the entry that was last when they
  connected: a request made before a member (re)started is never acted on by it.
- `zato:CLUSTER:dump:REQUEST`, a hash: member host name -> its answer (pid, server.log, the
  journalctl command), for the command to read; it expires after ANSWER_TTL.

A request is signed with HMAC-SHA256 under the cluster key (the key of deploys,
modules.read_key) over the cluster's name, the request id and its time: write access to
Redis alone cannot make the hosts dump (a dump costs each process a moment, and fills
server.log). A member acts on a request at most once, and only within MAX_AGE of its time:
a signed request put back on the stream later is ignored.
"""

import hashlib
import hmac
import re
import shlex
import uuid

from zato_daemon.cluster.membership import KEY_PREFIX
from zato_daemon.diagnostics.report import shown

RECORD_VERSION = '1'
STREAM_MAXLEN = 100
# Long enough for any `dump --cluster` to read its answers.
ANSWER_TTL = 3600
# A request older (or, by a clock ahead, newer) than this is ignored: the command waits at
# most a few minutes, and members' clocks are kept in sync (NTP; `cluster` relies on it too).
MAX_AGE = 300.0
# Request ids a member remembers having acted on; a request is never older than MAX_AGE, and
# nobody asks for thousands of dumps in five minutes.
SEEN_MAX = 1000
REQUEST_ID = re.compile(r'[0-9a-f]{32}')
# The journalctl command a member answers with (journal_command), and nothing else: answers are
# not signed, and the operator runs what the command prints on the member's host. A command
# someone wrote into Redis (`journalctl ...; curl ... | sh`) is not printed.
JOURNAL_COMMAND = re.compile(r"journalctl -o cat MESSAGE_ID=[0-9a-f]{32} --since '\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}'")
NOT_A_JOURNAL_COMMAND = '(its journal command is not shown: not one a member writes)'
DUMPED, REFUSED = 'dumped', 'refused'


class RequestError(ValueError):
    """A stream entry that is not a request this member acts on, and why. `request_id`: set
    when the member is to answer that it refused (no key, another key), so that the command
    says why instead of waiting; None for what is not a request, or is one already done."""

    def __init__(self, reason, request_id=None):
        super().__init__(reason)
        self.request_id = request_id


# ---- keys

def stream_key(cluster):
    return f'{KEY_PREFIX}:{cluster}:dumps'


def answers_key(cluster, request_id):
    return f'{KEY_PREFIX}:{cluster}:dump:{request_id}'


# ---- the request

def new_request_id():
    return uuid.uuid4().hex


def signature(key, cluster, request_id, requested_at_ms):
    message = b'\0'.join((b'zato-daemon dump 1', cluster.encode('utf-8'), request_id.encode('ascii'),
                          str(requested_at_ms).encode('ascii')))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def make_request(key, cluster, request_id, host, now):
    """The stream entry's fields (text only, as XADD takes them)."""
    requested_at_ms = int(now * 1000)
    return {'version': RECORD_VERSION, 'request': request_id, 'host': host, 'requested_at_ms': str(requested_at_ms),
            'signature': signature(key, cluster, request_id, requested_at_ms)}


def check_request(key, cluster, fields, now, seen):
    """The request id of a stream entry this member is to dump for; raises RequestError saying
    why not. `seen`: the ids acted on already. Checks the shape first, then the signature (in
    constant time), then the time."""
    if not isinstance(fields, dict) or fields.get('version') != RECORD_VERSION:
        raise RequestError(f'not a dump request of version {RECORD_VERSION}')
    request_id, host = fields.get('request'), fields.get('host')
    if not isinstance(request_id, str) or REQUEST_ID.fullmatch(request_id) is None:
        raise RequestError('its request id is not one')
    # Not signed, and shown in log lines: no control character may forge one.
    if not isinstance(host, str) or not host.isprintable() or len(host) > 255:
        raise RequestError('its requesting host is not a printable name')
    text = fields.get('requested_at_ms')
    # isdigit() alone takes '²', which int() does not.
    if not isinstance(text, str) or not text.isascii() or not text.isdigit() or len(text) > 16:
        raise RequestError('its time is not one')
    if key is None:
        raise RequestError('this member has no usable cluster key ([cluster] key_file) to verify it with',
                           request_id)
    given = fields.get('signature')
    expected = signature(key, cluster, request_id, int(text))
    # compare_digest takes ASCII text only (TypeError otherwise).
    if not isinstance(given, str) or not given.isascii() or not hmac.compare_digest(expected, given):
        raise RequestError("its signature does not verify with this member's cluster key", request_id)
    if abs(now - int(text) / 1000) > MAX_AGE:
        raise RequestError(f'it was made more than {MAX_AGE:g} s from now (an old request put back?)')
    if request_id in seen:
        raise RequestError('this member dumped for it already')
    return request_id


def remember(seen, request_id):
    """Adds an id to `seen` (a dict used as an ordered set), forgetting the oldest past SEEN_MAX."""
    seen[request_id] = True
    while len(seen) > SEEN_MAX:
        del seen[next(iter(seen))]


# ---- the answer

def journal_command(message_id, since):
    """The journalctl command that shows this member's dumps; `since` in the member's local time."""
    return f'journalctl -o cat MESSAGE_ID={message_id} --since {shlex.quote(since)}'


def make_answer(host, pid, server_log, journal, outcome=DUMPED, reason=''):
    return {'host': host, 'outcome': outcome, 'reason': reason, 'pid': pid,
            'server_log': None if server_log is None else str(server_log), 'journal': journal}


def summarize(hosts, answers):
    """(exit status, lines, data) of a request. `hosts`: the live members when it was made;
    `answers`: {host: answer} as read. 0 when every live member dumped; 1 when one did not
    answer in time or refused, or when no member is live. Each text of an answer goes through
    report.shown on its way into a line: anyone who can write Redis can write answers."""
    lines, data = [], {}
    status = 0 if hosts else 1
    for host in sorted(set(hosts) | set(answers)):
        answer = answers.get(host)
        if not isinstance(answer, dict):
            lines.append(f'{shown(host)}  no answer within the time limit')
            data[host] = {'outcome': 'no answer'}
            status = 1
            continue
        data[host] = answer
        if answer.get('outcome') != DUMPED:
            lines.append(f'{shown(host)}  refused: {shown(str(answer.get("reason") or "no reason given"))}')
            status = 1
            continue
        journal = answer.get('journal')
        if not isinstance(journal, str) or JOURNAL_COMMAND.fullmatch(journal) is None:
            journal = NOT_A_JOURNAL_COMMAND
        lines.append(f'{shown(host)}  pid {shown(str(answer.get("pid")))}  '
                     f'{shown(str(answer.get("server_log") or "(no server.log)"))}\n  {journal}')
    if not hosts and not answers:
        lines.append('no member of the cluster is live: nobody dumped')
    return status, lines, data
