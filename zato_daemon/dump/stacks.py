"""What a stack says, for the analysis of dumps: whether it waits in a known idle place, which
frames are libraries the application waits in, its innermost frame of application code.

Tables, not branches: a housekeeping loop of the server, renamed or added, is one line here (an
idle server must report nothing; tests/integration/test_diagnose.py checks it on a real one).
Frames are record.py's dicts: file, line, function, source_line.
"""

import os
import re

# Where a greenlet or a thread waits when there is nothing to do: (file name ending, function).
# Matched against the innermost frame that is not the stdlib's, gevent's, greenlet's or
# redis-py's (is_library), or, for a stack made of those alone, against any of its frames.
# Line numbers are left out on purpose: they move with every edit of these files.
IDLE_FRAMES = frozenset({
    # gevent's own: the hub's loop (the main thread's stack while nothing runs), its thread pool
    # (a thread waiting for a task; the greenlet that started it, parked for good; the resolver
    # starts one at the first name lookup).
    ('gevent/hub.py', 'Hub.run'),
    ('gevent/threadpool.py', '_WorkerGreenlet.run'),
    ('gevent/threadpool.py', '_WorkerGreenlet._begin'),
    # A worker's housekeeping greenlets, each sleeping between two rounds.
    ('zato_daemon/cache/registry.py', 'CacheRegistry.run'),
    ('zato_daemon/deploy/follower.py', 'ManifestFollower.run'),
    ('zato_daemon/diagnostics/store.py', 'DiagnosticsStore.run'),
    ('zato_daemon/http/balance.py', 'Slot.keep_fresh'),
    ('zato_daemon/http/server.py', 'HttpServer.close_expired_connections'),
    ('zato_daemon/http/server.py', 'HttpServer.drain'),
    ('zato_daemon/worker/process.py', 'Worker.send_heartbeats'),
    ('zato_daemon/worker/process.py', 'Worker.send_reports'),
    ('zato_daemon/worker/process.py', 'Worker.watch_master'),
    # The worker's main greenlet, waiting for the stop request.
    ('zato_daemon/worker/process.py', 'Worker.serve'),
    # A connection between two requests (a keep-alive client), or lingering after an answer;
    # one serving a call is in HttpServer._answer, deeper.
    ('zato_daemon/http/server.py', 'HttpServer._exchange'),
    ('zato_daemon/http/server.py', '_Receiver.__call__'),
    ('zato_daemon/http/server.py', 'HttpServer.answer_and_linger'),
    # The master's threads: its main loop, hot deploy, /metrics, the cluster's two threads.
    ('zato_daemon/master/arbiter.py', 'Arbiter.wait_for_events'),
    ('zato_daemon/deploy/pickup.py', 'PickupDeployer._run'),
    ('socketserver.py', 'BaseServer.serve_forever'),
    # (ClusterDeployer._step blocks in Redis' XREAD for the next publication.)
    ('zato_daemon/cluster/thread.py', 'ClusterThread._run'),
    ('zato_daemon/cluster/deploy.py', 'ClusterDeployer._step'),
    # (The cluster diagnostics thread blocks in XREAD for the next dump request, through raw_reply.)
    ('zato_daemon/cluster/diagnostics.py', 'ClusterDiagnostics._read_requests'),
})

# The server's own helpers that only pass a wait through, like a library: their caller says
# whether it is idle (raw_reply serves an idle XREAD as well as any other Redis command).
PASS_THROUGH_FRAMES = frozenset({
    ('zato_daemon/cluster/thread.py', 'raw_replies'),
    ('zato_daemon/cluster/thread.py', 'raw_reply'),
})

# Frames that mean work even inside an idle one: a thread pool's worker running a task (a
# getaddrinfo() that never returns is no idle thread).
BUSY_FRAMES = frozenset({
    ('gevent/threadpool.py', '_WorkerGreenlet.__run_task'),
})

# The dump trigger's signal handler: it runs in the main thread on top of whatever runs there,
# often still when the dump is taken. It and what it calls are left out of every stack.
SIGNAL_HANDLER_FRAMES = frozenset({
    ('zato_daemon/dump/trigger.py', 'DumpTrigger.handle_signal'),
    ('zato_daemon/dump/trigger.py', 'DumpTrigger.request'),
})

# The hub's loop: a main thread with this frame on its stack runs the hub (a greenlet's own
# stack starts afresh, without the frames of the hub that switched to it).
HUB_LOOP_FRAMES = frozenset({('gevent/hub.py', 'Hub.run')})

# The stdlib (not its site- or dist-packages), and the libraries the server itself waits in.
_STDLIB = re.compile(r'/python3(?:\.\d+)?/(?!(?:site|dist)-packages/)')
_LIBRARIES = re.compile(r'/(?:site|dist)-packages/(?:gevent|greenlet|redis)/')


def is_library(file):
    """True for a frame of the stdlib, gevent, greenlet or redis-py: code the application calls
    into and waits in, never where its own problem is."""
    return file.startswith('<') or bool(_STDLIB.search(file) or _LIBRARIES.search(file))


def is_in(frame, table):
    file, function = frame['file'], frame['function']
    return any(function == listed and file.endswith('/' + ending) for ending, listed in table)


def is_idle(frames):
    """True when a stack (outermost first) waits in a known idle place of IDLE_FRAMES: the
    innermost frame that is the application's own, or listed, decides."""
    for frame in reversed(frames):
        if is_in(frame, BUSY_FRAMES):
            return False
        if is_in(frame, IDLE_FRAMES):
            return True
        if not is_library(frame['file']) and not is_in(frame, PASS_THROUGH_FRAMES):
            return False
    return False


def innermost_own(frames):
    """(frame, callee function or None): the innermost frame outside the libraries, and the
    function it called into; the innermost frame when every one is a library's. (None, None)
    for an empty stack."""
    for index in range(len(frames) - 1, -1, -1):
        if not is_library(frames[index]['file']):
            callee = frames[index + 1]['function'] if index + 1 < len(frames) else None
            return frames[index], callee
    return (frames[-1], None) if frames else (None, None)


def where(frames):
    """'in socket.recv at client.py:88', or 'at spin.py:12 in Spin.handle' when that frame is
    the innermost; '' for an empty stack."""
    frame, callee = innermost_own(frames)
    if frame is None:
        return ''
    place = f'{os.path.basename(frame["file"])}:{frame["line"]}'
    return f'in {callee} at {place}' if callee else f'at {place} in {frame["function"]}'
