"""The life of a master thread that talks to the cluster's Redis: start, a loop of steps, stop.

Each cluster thread (membership.py's heartbeat, deploy.py's deploy reader, and any later one)
is one of these with its own `_step()`; the master's loop only starts, wakes and stops them
and never waits on Redis. A step that raises something unforeseen is logged with its
traceback and tried again after the longest back-off, so a bug never ends a thread silently
(a member vanishing from its cluster, or deploys no longer taken, with nothing in the log).
"""

import os
import threading
import time

from zato_daemon.logs import levels
from zato_daemon.logs.throttle import Throttles

# A refusal of Redis is said at most this often per kind of command, with the count.
REFUSAL_REPORT_INTERVAL = 60.0


class ClusterThread:
    """Subclasses give `THREAD_NAME` and `_step()`, which returns how long to wait before
    the next step (0: at once); `_finish()` runs in the thread on its way out."""

    THREAD_NAME = 'zato-daemon: cluster'

    def __init__(self, logger):
        # Imported here: a server without a cluster never imports redis (connection.py does).
        from zato_daemon.cluster import connection
        self.connection = connection
        self.logger = logger
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._thread = None
        self._redis = connection.ClientHolder()
        self._redis_refusals = Throttles(REFUSAL_REPORT_INTERVAL)  # one per kind of command
        self._synced = False         # False: the next pass (re)connects and catches up
        self._delay = None           # the back-off while Redis does not answer

    # ---- from the master's loop

    def start(self):
        """Starts the thread; raises RuntimeError when no thread can be started."""
        self._thread = threading.Thread(target=self._run, name=self.THREAD_NAME, daemon=True)
        self._thread.start()
        return self

    def wake(self):
        """Ends the current wait: the next step runs now (a reload changed the settings)."""
        self._wake.set()

    def stop(self):
        """Tells the thread to stop after its current step; returns at once."""
        self._stopped.set()
        self._wake.set()

    def join(self, timeout):
        """At the master's exit: waits for the thread's end, at most `timeout`."""
        if self._thread is not None:
            self._thread.join(timeout)

    def close_in_child(self):
        """In a process forked from the master: the inherited connection is the parent's."""
        close_in_child(self._redis.client)

    # ---- the thread

    def _run(self):
        try:
            while not self._stopped.is_set():
                try:
                    wait = self._step()
                except Exception:
                    self.logger.exception('Unexpected error in the thread %r; trying again in %.3g s',
                                          self.THREAD_NAME, self.connection.BACKOFF_MAX)
                    self._redis.close()
                    wait = self.connection.BACKOFF_MAX
                if wait:
                    # A stop is seen after the clear, since stop() sets _stopped first.
                    self._wake.wait(wait)
                    self._wake.clear()
        finally:
            self._finish()

    def _step(self):
        raise NotImplementedError

    def _pass_config(self):
        """(the settings of this pass, whether it must catch up first): once after a start, a
        reload (update() clears _synced) or a Redis that did not answer."""
        with self._lock:
            must_sync = not self._synced
            self._synced = True
            return self._config, must_sync

    def _redis_lost(self, exc, settings, waiting, refused=None):
        """A pass Redis did not answer: the connection closed, the next pass catches up, after
        a growing delay (returned). The heartbeat thread says that Redis cannot be reached
        (CLUSTER_UNREACHABLE), so this is a debug line; with `refused` (what the pass did), a
        Redis that answers but refuses is said as _refused does."""
        if refused is not None and isinstance(exc, self.connection.RESPONSE_ERROR):
            self._refused(refused, exc, settings)
        else:
            self.logger.debug('%s wait for Redis: %s', waiting, self.connection.describe_error(exc, settings))
        self._redis.close()
        with self._lock:
            self._synced = False
        self._delay = self.connection.next_delay(self._delay)
        return self._delay

    def _refused(self, what, exc, settings):
        """Redis answered but refused a command (out of memory with noeviction, a read-only
        replica, one of our keys holding another type): said at most once a minute per kind of
        command, with the count. Not a Redis that is down: the caller keeps the connection."""
        count = self._redis_refusals.occurred(what, time.monotonic())
        if count:
            # redis-py quotes a pipeline's command (an entry's text) before the error: left out.
            reason = str(exc).rpartition(' of pipeline caused error: ')[2]
            self.logger.warning('The Redis of cluster %s refused to %s: %s%s', settings.name, what,
                                self.connection.describe_error(type(exc)(reason), settings),
                                f' ({count} times since the last report)' if count > 1 else '',
                                extra=levels.CLUSTER_REDIS_REFUSED.extra)

    def _finish(self):
        self._redis.close()


def raw_replies(client, commands):
    """The replies to `commands` (each a tuple of a command's words), sent together on one of
    the client's connections, as Redis sent them: bytes never decoded, no redis-py callback.
    For what anyone with write access to Redis may have written: the client decodes every
    reply as UTF-8 and raises UnicodeDecodeError on the first byte that is not, which would
    keep a reader on the same entry for ever. An error reply (a key of another type) is its
    ResponseError in the list, in place of that reply; an error of the connection raises."""
    refused = response_error()
    pool = client.connection_pool
    connection = _connection_of(pool)
    try:
        connection.send_packed_command(connection.pack_commands(commands))
        replies = []
        for _ in commands:
            try:
                replies.append(connection.read_response(disable_decoding=True))
            except refused as exc:
                replies.append(exc)
        return replies
    except BaseException:
        # A reply half read leaves the connection out of step with Redis.
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


def utf8_or_none(value):
    """Text from bytes Redis holds, or None when they are not UTF-8 (or there is no value)."""
    try:
        return value.decode('utf-8')
    except (AttributeError, UnicodeDecodeError):
        return None


def decoded_fields(raw):
    """A stream entry's fields as Redis holds them ([name, value, ...], bytes) as text, or None
    when they are not UTF-8 text: anyone who can write Redis can add entries, and a reader must
    go past theirs, not stop at them."""
    texts = [utf8_or_none(item) for item in raw]
    return None if None in texts else dict(zip(texts[::2], texts[1::2]))


def stream_entries(answer):
    """(entry id, decoded_fields or None) of an XREAD answer read raw: RESP3 (redis-py 5 and
    later) answers a map of streams, RESP2 (4.3) a list of pairs."""
    for _, entries in (answer.items() if isinstance(answer, dict) else answer or ()):
        for entry_id, fields in entries:
            yield entry_id.decode('ascii'), decoded_fields(fields)


def stream_position(client, key):
    """The id of the last entry of stream `key` ('0-0' when there is none), read raw. Raises
    ResponseError when the key holds another type."""
    latest = raw_reply(client, 'XREVRANGE', key, '+', '-', 'COUNT', 1)
    return latest[0][0].decode('ascii') if latest else '0-0'


def raw_hash(reply):
    """{field: value} of an HGETALL read raw, as text; a field or value that is not UTF-8 is left
    out (a record's refusal needs its name, and such a name is no pickup file name anyway)."""
    pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2])
    texts = ((utf8_or_none(field), utf8_or_none(value)) for field, value in pairs)
    return {field: value for field, value in texts if field is not None and value is not None}


def raw_reply(client, *command):
    """The reply to one command as raw_replies gives it; its error reply raises."""
    [reply] = raw_replies(client, [command])
    if isinstance(reply, Exception):
        raise reply
    return reply


def response_error():
    """redis-py's ResponseError: Redis answered, refusing the command (a key of another type,
    out of memory with noeviction, a read-only replica), as opposed to not answering.
    Through connection.py, the only module importing redis-py."""
    from zato_daemon.cluster import connection
    return connection.RESPONSE_ERROR


def _connection_of(pool):
    # redis-py 5.3 and later take no argument (and warn at one); 4.3 (Debian 12) needs one.
    try:
        return pool.get_connection()
    except TypeError:
        return pool.get_connection('_')


def close_in_child(client):
    """In a worker just forked: its copies of a client's Redis sockets are closed, without the
    shutdown redis-py's disconnect does, which would cut the master's connection too.
    Otherwise each worker would hold the master's connection open after the master closed
    it (a Redis restart, a reload). redis-py keeps its connections in private attributes:
    whatever is not found there stays open, as it would without this."""
    pool = getattr(client, 'connection_pool', None)
    connections = [*getattr(pool, '_available_connections', ()), *getattr(pool, '_in_use_connections', ())]
    for connection in connections:
        sock = getattr(connection, '_sock', None)
        if sock is not None:
            try:
                os.close(sock.detach())
            except OSError:
                pass
