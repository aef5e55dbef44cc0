"""What the master and a worker tell each other, shared by both sides.

Importable by the master: no gevent here.

Worker to master: a pipe per worker; READY_MESSAGE once the worker serves, or
BOOT_FAILED_PREFIX and a one-line reason when it cannot; HEARTBEAT_MESSAGE every
HEARTBEAT_INTERVAL from a greenlet on the worker's hub (their absence means the hub is
blocked); DUMPED_MESSAGE from the dump thread after each dump; LIMIT_REACHED_MESSAGE
once, after READY_MESSAGE, when the worker answered its share of max_requests and asks
to be replaced; end of file when it is gone. Master to worker, by signal: SIGTERM stops
(drain, then exit: the server is going away, so idle keep-alive connections are closed
after a short grace); RETIRE_SIGNAL retires a worker replaced by a reload or recycled
(max_requests, max_worker_memory) once its replacement serves (drain, but idle keep-alive
connections keep their chance to send one more request, answered with
`Connection: close`, since the socket stays served by the new workers); SIGINT and
SIGQUIT stop at once.
"""

import signal

READY_MESSAGE = b'R'
BOOT_FAILED_PREFIX = b'F'
HEARTBEAT_MESSAGE = b'H'
DUMPED_MESSAGE = b'D'
LIMIT_REACHED_MESSAGE = b'L'
HEARTBEAT_INTERVAL = 1.0
RETIRE_SIGNAL = signal.SIGUSR2
# Blocked by the master across fork, until the worker has installed its own handlers.
WORKER_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, RETIRE_SIGNAL, signal.SIGURG}
