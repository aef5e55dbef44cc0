"""An adversarial review of the dump records and diagnose (issue 19): hostile objects in the
frames, hostile files in the records directory, records planted with a future time, secrets
in source lines. Real greenlets, real files, a real FIFO."""

import json
import os
import subprocess
import sys
import threading
import time

import gevent
import gevent.lock
import pytest

from tests.unit.dump.test_analysis import T0, leaked, master_dumps, worker_dumps
from tests.unit.dump.test_diagnose_records import RECV, SITE, STDLIB, app, call, frame, greenlet, serving, zd
from tests.unit.dump.test_diagnose_rounds import server_paths
from tests.unit.dump.test_record import made_dump
from tests.unit.dump.test_waits import record_now, spawned  # noqa: F401 (a fixture, and the record of now)
from zato_daemon.dump import diagnose, plain, record, waits
from zato_daemon.dump.analysis import analyse
from zato_daemon.dump.stacks import is_idle
from zato_daemon.errors import NotRunning
from zato_daemon.redaction import REDACTED
from zato_daemon.status import write_status

RAN = []


class DictProperty:
    """Its instance dict is a property: object.__getattribute__(obj, '__dict__') runs it."""

    def __init__(self, lock):
        self.lock = lock  # into the real instance dict, which the property hides

    @property
    def __dict__(self):
        RAN.append('__dict__ property')
        return {'lock': gevent.lock.Semaphore(0)}


class HostileSemaphore(gevent.lock.Semaphore):
    """A lock subclass whose every Python-level hook says it ran."""

    def __eq__(self, other):
        RAN.append('__eq__')
        return False

    def __hash__(self):
        RAN.append('__hash__')
        return 1

    def __repr__(self):
        RAN.append('__repr__')
        raise RuntimeError('repr')

    @property
    def __class__(self):
        RAN.append('__class__')
        return int


class Holder:
    def __init__(self, lock):
        self.lock = lock


def wait_on(holder):
    holder.lock.acquire()


def wait_on_hostile(hostile):
    hostile.acquire()




def test_an_instance_dict_that_is_a_property_is_never_run():
    del RAN[:]
    lock = gevent.lock.Semaphore(0)
    found = waits.resolve(waits.Path('local', 'holder', ('lock',)), {'holder': DictProperty(lock)}, {})
    assert RAN == []
    # The class has no C descriptor of its instance dict any more: not resolved.
    assert found is waits._MISSING
    assert plain.instance_dict(Holder(lock)) == {"lock": lock}


def test_a_dump_of_greenlets_waiting_through_hostile_objects_runs_none_of_their_code(spawned):
    hostile = HostileSemaphore(0)
    first = spawned(wait_on, DictProperty(gevent.lock.Semaphore(0)))
    second = spawned(wait_on_hostile, hostile)
    gevent.sleep(0.01)
    del RAN[:]
    result = record_now()
    assert RAN == []
    waiting = {item['address']: item['waits_on'] for item in result['greenlets']}
    assert waiting[id(first)] == {'object': None, 'operation': 'acquire', 'expression': 'holder.lock'}
    assert waiting[id(second)]['object'] == f'{id(hostile):#x}'
    entry = next(item for item in result['objects'] if item['id'] == f'{id(hostile):#x}')
    assert entry['kind'].endswith('HostileSemaphore') and entry['state']['counter'] == 0


def secret_in_source():
    gevent.sleep(30); return dict(password='src-secret-4711')  # noqa: E702 (the line is the test)


def test_a_secret_in_a_source_line_is_redacted_in_the_record(spawned):
    spawned(secret_in_source)
    gevent.sleep(0.01)
    text = json.dumps(record_now())
    assert 'src-secret-4711' not in text
    assert f"password='{REDACTED}'" in text


# ---- hostile files in the records directory

def read_in_time(directory, **options):
    """read_records() in a thread of its own: a FIFO it opened would block it for good."""
    found = []
    thread = threading.Thread(target=lambda: found.append(record.read_records(directory, **options)), daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), 'read_records() blocked'
    return found[0]


def test_a_fifo_named_as_a_record_does_not_block_the_reader(tmp_path):
    record.write_record(made_dump(at=50.0), tmp_path)
    os.mkfifo(tmp_path / '4242-60000000000.json')
    assert [item['time'] for item in read_in_time(tmp_path)] == [50.0]


def test_a_symlink_named_as_a_record_is_not_followed(tmp_path):
    outside = tmp_path / 'outside'
    real = record.write_record(made_dump(at=50.0), outside)
    directory = tmp_path / 'dumps'
    directory.mkdir()
    (directory / '4242-60000000000.json').symlink_to(real)
    (directory / '4242-70000000000.json').symlink_to('/dev/zero')
    assert read_in_time(directory) == []


def test_a_record_whose_content_names_another_pid_than_its_file_is_not_read(tmp_path):
    record.write_record(made_dump(pid=7, at=50.0), tmp_path)
    os.rename(tmp_path / '7-50000000000.json', tmp_path / '4242-50000000000.json')
    assert read_in_time(tmp_path) == []


def test_a_record_planted_with_a_future_time_does_not_answer_a_round(tmp_path):
    server_dir, paths = server_paths(tmp_path)
    pid = os.getpid()
    record.write_record(made_dump(pid=pid, at=time.time() + 3600), paths.dump_records)
    with pytest.raises(diagnose.DumpsMissing):
        diagnose.take_round(server_dir, pid, paths.dump_records, lambda: None, timeout=0.3)


# ---- the process set changing during a round

def test_a_worker_listed_only_after_the_signal_is_not_waited_for(tmp_path):
    # A worker that became ready (a replacement, a reload) after the master passed the signal on
    # was never asked for a dump: waiting for its record would end every such round in a 69.
    server_dir, paths = server_paths(tmp_path)
    master = os.getpid()
    write_status(server_dir.status_file, {'master_proc_pid': master, 'workers': []})

    def signal_master():
        record.write_record(made_dump(pid=master, at=time.time()), paths.dump_records)
        write_status(server_dir.status_file, {'master_proc_pid': master, 'workers': [
            {'number': 1, 'pid': 999_999, 'state': 'ready'}]})
    found = diagnose.take_round(server_dir, master, paths.dump_records, signal_master, timeout=1.0)
    assert [item['pid'] for item in found] == [master]


def test_a_master_that_exits_during_a_round_is_said_at_once(tmp_path):
    server_dir, paths = server_paths(tmp_path)
    gone = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    pid = int(gone.stdout)
    started = time.monotonic()
    with pytest.raises(NotRunning) as error:
        diagnose.take_round(server_dir, pid, paths.dump_records, lambda: None, timeout=5.0)
    assert time.monotonic() - started < 2
    assert str(error.value) == f'master pid {pid} exited during diagnose; no report'


def test_a_missing_record_names_a_process_stuck_in_c_code_as_a_cause():
    # A regular expression backtracking for minutes holds the GIL: the SIGURG handler, a
    # Python function, cannot run, so no DUMP_FAILED is ever logged either.
    message = diagnose.missing_message({12: 'worker-1'}, 10.0, '/run/zato-daemon/dumps')
    assert 'inside C code that holds the interpreter (a long regular expression' in message
    assert '\n' not in message


def test_records_named_in_the_future_do_not_push_a_new_record_out(tmp_path):
    # Pruning keeps the newest names: twenty planted ones dated ahead (or left by a clock
    # stepped back) would have every new record removed right after it is written.
    for number in range(20):
        record.write_record(made_dump(at=time.time() + 3600 + number), tmp_path, keep=20)
    written = record.write_record(made_dump(at=time.time()), tmp_path, keep=20)
    assert written.exists()
    assert len(os.listdir(tmp_path)) == 20


# ---- a false HUB BLOCKED

def test_a_greenlet_read_as_running_while_the_main_thread_runs_the_hub_does_not_block_it():
    # With 10,000 greenlets a dump reads them for 0.2 s while the main thread runs on: a
    # housekeeping greenlet that ran at the moment its frame was read is taken for the one
    # in the main thread, though the main thread's own stack is the hub's loop. Measured on a
    # real worker (/tmp/review/cost.py): "CacheRegistry.run keeps the CPU at hub.py in Hub.run".
    housekeeper = 0x7100
    records = [*worker_dumps([[], [], []], running=[housekeeper] * 3), *master_dumps()]
    report = analyse(records)
    assert report['problems'] == 0, report['findings']


# ---- an idle cluster member

CLUSTER_DIAGNOSTICS = [frame(f'{STDLIB}/threading.py', 975, 'Thread.run'),
                       zd('cluster/thread.py', 63, 'ClusterThread._run'),
                       zd('cluster/diagnostics.py', 121, 'ClusterDiagnostics._step'),
                       zd('cluster/diagnostics.py', 163, 'ClusterDiagnostics._read_requests'),
                       zd('cluster/thread.py', 112, 'raw_reply'), zd('cluster/thread.py', 98, 'raw_replies'),
                       frame(f'{SITE}/redis/connection.py', 1407, 'AbstractConnection.read_response')]


@pytest.mark.parametrize('frames, expected', [
    # Found on a real member with redis-server: the diagnostics thread waiting for a dump request.
    (CLUSTER_DIAGNOSTICS, True),
    # The same helper under a call that is no idle wait: not idle.
    ([*CLUSTER_DIAGNOSTICS[:3], zd('cluster/diagnostics.py', 150, 'ClusterDiagnostics._stream_position'),
      *CLUSTER_DIAGNOSTICS[4:]], False),
])
def test_the_cluster_diagnostics_thread_waiting_for_a_request_is_idle(frames, expected):
    assert is_idle(frames) is expected


def test_read_records_until_skips_later_names_without_reading_them(tmp_path, monkeypatch):
    record.write_record(made_dump(at=50.0), tmp_path)
    record.write_record(made_dump(at=70.0), tmp_path)
    opened = []
    real_open = os.open
    monkeypatch.setattr(record.os, 'open', lambda path, *args: opened.append(os.path.basename(path)) or
                        real_open(path, *args))
    assert [item['time'] for item in record.read_records(tmp_path, until=60.0)] == [50.0]
    assert opened == ['4242-50000000000.json']


def test_a_file_bigger_than_a_record_can_be_is_not_read(tmp_path, monkeypatch):
    with open(tmp_path / '4242-50000000000.json', 'wb') as big:
        big.truncate(record.MAX_RECORD_BYTES + 1)
    # Said by its size before a byte is read: 64 MB of a planted file are not read each poll.
    opened = []
    real_fdopen = os.fdopen
    monkeypatch.setattr(record.os, 'fdopen', lambda *args: opened.append(args) or real_fdopen(*args))
    assert read_in_time(tmp_path) == []
    assert opened == []


def test_a_master_that_exited_but_is_not_reaped_yet_is_not_alive():
    child = subprocess.Popen([sys.executable, '-c', 'pass'])
    deadline = time.monotonic() + 10
    while diagnose._is_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert not diagnose._is_alive(child.pid)  # a zombie: kill(pid, 0) still succeeds
        assert diagnose._is_alive(os.getpid())
    finally:
        child.wait()


# ---- a false GROWTH

@pytest.mark.parametrize('counts, expected', [
    # Found on a real server reloaded during diagnose: a new worker's cache greenlet, busy with
    # its first round in the second dump and not yet spawned in the first.
    ((0, 1), False),
    ((0, 2), True),
    ((0, 1, 2), True),
    ((5, 6), False),
])
def test_one_more_greenlet_is_a_start_not_a_leak(counts, expected):
    dumps = [[leaked(0x9000 + 100 * dump + index) for index in range(count)] for dump, count in enumerate(counts)]
    times = tuple(T0 + 3 * index for index in range(len(counts)))
    report = analyse(worker_dumps(dumps, times=times, heartbeats=(0.1,) * len(counts)))
    assert ('growth' in [finding['kind'] for finding in report['findings']]) is expected


# ---- a false STUCK

def test_a_greenlet_address_reused_by_another_call_on_the_same_line_is_not_stuck():
    # Under steady load each call gets a new greenlet, and the allocator hands a freed
    # greenlet's address to the next: the same address on the same line in every dump, but
    # another call (cid) each time, each younger than the span of the dumps.
    stack = serving(app(88, 'Client.get'), *RECV)
    dumps = [[greenlet(0x9500, stack, call=call('crm.get', f'c{index}', 1.2))] for index in range(3)]
    report = analyse(worker_dumps(dumps))
    assert 'stuck' not in [finding['kind'] for finding in report['findings']], report['findings']
    same = [[greenlet(0x9500, stack, call=call('crm.get', 'c0', 1.2 + 3 * index))] for index in range(3)]
    assert 'stuck' in [finding['kind'] for finding in analyse(worker_dumps(same))['findings']]


# ---- a lock of one slot entered again

class Account:
    def __init__(self, lock):
        self._lock = lock

    def helper(self):
        with self._lock:  # waits on itself here
            pass

    def outer(self):
        with self._lock:
            self.helper()


@pytest.mark.parametrize('make, deadlock', [
    (lambda: gevent.lock.BoundedSemaphore(1), True),
    (lambda: __import__('gevent.thread').thread.allocate_lock(), True),   # threading.Lock under patch_all
    # A semaphore of more slots may get one yet: a wait, not a deadlock.
    (lambda: gevent.lock.BoundedSemaphore(2), False),
])
def test_a_greenlet_entering_a_lock_of_one_slot_again_deadlocks_on_itself(spawned, make, deadlock):
    lock = make()
    if not deadlock:
        lock.acquire()  # one slot taken elsewhere: the greenlet holds the other and waits
    account = Account(lock)
    waiter = spawned(account.outer)
    gevent.sleep(0.01)
    records = []
    for index in range(2):
        item = json.loads(json.dumps(record_now()))
        item['time'] += 2 * index
        records.append(item)
    found = [finding for finding in analyse(records)['findings'] if id(waiter) in finding['greenlets']]
    assert [finding['kind'] for finding in found] == (['deadlock'] if deadlock else ['lock_wait']), found
    if deadlock:
        step, = found[0]['cycle']
        assert step['greenlet'] == step['held_by'] == id(waiter)
