"""How long a connection may wait on its client, in each phase of an exchange.

Pure: `Deadlines.expiry(phase, since, body_received)` says until when a connection in a
phase may wait, and what the client gets when the time is up. The server's sweep
(http/server.py) compares the answer with the clock once a second and does the closing.

Rule 1: a phase's clock starts when the phase starts and does not restart on each byte, so
a client trickling a byte every few seconds cannot hold a connection: the header section
has header_timeout from its first byte; the body has body_timeout from the end of the
headers, plus one second per body_min_rate bytes received (a slow but steady upload is
never cut), and never more than body_timeout after the last bytes received (a body sent
fast and then stalled earns no credit); an idle keep-alive connection has
keep_alive_timeout from the end of the last response, whatever bytes that start no
request it receives meanwhile, and so has a client that stops reading a response.
Rule 2: a client cut off in the middle of a request gets 408 and a close; an idle one, or
one that stopped reading a response, is closed without one (there is no request to
answer, or no way to deliver the answer).
Rule 3: while a service runs, no deadline applies: graceful_timeout bounds that at a stop.
"""

from dataclasses import dataclass

from zato_daemon.http.protocol import BODY, HEADERS, IDLE

__all__ = ('IDLE', 'HEADERS', 'BODY', 'SERVICE', 'SENDING', 'PHASES', 'Deadlines')

# The phases of one connection: RequestParser reports the first three, the server the others.
SERVICE = 'service'
SENDING = 'sending'
PHASES = (IDLE, HEADERS, BODY, SERVICE, SENDING)

REQUEST_TIMEOUT = 408


@dataclass(frozen=True)
class Deadlines:
    """The timeouts of [main], turned into a deadline per phase."""

    keep_alive_timeout: float
    header_timeout: float
    body_timeout: float
    body_min_rate: int

    @classmethod
    def from_config(cls, main):
        return cls(main.keep_alive_timeout, main.header_timeout, main.body_timeout, main.body_min_rate)

    def expiry(self, phase, since, body_received=0, last_received=None):
        """(deadline, status): the monotonic time past which a connection that entered `phase`
        at `since` is closed, or None for no deadline; and the status to answer first, or
        None to close without an answer. For BODY, `body_received` bytes have arrived, the
        last of them at `last_received` (`since` if None)."""
        if phase is IDLE or phase is SENDING:
            return since + self.keep_alive_timeout, None
        if phase is HEADERS:
            return since + self.header_timeout, REQUEST_TIMEOUT
        if phase is BODY:
            earned = since + self.body_timeout + body_received / self.body_min_rate
            stalled = (since if last_received is None else last_received) + self.body_timeout
            return min(earned, stalled), REQUEST_TIMEOUT
        if phase is SERVICE:
            return None, None
        raise ValueError(f'unknown connection phase {phase!r}')
