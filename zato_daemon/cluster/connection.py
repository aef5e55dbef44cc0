"""The Redis client of a member, and the back-off between attempts to reach it.

The only module that imports redis-py, and only the master (and `zato-daemon cluster`) import
it, when [cluster] redis_url is set: a single-host server never loads it, and a worker's
request path never touches it. redis-py's own sockets, with a time limit on connecting and on
every reply, so that no call waits on a Redis that stopped answering for longer than TIMEOUT.
"""

# Imported before redis, in the master's main thread (arbiter.follow_cluster imports this module
# before it starts a thread): redis-py 5 imports `secrets` lazily when it makes a client, and a
# worker forked while a thread of the master held that module's import lock hung for ever on
# its own first `import secrets`.
import secrets  # noqa: F401

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from zato_daemon import redaction
from zato_daemon.cluster.urls import shown_url

# Seconds to connect, and to wait for any one reply: Redis answers in microseconds, or is
# unreachable.
TIMEOUT = 2.0

# Between two attempts to reach an unreachable Redis: 1 s, doubling to 30 s.
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0

# What a Redis that cannot be used raises: down, refusing, timing out, a wrong password,
# a protocol error (a port that is not Redis).
REDIS_ERRORS = (redis.RedisError, OSError)
# Redis answered, refusing the command (a key of another type, out of memory), as opposed to
# not answering.
RESPONSE_ERROR = redis.ResponseError


def connect(settings, timeout=TIMEOUT):
    """A client of the cluster's Redis (it connects on its first command, not here); `timeout`
    bounds connecting and every reply."""
    # No retries inside redis-py (newer versions retry three times by default): one attempt
    # takes at most TIMEOUT, and the caller's back-off decides when to try again.
    options = {'socket_timeout': timeout, 'decode_responses': True, 'client_name': 'zato-daemon',
               'retry': Retry(NoBackoff(), 0)}
    if not settings.url.lower().startswith('unix:'):
        # redis-py 4.3 (Debian 12) takes no connect timeout for Unix sockets; connecting to
        # one fails or succeeds at once.
        options['socket_connect_timeout'] = timeout
    if settings.password is not None:
        options['password'] = settings.password
    return redis.Redis.from_url(settings.url, **options)


def next_delay(previous):
    """The wait before the next attempt, after waiting `previous` (None: the first failure)."""
    if previous is None:
        return BACKOFF_FIRST
    return min(previous * 2, BACKOFF_MAX)


def describe_error(exc, settings):
    """One line on why Redis cannot be used, naming the URL as shown (credentials redacted).
    redis-py's messages name host and port, never the password; redacted all the same."""
    text = ' '.join(str(exc).split()) or type(exc).__name__
    return redaction.redact_text(f'{shown_url(settings.url)}: {type(exc).__name__}: {text}')


class ClientHolder:
    """One thread's client, made on first use and made again when the settings change (a
    reload moved the cluster). The membership and deploy threads each hold one."""

    def __init__(self):
        self.client = None
        self.settings = None

    def client_for(self, settings):
        if self.client is not None and self.settings != settings:
            self.close()
        if self.client is None:
            self.client = connect(settings)
            self.settings = settings
        return self.client

    def close(self):
        if self.client is not None:
            try:
                self.client.close()
            except REDIS_ERRORS:
                pass
            self.client = None
