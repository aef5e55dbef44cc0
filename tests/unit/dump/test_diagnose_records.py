"""Hand-made dump records in record.py's format (record_version 1), for the analysis and diagnose tests
(no tests of its own: the name keeps it among the diagnose files).

A process is described once per dump with plain Python values; `record()` fills in the
fingerprints and the stacks table as the writer does.
"""

import hashlib

SITE = '/usr/lib/python3/dist-packages'
VENV = '/srv/venv/lib/python3.11/site-packages'
STDLIB = '/usr/lib/python3.11'
APP = '/srv/crm'


def frame(file, line, function, source=''):
    return {'file': file, 'line': line, 'function': function, 'source_line': source}


def fingerprint(frames):
    text = '\n'.join(f'{item["file"]}\0{item["function"]}\0{item["line"]}' for item in frames)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


# ---- stacks, outermost first

GREENLET_RUN = frame(f'{SITE}/gevent/greenlet.py', 908, 'Greenlet.run')
HUB_RUN = [frame(f'{SITE}/gevent/hub.py', 647, 'Hub.run', 'loop.run()')]
SLEEP = [frame(f'{SITE}/gevent/hub.py', 166, 'sleep', 'hub.wait(t)')]
RECV = [frame(f'{SITE}/gevent/_socketcommon.py', 690, 'socket.recv', 'self._wait(self._read_event)'),
        frame(f'{SITE}/gevent/_hub_primitives.py', 317, 'wait_on_watcher')]
ACQUIRE = [frame(f'{SITE}/gevent/lock.py', 190, 'Semaphore.acquire', 'self._wait(timeout)'),
           frame(f'{SITE}/gevent/_abstract_linkable.py', 512, 'AbstractLinkable._wait')]


def zd(path, line, function):
    """A frame of the server itself, installed from the .deb."""
    return frame(f'{SITE}/zato_daemon/{path}', line, function)


def housekeeping(path, line, function):
    return [GREENLET_RUN, zd(path, line, function), *SLEEP]


CONNECTION_IDLE = [GREENLET_RUN, zd('http/server.py', 199, 'HttpServer.serve_connection'),
                   zd('http/server.py', 252, 'HttpServer._exchange'), zd('http/server.py', 376, '_Receiver.__call__'),
                   frame(f'{SITE}/gevent/_socketcommon.py', 300, 'socket._wait')]


def serving(*own):
    """A connection greenlet serving a call: the server's frames, then the service's `own`."""
    return [GREENLET_RUN, zd('http/server.py', 199, 'HttpServer.serve_connection'),
            zd('http/server.py', 248, 'HttpServer._answer'), zd('services/host.py', 120, 'ServiceHost.invoke'), *own]


def app(line, function, file='client.py'):
    return frame(f'{APP}/{file}', line, function)


# ---- greenlets, threads and objects

def greenlet(address, stack, state='suspended', call=None, waits_on=None, holds=(), spawn_site=None, runs=None,
             is_hub=False, is_main=False):
    return {'address': address, 'kind': 'gevent._gevent_cgreenlet.Greenlet', 'state': state, 'is_main': is_main,
            'is_hub': is_hub, 'runs': runs, 'spawn_site': spawn_site, 'stack': stack, 'frames_cut': 0,
            'call': call, 'waits_on': waits_on, 'holds': list(holds)}


def call(service, cid, age, started=1764769959.1):
    return {'cid': cid, 'service': service, 'started': started, 'age': age}


def thread(ident, stack, name='MainThread', is_main=False, is_current=False, running_greenlet=None):
    return {'name': name, 'ident': ident, 'native_id': ident % 100000, 'daemon': not is_main, 'is_main': is_main,
            'is_current': is_current, 'stack': stack, 'frames_cut': 0, 'running_greenlet': running_greenlet}


def lock(object_id, names, owner=None, exact=True, waiters=(), kind='gevent.lock.Semaphore'):
    return {'id': object_id, 'kind': kind, 'names': list(names),
            'state': {'locked': True, 'counter': 0, 'is_set': None, 'size': None},
            'owner': owner, 'owner_exact': exact, 'waiters': list(waiters)}


def record(pid, role, time, greenlets=(), threads=(), objects=(), heartbeat_age=None):
    """A record; greenlets' and threads' 'stack' are frame lists here, fingerprinted on the way.

    The calls in flight are those of the greenlets, as the writer lists them."""
    stacks = {}

    def fingerprinted(item):
        frames = item['stack']
        key = fingerprint(frames)
        stacks[key] = frames
        return {**item, 'stack': key}

    greenlets = [fingerprinted(item) for item in greenlets]
    calls = [{**item['call'], 'greenlet': item['address']} for item in greenlets if item['call']]
    return {'record_version': 1, 'pid': pid, 'role': role, 'server_dir': '/srv/crm', 'time': time,
            'dump_id': f'{pid}-{time}', 'duration': 0.01, 'heartbeat_age': heartbeat_age, 'stacks': stacks,
            'threads': [fingerprinted(item) for item in threads], 'greenlets': greenlets,
            'objects': list(objects), 'calls': calls}


HUB = 0x7000
MAIN_GREENLET = 0x7001


def idle_worker_greenlets():
    """What an idle worker holds: the hub, its main greenlet, housekeeping, a keep-alive connection."""
    return [
        greenlet(HUB, [], state='running', is_hub=True, runs='gevent.hub.Hub.run'),
        greenlet(MAIN_GREENLET, [frame('<frozen runpy>', 198, '_run_module_as_main'),
                                 zd('worker/process.py', 329, 'run_worker'),
                                 zd('worker/process.py', 161, 'Worker.serve'),
                                 frame(f'{SITE}/gevent/event.py', 163, 'Event.wait')], is_main=True),
        greenlet(0x7100, housekeeping('cache/registry.py', 237, 'CacheRegistry.run')),
        greenlet(0x7101, housekeeping('deploy/follower.py', 52, 'ManifestFollower.run')),
        greenlet(0x7102, housekeeping('diagnostics/store.py', 301, 'DiagnosticsStore.run')),
        greenlet(0x7103, housekeeping('worker/process.py', 232, 'Worker.send_reports')),
        greenlet(0x7104, housekeeping('http/server.py', 151, 'HttpServer.close_expired_connections')),
        greenlet(0x7105, housekeeping('http/balance.py', 233, 'Slot.keep_fresh')),
        greenlet(0x7106, housekeeping('worker/process.py', 250, 'Worker.watch_master')),
        greenlet(0x7107, housekeeping('worker/process.py', 217, 'Worker.send_heartbeats')),
        greenlet(0x7108, CONNECTION_IDLE, spawn_site='listener.py:80 in do_read'),
    ]


def idle_worker_threads(running=HUB, stack=None):
    return [thread(1, HUB_RUN if stack is None else stack, is_main=True, running_greenlet=running),
            thread(2, [], name=None, is_current=True)]


def idle_master_threads():
    bootstrap = [frame(f'{STDLIB}/threading.py', 995, 'Thread._bootstrap'),
                 frame(f'{STDLIB}/threading.py', 975, 'Thread.run')]
    return [
        thread(10, [frame('<frozen runpy>', 198, '_run_module_as_main'), zd('master/arbiter.py', 207, 'Arbiter.run'),
                    zd('master/arbiter.py', 288, 'Arbiter.wait_for_events')], is_main=True),
        thread(11, [*bootstrap, zd('deploy/pickup.py', 174, 'PickupDeployer._run'),
                    frame(f'{STDLIB}/threading.py', 622, 'Event.wait'),
                    frame(f'{STDLIB}/threading.py', 324, 'Condition.wait')], name='zato-daemon: pickup'),
        thread(12, [*bootstrap, frame(f'{STDLIB}/socketserver.py', 233, 'BaseServer.serve_forever'),
                    frame(f'{STDLIB}/selectors.py', 415, '_PollLikeSelector.select')], name='metrics'),
        thread(13, [], name=None, is_current=True),
    ]
