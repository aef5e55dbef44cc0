"""The dump record (dump/record.py): the JSON file `zato-daemon diagnose` compares."""

import json
import os
import stat
import subprocess
import sys
import threading
import time
import types

import gevent
import gevent.event
import pytest

from tests.conftest import REPO_ROOT
from zato_daemon.dump import collect as collect_module
from zato_daemon.dump import record
from zato_daemon.dump.collect import (RUNNING, SUSPENDED, Dump, FrameInfo, GreenletInfo, ThreadInfo, collect,
                                      heartbeat_age, os_thread_ident)
from zato_daemon.redaction import REDACTED


def dump_now():
    return collect(os_thread_ident(), 'worker-1', '/srv/test')


def wait_here(event):
    event.wait()


def wait_there(event):
    # A different line from wait_here's: a different stack.
    event.wait()


@pytest.fixture
def waiting():
    event = gevent.event.Event()
    greenlets = [gevent.spawn(wait_here, event), gevent.spawn(wait_here, event), gevent.spawn(wait_there, event)]
    gevent.sleep(0.01)
    yield greenlets
    event.set()
    gevent.joinall(greenlets, timeout=5)


def frame(line, function='handle', file='/srv/crm/crm.py'):
    return FrameInfo(file, line, function, 'data = sock.recv(10)')


def made_dump(pid=4242, at=1_764_770_000.0, threads=(), greenlets=()):
    counts = {'threads': len(threads), 'greenlets': len(greenlets)}
    return Dump(pid, 'worker-1', '/srv/crm', at, 'feedc0de', counts, tuple(threads), tuple(greenlets), 0.01)


# ---- fingerprints and the stacks table

def test_equal_stacks_share_a_fingerprint_and_a_different_line_changes_it(waiting):
    result = record.to_record(dump_now())
    here, again, there = (next(item for item in result['greenlets'] if item['address'] == id(greenlet))
                          for greenlet in waiting)
    assert here['stack'] == again['stack'] != there['stack']
    assert [frame['function'] for frame in result['stacks'][here['stack']]][-1] == 'wait_here'
    assert result['stacks'][there['stack']][-1]['source_line'] == 'event.wait()'
    assert all(len(key) == 16 and int(key, 16) >= 0 for key in result['stacks'])


def test_a_fingerprint_depends_on_file_function_and_line_only():
    assert record.fingerprint([frame(88)]) == record.fingerprint([FrameInfo('/srv/crm/crm.py', 88, 'handle', 'x')])
    assert len({record.fingerprint(stack) for stack in ([frame(88)], [frame(89)], [frame(88, 'other')],
                                                        [frame(88, file='/srv/b.py')], [frame(1), frame(88)],
                                                        [])}) == 6


def test_a_fingerprint_is_the_same_in_another_process():
    code = ('from zato_daemon.dump.collect import FrameInfo\nfrom zato_daemon.dump.record import fingerprint\n'
            'print(fingerprint([FrameInfo("/srv/crm/crm.py", 88, "handle", "")]))\n')
    other = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert other.stdout.strip() == record.fingerprint([frame(88)])


def test_the_record_has_every_field_of_the_format(waiting):
    result = record.to_record(dump_now())
    assert set(result) == {'record_version', 'pid', 'role', 'server_dir', 'time', 'dump_id', 'duration',
                           'heartbeat_age', 'stacks', 'threads', 'greenlets', 'objects', 'calls'}
    assert (result['record_version'], result['pid'], result['role']) == (1, os.getpid(), 'worker-1')
    assert set(result['threads'][0]) == {'name', 'ident', 'native_id', 'daemon', 'is_main', 'is_current', 'stack',
                                         'frames_cut', 'running_greenlet'}
    greenlet = next(item for item in result['greenlets'] if item['address'] == id(waiting[0]))
    assert set(greenlet) == {'address', 'kind', 'state', 'is_main', 'is_hub', 'runs', 'spawn_site', 'stack',
                             'frames_cut', 'call', 'waits_on', 'holds'}
    assert greenlet['spawn_site'].startswith(f'{__file__}:') and greenlet['spawn_site'].endswith(' in waiting')
    assert greenlet['runs'] == f'{__name__}.wait_here'
    assert [item['is_hub'] for item in result['greenlets']].count(True) == 1
    assert json.loads(json.dumps(result)) == result  # plain JSON values only


def test_no_variable_is_in_the_record():
    def holding(secret_token):
        marker = 'visible-only-in-variables'
        gevent.sleep(10)
        return secret_token, marker
    greenlet = gevent.spawn(holding, 'hunter2')
    gevent.sleep(0.01)
    try:
        text = json.dumps(record.to_record(dump_now()))
    finally:
        greenlet.kill()
    assert 'visible-only-in-variables' not in text and 'hunter2' not in text


# ---- files: write, prune, read

def test_a_record_round_trips_through_write_and_read(waiting, tmp_path):
    dump = dump_now()
    path = record.write_record(dump, tmp_path / 'dumps')
    assert path.parent == tmp_path / 'dumps'
    assert path.name == f'{dump.pid}-{int(dump.time * 1_000_000_000)}.json'
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(tmp_path / 'dumps') == [path.name]  # no temporary file left
    assert record.read_records(tmp_path / 'dumps') == [json.loads(json.dumps(record.to_record(dump)))]


def test_the_newest_records_of_a_pid_are_kept(tmp_path):
    other = record.write_record(made_dump(pid=7, at=1000.0), tmp_path)
    for number in range(25):
        record.write_record(made_dump(at=2000.0 + number), tmp_path, keep=20)
    kept = record.read_records(tmp_path, pids=[4242])
    assert [item['time'] for item in kept] == [2000.0 + number for number in range(5, 25)]
    assert other.exists()


def test_read_records_filters_by_pid_and_time_newest_last(tmp_path):
    for pid, at in ((1, 30.0), (2, 10.0), (1, 20.0), (3, 40.0)):
        record.write_record(made_dump(pid=pid, at=at), tmp_path)
    assert [(item['pid'], item['time']) for item in record.read_records(tmp_path)] == [
        (2, 10.0), (1, 20.0), (1, 30.0), (3, 40.0)]
    assert [item['time'] for item in record.read_records(tmp_path, pids=[1, 3], since=25.0)] == [30.0, 40.0]
    assert record.read_records(tmp_path / 'missing') == []


@pytest.mark.parametrize('content', [b'', b'{"record_version": 1, "pid": 1', b'not json', b'[1, 2]',
                                     b'{"record_version": 2, "pid": 1}', b'\xff\xfe',
                                     b'{"record_version": 1, "pid": "1", "role": "x", "time": 1, "dump_id": "",'
                                     b' "stacks": {}, "threads": [], "greenlets": [], "objects": [], "calls": []}'])
def test_a_file_that_is_not_a_record_is_skipped(tmp_path, content):
    good = record.write_record(made_dump(at=50.0), tmp_path)
    (tmp_path / '4242-1.json').write_bytes(content)
    (tmp_path / 'notes.json').write_bytes(content)
    (tmp_path / '4242-2.json').mkdir()
    assert [item['time'] for item in record.read_records(tmp_path)] == [50.0]
    assert good.exists()


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def broken_replace(source, target):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(record.os, 'replace', broken_replace)
    with pytest.raises(OSError):
        record.write_record(made_dump(), tmp_path)
    assert os.listdir(tmp_path) == []


# ---- heartbeat and the blocking summary

def test_heartbeat_age_is_read_from_the_worker_module_and_none_without_one(monkeypatch):
    module = types.ModuleType(collect_module.HEARTBEAT_MODULE)
    monkeypatch.setitem(sys.modules, collect_module.HEARTBEAT_MODULE, module)
    assert heartbeat_age() is None
    module.last_heartbeat = time.monotonic() - 2.5
    assert 2.5 <= heartbeat_age() < 10
    assert record.to_record(dump_now())['heartbeat_age'] >= 2.5
    monkeypatch.delitem(sys.modules, collect_module.HEARTBEAT_MODULE)
    assert heartbeat_age() is None


def summary_of(running, call=None, is_hub=False):
    thread = ThreadInfo('MainThread', 1, 1, False, True, False, (frame(12, 'outer'), frame(88)),
                        running_greenlet=running)
    greenlets = (GreenletInfo(0x10, 'gevent.hub.Hub', SUSPENDED if running != 0x10 else RUNNING, False,
                              'gevent.hub.Hub.run', None, (), is_hub=True),
                 GreenletInfo(0x20, 'gevent.Greenlet', RUNNING if running == 0x20 else SUSPENDED, False, 'crm.run',
                              None, (), call=call, is_hub=is_hub))
    return record.blocking_summary(made_dump(threads=[thread], greenlets=greenlets))


def test_blocking_summary_names_the_call_and_place_of_the_greenlet_blocking_the_hub():
    assert summary_of(0x20, ('ABC', 'crm.get', 1.0)) == 'service crm.get cid ABC at /srv/crm/crm.py:88 in handle'
    assert summary_of(0x20) == 'no call at /srv/crm/crm.py:88 in handle'
    assert summary_of(0x10) is None   # the hub runs: nothing blocks it
    assert summary_of(None) is None   # unknown (the master, no hub)


# ---- bounded with many greenlets

def wait_counted(event, started):
    started.append(1)
    event.wait()


def test_ten_thousand_idle_greenlets(tmp_path):
    event, started = gevent.event.Event(), []
    greenlets = [gevent.spawn(wait_counted, event, started) for _ in range(10_000)]
    while len(started) < len(greenlets):
        gevent.sleep(0.01)
    try:
        begun = time.monotonic()
        dump = dump_now()
        collected = time.monotonic() - begun
        path = record.write_record(dump, tmp_path)
    finally:
        event.set()
        gevent.joinall(greenlets, timeout=30)
    result = record.read_records(tmp_path)[0]
    waiting_here = [item for item in result['greenlets'] if item['runs'] == f'{__name__}.wait_counted']
    assert len(waiting_here) == 10_000
    assert len({item['stack'] for item in waiting_here}) == 1
    assert len(result['objects']) == 1 and len(result['objects'][0]['waiters']) == 10_000
    print(f'\n10,000 idle greenlets: collect {collected * 1000:.0f} ms (collect.py says {dump.duration * 1000:.0f} ms),'
          f' record {path.stat().st_size / 1e6:.2f} MB, {len(result["stacks"])} stacks')


# ---- hostile files in the records directory, secrets in source lines

def read_in_thread(directory):
    """read_records() in a thread of its own, so that a reader blocked on a FIFO fails the test."""
    found = []
    thread = threading.Thread(target=lambda: found.append(record.read_records(directory)), daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), 'read_records() blocked'
    return found[0]


def test_fifos_symlinks_and_records_under_another_pids_name_are_skipped(tmp_path):
    outside = record.write_record(made_dump(pid=9, at=40.0), tmp_path / 'outside')
    directory = tmp_path / 'dumps'
    record.write_record(made_dump(at=50.0), directory)
    os.mkfifo(directory / '4242-60000000000.json')
    (directory / '4242-70000000000.json').symlink_to(outside)
    (directory / '9-80000000000.json').symlink_to('/dev/zero')
    os.link(outside, directory / '4242-90000000000.json')  # a record of pid 9 named as 4242's
    assert [(item['pid'], item['time']) for item in read_in_thread(directory)] == [(4242, 50.0)]


def test_records_named_ahead_of_a_new_one_do_not_get_it_removed(tmp_path):
    for number in range(20):
        record.write_record(made_dump(at=time.time() + 3600 + number), tmp_path, keep=20)
    written = record.write_record(made_dump(at=time.time()), tmp_path, keep=20)
    assert written.exists() and len(os.listdir(tmp_path)) == 20


def secret_on_the_line():
    gevent.sleep(30); return dict(password='line-secret-4711')  # noqa: E702 (the line is the test)


def test_a_secret_in_a_source_line_is_redacted_in_the_record():
    greenlet = gevent.spawn(secret_on_the_line)
    gevent.sleep(0.01)
    try:
        text = json.dumps(record.to_record(dump_now()))
    finally:
        greenlet.kill()
    assert 'line-secret-4711' not in text
    assert f"password='{REDACTED}'" in text
