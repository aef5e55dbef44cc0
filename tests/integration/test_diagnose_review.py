"""`zato-daemon diagnose` attacked on real servers (a review of issue 19): services whose objects
would run code if the dump touched them and whose frames hold secrets, hostile files planted in
the records directory, a worker killed between rounds, idle servers in other configurations.

The probes reuse test_diagnose.py's Probes (a module dropped into the pickup directory, notes
written where each probe stays)."""

import json
import os
import re
import signal
import threading
import time

import pytest

from tests.integration.helpers import call, wait_until, zato_daemon
from tests.integration.test_cluster import cluster_section, redis_server  # noqa: F401 (a fixture)
from tests.integration.test_diagnose import Probes, diagnose, finding_lines
from zato_daemon.dump.record import read_records, record_name
from zato_daemon.dump.trigger import DEFAULT_QUIET_PERIOD

HOSTILE = '''\
import re

import gevent
import gevent.lock

from zato_daemon import Service

RAN = [None]   # the file every hook below appends to: the dump must run none of them
KEPT = []


def ran(what):
    if RAN[0]:
        with open(RAN[0], 'a') as file:
            file.write(what + '\\n')


class HostileSemaphore(gevent.lock.Semaphore):
    def __eq__(self, other):
        ran('__eq__')
        return False

    def __hash__(self):
        ran('__hash__')
        return 1

    def __repr__(self):
        ran('__repr__')
        raise RuntimeError('no repr')

    def __str__(self):
        ran('__str__')
        gevent.sleep(3600)

    def __getattr__(self, name):
        ran(f'__getattr__ {name}')
        raise AttributeError(name)


class DictProperty:
    def __init__(self, lock):
        self.lock = lock

    @property
    def __dict__(self):
        ran('__dict__')
        return {}


class Slotted:
    __slots__ = ('lock',)

    def __init__(self, lock):
        self.lock = lock


class Hangs:
    def __repr__(self):
        ran('Hangs.__repr__')
        gevent.sleep(3600)


password_lock = HostileSemaphore(0)
SECRETS = {}


def note(service, state):
    with open(service.request.payload['notes'], 'a') as notes:
        notes.write(f'{service.name} {service.cid} {state}\\n')


class Hostile(Service):
    name = 'review.hostile'

    def handle(self):
        KEPT.append(gevent.getcurrent())
        RAN[0] = self.request.payload['ran']
        api_secret = self.request.payload['secret']
        holder, slotted, hangs = DictProperty(password_lock), Slotted(password_lock), Hangs()
        note(self, 'waiting')
        password_lock.acquire(); return dict(password='src-secret-4711', key=api_secret)  # hostile waits here


class Behind(Service):
    name = 'review.behind'

    def handle(self):
        KEPT.append(gevent.getcurrent())
        holder = DictProperty(gevent.lock.Semaphore(0))
        note(self, 'waiting')
        holder.lock.acquire()  # behind waits here


class Keyed(Service):
    name = 'review.keyed'

    def handle(self):
        KEPT.append(gevent.getcurrent())
        token = self.request.payload['token']
        SECRETS[token] = gevent.lock.Semaphore(0)
        note(self, 'waiting')
        with SECRETS[token]:  # keyed waits here
            pass


class Backtrack(Service):
    name = 'review.backtrack'

    def handle(self):
        note(self, 'matching')
        # Backtracking for tens of seconds inside the re module's C code, which holds the GIL:
        # not a bytecode runs meanwhile, not even the SIGURG handler.
        re.match(r'(a+)+$', 'a' * 30 + 'b')  # backtrack matches here


class Release(Service):
    name = 'review.release'

    def handle(self):
        RAN[0] = None
        gevent.killall(list(KEPT), block=False)
        del KEPT[:]
'''

SECRET, TOKEN = 'api-secret-8086', 'tok-secret-5150'


@pytest.fixture
def hostile(server_factory, tmp_path):
    made = Probes(server_factory(main='hang_timeout = 300'), tmp_path, module=HOSTILE, release='review.release')
    yield made
    made.release()


def everything_written(server, *outputs):
    """The CLI's outputs, the records and the journal-bound server.log, as one text."""
    records = read_records(server.server_dir / 'run' / 'dumps')
    return '\n'.join([*outputs, json.dumps(records), server.log()])


def test_hostile_objects_run_no_code_and_no_secret_is_written(hostile, tmp_path):
    ran = tmp_path / 'ran.txt'
    hostile.start('review.hostile', ran=str(ran), secret=SECRET)
    hostile.start('review.keyed', token=TOKEN)
    hostile.start('review.behind')
    for service in ('review.hostile', 'review.keyed', 'review.behind'):
        hostile.noted(service, 'waiting')
    text = diagnose(hostile.server)
    as_json = diagnose(hostile.server, '--json')
    assert text.returncode == 1 == as_json.returncode, text.stdout + text.stderr
    # The server keeps serving meanwhile.
    assert call(hostile.server.port, 'demo.echo', {'a': 1})[0] == 200
    assert not ran.exists(), ran.read_text()
    # Each of the three is a finding at its line (the hostile lock's waiter under its lock,
    # known by its class and named as the code names it); the others stuck where they wait.
    findings = json.loads(as_json.stdout)['findings']
    places = {finding['service']: finding['line'] for finding in findings if finding['kind'] == 'stuck'}
    lock_wait, = (finding for finding in findings if finding['kind'] == 'lock_wait')
    places.update((waiter['service'], waiter['line']) for waiter in lock_wait['waiters'])
    assert places == {service: line_of(HOSTILE, f'{service[7:]} waits here')
                      for service in ('review.hostile', 'review.keyed', 'review.behind')}, text.stdout
    assert 'password_lock (zato_deployed.probes.HostileSemaphore at 0x' in lock_wait['summary'], text.stdout
    written = everything_written(hostile.server, text.stdout, text.stderr, as_json.stdout)
    for secret in (SECRET, TOKEN, 'src-secret-4711'):
        assert secret not in written, secret


def line_of(module, marker):
    return next(number for number, line in enumerate(module.splitlines(), 1) if line.endswith(f'# {marker}'))


def planted_record(pid, at, server_dir, service='planted.service'):
    """A record of `pid` that would report a stuck call of `service` if diagnose believed it."""
    stack = [{'file': '/srv/evil.py', 'line': 1, 'function': 'evil', 'source_line': 'evil()'}]
    greenlet = {'address': 1, 'kind': 'gevent.Greenlet', 'state': 'suspended', 'is_main': False, 'is_hub': False,
                'runs': 'evil', 'spawn_site': None, 'stack': 'f' * 16, 'frames_cut': 0, 'waits_on': None,
                'holds': [], 'call': {'cid': 'planted', 'service': service, 'started': at - 100, 'age': 100}}
    return {'record_version': 1, 'pid': pid, 'role': 'master', 'server_dir': str(server_dir), 'time': at,
            'dump_id': 'planted', 'duration': 0.0, 'heartbeat_age': None, 'stacks': {'f' * 16: stack},
            'threads': [], 'greenlets': [greenlet], 'objects': [],
            'calls': [{**greenlet['call'], 'greenlet': 1}]}


def test_files_planted_in_the_records_directory_do_not_fool_or_block_diagnose(server, tmp_path):
    dumps = server.server_dir / 'run' / 'dumps'
    assert call(server.port, 'demo.echo', {})[0] == 200
    wait_until(lambda: server.status() and server.status()['workers'], message='the workers')
    dumps.mkdir(exist_ok=True)
    master, (worker,) = server.pid, server.worker_pids()
    future = time.time() + 3600
    # A record of the master dated an hour ahead: it would answer every round and be analysed.
    (dumps / record_name(master, int(future * 1e9))).write_text(json.dumps(planted_record(master, future,
                                                                                          server.server_dir)))
    # A valid-looking record outside, behind a symlink; /etc/shadow; a FIFO; a big sparse file.
    outside = tmp_path / 'outside.json'
    outside.write_text(json.dumps(planted_record(worker, future - 1, server.server_dir)))
    (dumps / record_name(worker, int((future - 1) * 1e9))).symlink_to(outside)
    (dumps / record_name(worker, int((future - 2) * 1e9))).symlink_to('/etc/shadow')
    os.mkfifo(dumps / record_name(master, int((future - 3) * 1e9)))
    with open(dumps / record_name(worker, int((future - 4) * 1e9)), 'wb') as big:
        big.truncate(2 * 1024 ** 3)
    (dumps / record_name(worker, int((future - 5) * 1e9))).write_text('not json')
    started = time.monotonic()
    result = diagnose(server)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'planted.service' not in result.stdout and 'evil.py' not in result.stdout
    assert took < 20, took


@pytest.mark.parametrize('change', ['kill', 'reload'])
def test_a_worker_killed_or_a_reload_between_rounds_gives_a_clear_outcome(server_factory, change):
    server = server_factory(workers=2)
    victim = server.worker_pids()[0]
    started = time.monotonic()

    def kill_soon():
        time.sleep(1.5)
        if change == 'kill':
            os.kill(victim, signal.SIGKILL)
        else:
            server.signal(signal.SIGHUP)  # every worker replaced, the new ones first
    killer = threading.Thread(target=kill_soon, daemon=True)
    killer.start()
    result = diagnose(server, '--json')
    killer.join()
    took = time.monotonic() - started
    assert 'Traceback' not in result.stderr, result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report['problems'] == 0, report['findings']
    assert took < 20, took


@pytest.mark.parametrize('options', [
    {'workers': 4},
    {'sections': '[metrics]\nenabled = false\n[component_enabled]\nhot_deploy = false\n'},
], ids=['4-workers', 'metrics-and-hot-deploy-off'])
def test_an_idle_server_in_another_configuration_has_nothing_to_report(server_factory, options):
    server = server_factory(**options)
    result = diagnose(server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith('zato-daemon: nothing found, 0 calls in flight; ')


def test_an_idle_cluster_member_with_redis_has_nothing_to_report(server_factory, redis_server):
    redis = redis_server()
    server = server_factory(sections=cluster_section(redis.port, 'review-host'))
    result = diagnose(server)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_worker_recycled_during_diagnose_is_no_finding_and_no_69(server_factory):
    server = server_factory(workers=2, main='max_requests = 20\nmax_requests_jitter = 0')
    stop = threading.Event()
    served = []

    def drive():
        # Enough calls to recycle each worker once or twice while the rounds run.
        while not stop.is_set() and len(served) < 200:
            served.append(call(server.port, 'demo.echo', {})[0])
            stop.wait(0.02)
    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        result = diagnose(server, '--json')
    finally:
        stop.set()
        driver.join(30)
    assert 'Traceback' not in result.stderr, result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(served) == {200}


def test_the_records_directory_deleted_then_a_file_in_its_place(server):
    dumps = server.server_dir / 'run' / 'dumps'
    assert diagnose(server).returncode == 0
    for path in dumps.iterdir():
        path.unlink()
    dumps.rmdir()
    # (A signal within the trigger's quiet period of the last dump would be folded into that
    # dump, whose record is gone.)
    time.sleep(DEFAULT_QUIET_PERIOD + 0.2)
    result = diagnose(server)
    assert result.returncode == 0, result.stdout + result.stderr  # the first dump makes it again
    for path in dumps.iterdir():
        path.unlink()
    dumps.rmdir()
    dumps.write_text('')
    started = time.monotonic()
    result = diagnose(server)
    assert result.returncode == 69 and time.monotonic() - started < 5, result.stderr
    assert result.stderr.strip().endswith(f'{dumps} is not a directory, so no dump can write its record there; '
                                          'remove it (the next dump makes the directory)'), result.stderr
    assert '\n' not in result.stderr.strip() and 'Traceback' not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason='mounts a tmpfs')
def test_a_full_records_directory_is_a_clear_69_and_the_server_serves_on(server, tmp_path):
    import subprocess
    dumps = server.server_dir / 'run' / 'dumps'
    dumps.mkdir(exist_ok=True)
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', str(dumps)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f'cannot mount a tmpfs: {mounted.stderr.decode().strip()}')
    try:
        (dumps / 'filler').write_bytes(b'\0' * 60 * 1024)
        result = zato_daemon('diagnose', server.server_dir, '--dumps', 2, '--interval', 1, timeout=90)
        assert result.returncode == 69, result.stdout + result.stderr
        # The master's small record may fit; the worker's does not.
        assert re.search(rf'no dump record from (master pid {server.pid}, )?worker-1 pid \d+ within 10 s',
                         result.stderr), result.stderr
        assert 'DUMP_FAILED' in result.stderr and 'Traceback' not in result.stderr
        assert call(server.port, 'demo.echo', {})[0] == 200
        assert 'No space left on device' in server.log()
        # A failed record is not left behind half-written.
        assert not [path.name for path in dumps.iterdir() if path.name.startswith('.')]
    finally:
        subprocess.run(['umount', '-l', str(dumps)], check=False)


def test_a_worker_inside_c_code_holding_the_gil_is_named_with_that_cause(hostile):
    hostile.start('review.backtrack')
    hostile.noted('review.backtrack', 'matching')
    worker, = hostile.server.worker_pids()
    time.sleep(0.5)  # into re.match
    started = time.monotonic()
    try:
        result = diagnose(hostile.server)
    finally:
        os.kill(worker, signal.SIGKILL)  # rather than wait for the match to end
    assert result.returncode == 69, result.stdout + result.stderr
    assert time.monotonic() - started < 20
    message = result.stderr.strip()
    assert f'no dump record from worker-1 pid {worker} within 10 s' in message and '\n' not in message
    assert 'inside C code that holds the interpreter (a long regular expression' in message


POOL = '''\
import time

import gevent

from zato_daemon import Service


class Pooled(Service):
    name = 'review.pooled'

    def handle(self):
        # A task in gevent's thread pool, a real OS thread, then the pool idles.
        self.response.payload = {'slept': gevent.get_hub().threadpool.spawn(time.sleep, 0.01).get() is None}
'''


def test_an_idle_thread_pool_after_a_task_has_nothing_to_report(server):
    pickup = server.server_dir / 'pickup'
    pickup.mkdir(exist_ok=True)
    (server.server_dir / 'pool.tmp').write_text(POOL)
    (server.server_dir / 'pool.tmp').rename(pickup / 'pool.py')
    wait_until(lambda: call(server.port, 'review.pooled', {})[0] == 200, message='the pool probe to deploy')
    result = diagnose(server)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_master_stopping_during_diagnose_is_a_clear_69(server):
    def stop_soon():
        time.sleep(1.5)
        server.signal(signal.SIGTERM)
        server.wait_exit()  # reaped: under systemd, the master is not the test's child
    stopper = threading.Thread(target=stop_soon, daemon=True)
    stopper.start()
    started = time.monotonic()
    result = diagnose(server)
    stopper.join()
    assert result.returncode == 69, result.stdout + result.stderr
    assert time.monotonic() - started < 15
    message = result.stderr.strip()
    assert '\n' not in message and 'Traceback' not in message
    assert f'master pid {server.pid} ' in message, message
    assert 'exited' in message or 'no server is running' in message, message


def test_two_operators_running_diagnose_at_once_both_get_a_report(server):
    results = []

    def run():
        results.append(diagnose(server, '--json'))
    runners = [threading.Thread(target=run) for _ in range(2)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(120)
    assert [result.returncode for result in results] == [0, 0], [result.stderr for result in results]
    for result in results:
        assert all(process['dumps'] >= 2 for process in json.loads(result.stdout)['processes'])


REENTER = '''\
import threading

import gevent

from zato_daemon import Service

KEPT = []


class Ledger:
    def __init__(self):
        self._lock = threading.Lock()   # gevent's, under patch_all

    def post(self, notes, cid):
        with self._lock:
            with open(notes, 'a') as file:
                file.write(f'review.reenter {cid} waiting\\n')
            self.balance()

    def balance(self):
        with self._lock:  # reenter waits here
            pass


class Reenter(Service):
    name = 'review.reenter'

    def handle(self):
        KEPT.append(gevent.getcurrent())
        Ledger().post(self.request.payload['notes'], self.cid)


class ReenterRelease(Service):
    name = 'review.reenter-release'

    def handle(self):
        gevent.killall(list(KEPT), block=False)
        del KEPT[:]
'''


def test_a_service_entering_its_own_lock_again_is_a_deadlock_of_one(server_factory, tmp_path):
    probes = Probes(server_factory(), tmp_path, module=REENTER, release='review.reenter-release')
    try:
        probes.start('review.reenter')
        cid, = probes.noted('review.reenter', 'waiting')
        result = diagnose(probes.server)
    finally:
        probes.release()
    assert result.returncode == 1, result.stdout + result.stderr
    deadlock, = finding_lines(result.stdout, 'DEADLOCK')
    assert f'review.reenter, cid {cid}' in deadlock and 'self._lock' in deadlock, result.stdout
    assert f'probes.py:{line_of(REENTER, "reenter waits here")}' in deadlock
    assert not finding_lines(result.stdout, 'LOCK WAIT') and not finding_lines(result.stdout, 'STUCK')
