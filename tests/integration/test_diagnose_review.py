"""`zato-daemon diagnose` attacked on real servers (a review of issue 19): services whose objects
would run code if the dump touched them and whose frames hold secrets, hostile files planted in
the records directory, a worker killed between rounds, idle servers in other configurations.

The probes reuse test_diagnose.py's Probes (a module dropped into the pickup directory, notes
written where each probe stays)."""

import json
import os
import signal
import threading
import time

import pytest

from tests.integration.helpers import call, wait_until
from tests.integration.test_diagnose import Probes, diagnose, finding_lines
from zato_daemon.dump.record import read_records, record_name

HOSTILE = '''\
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


def test_a_worker_killed_between_rounds_gives_a_clear_outcome(server_factory):
    server = server_factory(workers=2)
    victim = server.worker_pids()[0]
    started = time.monotonic()

    def kill_soon():
        time.sleep(1.5)
        os.kill(victim, signal.SIGKILL)
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
