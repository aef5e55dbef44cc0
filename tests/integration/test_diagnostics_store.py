"""The troubleshooting store against real processes and real filesystems.

Several OS processes write one database at once, as the workers of a server do. A full
and a read-only state directory are tmpfs mounts: root bypasses permission bits
(CAP_DAC_OVERRIDE), so `chmod 0555` would not stop these tests, which run as root; a
read-only mount (EROFS) and a filesystem without free blocks (ENOSPC) stop root too.
Readers of another user, in the state directory's group, run through setpriv(1).
"""

import errno
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from zato_daemon.diagnostics import DATABASE_NAME, Call, DiagnosticsStore, list_samples, list_slow

WRITERS = 4
BATCHES = 30
PER_BATCH = 20
SAMPLES_KEEP = 20
WRITERS_TIMEOUT = 60.0
ZATO_ID = 4321
READER_ID = 1234

WRITER = r'''
import json, sys, time
from zato_daemon.diagnostics import Call, DiagnosticsStore

db, name, busy_timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
batches, per_batch, samples_keep = map(int, sys.argv[4:])
store = DiagnosticsStore(db, slow_keep=100_000, samples_keep=samples_keep, max_queued=100_000,
                         busy_timeout=busy_timeout)
failed_flushes = 0
print('ready', flush=True)
sys.stdin.readline()
shared = []
for batch in range(batches):
    for number in range(per_batch):
        now = time.time()
        cid = f'{name}-{batch}-{number}'
        store.record_slow(Call(cid, f'svc.{name}', 1, now, 1.0, 200, '{}', '{}'))
        store.record_slow(Call(cid, 'svc.shared', 1, now, 1.0, 200, '{}', '{}'))
        store.record_sample(Call(cid, 'svc.shared', 1, now, 1.0, 200, '{}', '{}'))
        shared.append(now)
    failed_flushes += not store.flush()
deadline = time.monotonic() + 30
while store.pending and time.monotonic() < deadline:
    failed_flushes += not store.flush()
print(json.dumps({'pending': store.pending, 'dropped': store.dropped, 'written': store.written,
                  'failed_flushes': failed_flushes, 'started_at': shared}), flush=True)
store.close()
'''

# Writes the given cids, then keeps the database open (a running server) until stdin closes.
HOLDER = r'''
import sys
from zato_daemon.diagnostics import Call, DiagnosticsStore

store = DiagnosticsStore(sys.argv[1])
for number, cid in enumerate(sys.argv[2:]):
    store.record_slow(Call(cid, 'svc', 1, 1.7e9 + number, 1.0, 200, '{}', '{}'))
assert store.flush()
print('written', flush=True)
sys.stdin.read()
store.close()
'''

READER = r'''
import json, sys
from zato_daemon.diagnostics import DiagnosticsReadError, list_slow
try:
    print(json.dumps([row['cid'] for row in list_slow(sys.argv[1])]))
except DiagnosticsReadError as exc:
    print(exc)
    sys.exit(69)
'''


def _env():
    env = dict(os.environ)
    env['PYTHONPATH'] = str(REPO_ROOT) + os.pathsep + env.get('PYTHONPATH', '')
    return env


def make_call(cid, started_at, request='{}'):
    return Call(cid, 'svc', 1, started_at, 1.0, 200, request, '{}')


def cids(rows):
    return [row['cid'] for row in rows]


def store_messages(caplog, level):
    return [record.getMessage() for record in caplog.records
            if record.name == 'zato_daemon.diagnostics' and record.levelno == level]


@pytest.fixture
def tmpfs(tmp_path):
    """Mounts small tmpfs filesystems under tmp_path; unmounts them all at the end."""
    mounted = []

    def mount(name, size):
        path = tmp_path / name
        path.mkdir()
        _run_mount(['-t', 'tmpfs', '-o', f'size={size},mode=0755', 'tmpfs', str(path)])
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        if subprocess.run(['umount', str(path)], capture_output=True).returncode:
            subprocess.run(['umount', '-l', str(path)], capture_output=True)


def remount_read_only(path):
    _run_mount(['-o', 'remount,ro', str(path)])


def _run_mount(args):
    result = subprocess.run(['mount', *args], capture_output=True, text=True)
    if result.returncode:
        pytest.fail(f'mount {" ".join(args)} failed ({result.stderr.strip() or result.returncode}): these tests '
                    'need root with CAP_SYS_ADMIN, since only a read-only or a full filesystem makes writes fail '
                    'for root')


def fill(directory):
    """Writes a file until the filesystem has no block left; returns it."""
    filler = directory / 'filler'
    chunk = b'\0' * 4096
    with open(filler, 'wb', buffering=0) as file:
        try:
            while True:
                file.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


# ---- several processes at once

def start_writer(db, name, busy_timeout):
    args = [db, name, busy_timeout, BATCHES, PER_BATCH, SAMPLES_KEEP]
    return subprocess.Popen([sys.executable, '-c', WRITER, *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=_env(), cwd=REPO_ROOT)


# The default busy timeout, and one so short that writers give up on each other's locks and
# retry their batches at the next flush.
@pytest.mark.parametrize('busy_timeout', [0.1, 0.0001])
def test_several_processes_write_one_database_at_once(tmp_path, busy_timeout):
    db = tmp_path / 'state' / DATABASE_NAME
    writers = [start_writer(db, f'w{number}', busy_timeout) for number in range(WRITERS)]
    try:
        for writer in writers:
            assert writer.stdout.readline() == 'ready\n'
        for writer in writers:
            writer.stdin.write('go\n')
            writer.stdin.flush()
        # Reading while they write: never an error, never blocked by their locks.
        reads = 0
        deadline = time.monotonic() + WRITERS_TIMEOUT
        while any(writer.poll() is None for writer in writers):
            assert time.monotonic() < deadline, f'writers still running after {WRITERS_TIMEOUT} s'
            list_slow(db, 'svc.shared', limit=10)
            reads += 1
        reports = [json.loads(writer.stdout.readline()) for writer in writers]
    finally:
        for writer in writers:
            writer.kill()
            writer.wait()
    assert [writer.returncode for writer in writers] == [0] * WRITERS
    assert reads > 0
    if busy_timeout < 0.001:
        # Measured: 10 to 130 failed flushes per writer; the retry path did run.
        assert sum(report['failed_flushes'] for report in reports) > 0
    per_writer = BATCHES * PER_BATCH
    assert [(report['pending'], report['dropped'], report['written']) for report in reports] == \
        [(0, 0, per_writer * 3)] * WRITERS
    for number in range(WRITERS):
        assert len(list_slow(db, f'svc.w{number}', limit=100_000)) == per_writer
    assert len(list_slow(db, 'svc.shared', limit=100_000)) == per_writer * WRITERS
    connection = sqlite3.connect(db)
    try:
        assert connection.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'
        stored = [row[0] for row in connection.execute(
            "SELECT started_at FROM samples WHERE service = 'svc.shared' ORDER BY started_at DESC")]
    finally:
        connection.close()
    # Retention across processes: the newest SAMPLES_KEEP of all writers together.
    every_start = sorted((start for report in reports for start in report['started_at']), reverse=True)
    assert stored == every_start[:SAMPLES_KEEP]


# ---- a member of the group reads what the server user wrote

@pytest.fixture
def shared_state_dir():
    """A state dir owned by the 'zato' user, mode 0750, that other users may reach."""
    if os.geteuid() != 0 or shutil.which('setpriv') is None:
        pytest.skip('needs root and setpriv(1) to act as other users')
    base = Path(tempfile.mkdtemp(prefix='zd-diagnostics-'))
    base.chmod(0o755)
    state = base / 'state'
    state.mkdir(mode=0o750)
    os.chown(state, ZATO_ID, ZATO_ID)
    yield state
    shutil.rmtree(base)


def as_user(uid, groups, script, *args, **options):
    command = ['setpriv', f'--reuid={uid}', f'--regid={uid}', f'--groups={",".join(map(str, groups))}' if groups
               else '--clear-groups', sys.executable, '-c', script, *map(str, args)]
    return subprocess.Popen(command, env=_env(), cwd='/', text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **options)


def read_as(uid, groups, db):
    reader = as_user(uid, groups, READER, db)
    out, err = reader.communicate(timeout=30)
    return reader.returncode, out.strip(), err


def test_a_group_member_reads_while_the_server_runs_and_after_it_stopped(shared_state_dir):
    db = shared_state_dir / DATABASE_NAME
    holder = as_user(ZATO_ID, [], HOLDER, db, 'one', 'two')
    try:
        assert holder.stdout.readline() == 'written\n', holder.stderr.read()
        # Running: the -wal and -shm files exist, 0640 like the database, and hold the rows.
        assert {path.name for path in shared_state_dir.iterdir()} >= {DATABASE_NAME, f'{DATABASE_NAME}-wal'}
        assert read_as(READER_ID, [ZATO_ID], db) == (0, '["two", "one"]', '')
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert holder.returncode == 0
    # Stopped: no -wal file, and the reader may not create the -shm one.
    assert [path.name for path in shared_state_dir.iterdir()] == [DATABASE_NAME]
    assert oct(os.stat(db).st_mode & 0o777) == oct(0o640)
    assert read_as(READER_ID, [ZATO_ID], db) == (0, '["two", "one"]', '')
    status, out, _ = read_as(READER_ID, [], db)
    assert status == 69 and 'cannot read' in out and 'Permission denied' in out


# ---- a read-only and a full state directory

def test_a_read_only_state_dir_warns_and_still_reads(tmpfs, caplog):
    state = tmpfs('state', '1m')
    db = state / DATABASE_NAME
    writer = DiagnosticsStore(db)
    writer.record_slow(make_call('before', 1.7e9))
    assert writer.flush()
    writer.close()
    remount_read_only(state)

    store = DiagnosticsStore(db, busy_timeout=0.01)
    store.record_slow(make_call('during', 1.7e9 + 1))
    assert store.flush() is False
    assert store.pending == 1
    [warning] = store_messages(caplog, logging.WARNING)
    assert 'read-only' in warning and 'Services keep answering' in warning
    assert cids(list_slow(db)) == ['before']
    store.close()

    new = DiagnosticsStore(state / 'new.sqlite3')
    new.record_sample(make_call('lost', 1.7e9))
    assert new.flush() is False
    assert 'read-only' in store_messages(caplog, logging.WARNING)[-1]
    assert list_samples(state / 'new.sqlite3', 'svc') == []
    new.close()


def test_a_full_disk_warns_keeps_the_batch_and_recovers(tmpfs, caplog):
    caplog.set_level(logging.INFO, logger='zato_daemon.diagnostics')
    state = tmpfs('state', '512k')
    db = state / DATABASE_NAME
    store = DiagnosticsStore(db, busy_timeout=0.01)
    try:
        store.record_slow(make_call('before', 1.7e9))
        assert store.flush()
        filler = fill(state)
        for number in range(10):
            store.record_slow(make_call(f'during{number}', 1.7e9 + 1 + number, request='x' * 8000))
        assert store.flush() is False
        assert store.pending == 10
        [warning] = store_messages(caplog, logging.WARNING)
        assert 'disk is full' in warning
        assert cids(list_slow(db)) == ['before']
        filler.unlink()
        assert store.flush() is True
        assert cids(list_slow(db, limit=3)) == ['during9', 'during8', 'during7']
        assert 'available again' in store_messages(caplog, logging.INFO)[-1]
    finally:
        store.close()


def test_a_tiny_filesystem_full_from_the_start_only_warns(tmpfs, caplog):
    # 64 KiB: the -shm file takes 32 KiB, and these 200 KB of rows cannot fit.
    state = tmpfs('state', '64k')
    store = DiagnosticsStore(state / DATABASE_NAME, busy_timeout=0.01)
    for number in range(50):
        store.record_slow(make_call(f'c{number}', 1.7e9 + number, request='x' * 4000))
    assert store.flush() is False
    assert store.pending == 50
    [warning] = store_messages(caplog, logging.WARNING)
    assert 'disk is full' in warning
    store.close()
