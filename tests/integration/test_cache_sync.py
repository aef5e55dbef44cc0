"""The built-in cache across real processes sharing one state directory.

Each process stands for a worker: it owns a CacheRegistry and runs `registry.run()` with a
sleep function that also serves the test's commands (JSON lines on stdin), as a worker's
other greenlets would. A "watch" makes a process report, right after the poll that made it
so, when a key reaches a value; the delay is measured from the moment the writer's `set()`
returned, on the same host clock.
"""

import json
import os
import select
import sqlite3
import statistics
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_ROOT

SYNC_BOUND = 0.1
ANSWER_TIMEOUT = 10.0

MY_CACHE = {'name': 'my.cache', 'cluster_id': 1, 'max_size': 10000, 'max_item_size': 10000,
            'sync_method': 'in-background', 'persistent_storage': 'no-persistent-storage', 'cache_type': 'builtin'}
DISK_CACHE = dict(MY_CACHE, name='disk.cache', persistent_storage='sql')

CHILD = r'''
import json, os, select, sys, time
from zato_daemon.cache import CacheRegistry, CacheError

registry = CacheRegistry(sys.argv[1], boot_id=sys.argv[2])
watches = []
buffered = b''


def reply(message):
    os.write(1, (json.dumps(message) + '\n').encode())


def current(watch):
    if watch['cache'] not in registry:
        return 'absent'
    cache = registry.caches[watch['cache']]
    return cache.get(watch['key'], 'absent')


def check_watches():
    for watch in list(watches):
        if current(watch) == watch['expect']:
            watches.remove(watch)
            reply({'seen': watch['id'], 'at': time.time()})


def handle(command):
    kind = command.pop('command')
    if kind == 'create':
        registry.create(command['definition'])
        return {'ok': True}
    if kind == 'watch':
        watches.append(command)
        return {'watching': command['id']}
    cache = registry[command['cache']]
    if kind == 'set':
        cache.set(command['key'], command['value'], command.get('expiry'))
        return {'returned_at': time.time()}
    if kind == 'delete':
        deleted = cache.delete(command['key'])
        return {'returned_at': time.time(), 'deleted': deleted}
    if kind == 'get':
        return {'value': cache.get(command['key'], 'absent')}
    raise ValueError(kind)


def sleep(interval):
    # The worker's gevent.sleep: while "asleep", other greenlets (here: the test) run.
    global buffered
    check_watches()
    deadline = time.monotonic() + interval
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        if not select.select([0], [], [], remaining)[0]:
            continue
        data = os.read(0, 65536)
        if not data:
            registry.close()
            raise SystemExit(0)
        buffered += data
        while b'\n' in buffered:
            line, buffered = buffered.split(b'\n', 1)
            try:
                reply(handle(json.loads(line)))
            except CacheError as exc:
                reply({'error': str(exc)})


reply({'ready': os.getpid()})
registry.run(sleep)
'''


class CacheProcess:
    """One process with a CacheRegistry on a shared state directory, driven over pipes."""

    def __init__(self, state_dir, boot_id):
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''))
        self.process = subprocess.Popen([sys.executable, '-c', CHILD, str(state_dir), boot_id], env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO_ROOT)
        self.buffered = b''
        assert 'ready' in self.read()

    def read(self, timeout=ANSWER_TIMEOUT):
        """The next message from the process; fails the test after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b'\n' not in self.buffered:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise AssertionError(f'no answer from cache process {self.process.pid} within {timeout} s')
            data = os.read(fd, 65536)
            if not data:
                raise AssertionError(f'cache process {self.process.pid} exited with {self.process.wait()}')
            self.buffered += data
        line, self.buffered = self.buffered.split(b'\n', 1)
        return json.loads(line)

    def send(self, command, **fields):
        """Sends a command and returns its answer."""
        self.process.stdin.write(json.dumps(dict(fields, command=command)).encode() + b'\n')
        self.process.stdin.flush()
        return self.read()

    def stop(self):
        """Closes stdin: the process closes its registry and exits 0."""
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=ANSWER_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        return self.process.returncode


@pytest.fixture
def start(tmp_path):
    """Starts cache processes on tmp_path/state; stops them all at the end."""
    processes = []

    def start(boot_id='boot-1'):
        process = CacheProcess(tmp_path / 'state', boot_id)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop()


def delay_until_seen(writer, reader, command, watch_id, cache='my.cache', **fields):
    """Seconds from the writer's return to the reader's poll that saw the change."""
    expect = fields.get('value', 'absent')
    assert reader.send('watch', id=watch_id, cache=cache, key=fields['key'], expect=expect) == {'watching': watch_id}
    returned_at = writer.send(command, cache=cache, **fields)['returned_at']
    seen = reader.read()
    assert seen['seen'] == watch_id
    return seen['at'] - returned_at


def test_a_change_in_one_process_is_seen_in_the_others_within_100_ms(start):
    processes = [start(), start(), start()]
    for process in processes:
        assert process.send('create', definition=MY_CACHE) == {'ok': True}
    delays = []
    for number in range(30):
        writer = processes[number % 3]
        reader = processes[(number + 1) % 3]
        delays.append(delay_until_seen(writer, reader, 'set', f'set-{number}', key=f'k{number % 5}', value=number))
        if number % 5 == 4:
            delays.append(delay_until_seen(reader, writer, 'delete', f'del-{number}', key=f'k{number % 5}'))
    print(f'\ncache sync delay over {len(delays)} changes: median {statistics.median(delays) * 1000:.1f} ms, '
          f'max {max(delays) * 1000:.1f} ms')
    assert max(delays) < SYNC_BOUND, delays


def test_a_cache_created_in_one_process_reaches_the_others(start):
    creator, other = start(), start()
    assert other.send('watch', id='late', cache='late.cache', key='k', expect='v') == {'watching': 'late'}
    creator.send('create', definition=dict(MY_CACHE, name='late.cache'))
    returned_at = creator.send('set', cache='late.cache', key='k', value='v')['returned_at']
    assert other.read()['at'] - returned_at < SYNC_BOUND


def test_a_persistent_cache_survives_a_restart(start):
    first = start('run-1')
    first.send('create', definition=DISK_CACHE)
    first.send('create', definition=MY_CACHE)
    first.send('set', cache='disk.cache', key='kept', value={'n': 1})
    expires_at = first.send('set', cache='disk.cache', key='short', value=1, expiry=0.05)['returned_at'] + 0.05
    first.send('set', cache='my.cache', key='lost', value=1)
    assert first.stop() == 0
    second = start('run-2')
    # Starting a process takes longer than that; this only waits if it did not.
    time.sleep(max(0.0, expires_at - time.time()))
    second.send('create', definition=DISK_CACHE)
    second.send('create', definition=MY_CACHE)
    assert second.send('get', cache='disk.cache', key='kept') == {'value': {'n': 1}}
    assert second.send('get', cache='disk.cache', key='short') == {'value': 'absent'}
    assert second.send('get', cache='my.cache', key='lost') == {'value': 'absent'}


def test_a_respawned_worker_finds_the_caches_of_its_server_run(start):
    first = start('run-1')
    first.send('create', definition=MY_CACHE)
    first.send('set', cache='my.cache', key='k', value='v')
    assert first.stop() == 0
    respawned = start('run-1')
    assert respawned.send('get', cache='my.cache', key='k') == {'value': 'v'}


def test_a_locked_database_delays_sync_but_never_fails_a_set(start, tmp_path):
    writer, reader = start(), start()
    for process in (writer, reader):
        process.send('create', definition=MY_CACHE)
    lock = sqlite3.connect(tmp_path / 'state' / 'caches.sqlite3', isolation_level=None)
    try:
        lock.execute('BEGIN IMMEDIATE')
        reader.send('watch', id='locked', cache='my.cache', key='k', expect='v')
        started = time.monotonic()
        assert 'returned_at' in writer.send('set', cache='my.cache', key='k', value='v')
        assert time.monotonic() - started < 1.0
        assert writer.send('get', cache='my.cache', key='k') == {'value': 'v'}
        lock.execute('COMMIT')
        released_at = time.time()
        assert reader.read()['at'] - released_at < 2 * SYNC_BOUND
    finally:
        lock.close()
