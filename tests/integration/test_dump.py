"""SIGURG dumps and hung workers against real servers: when a greenlet spins, when another
thread holds the logging lock, with hostile values, in a storm, fanned out by the master."""

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from tests.integration.helpers import call, wait_until, zato_daemon

DUMP_HEADER = re.compile(r'^==== zato-daemon dump (\w+): (master|worker-\d+), pid (\d+)', re.M)

HOSTILE = '''\
import logging
import threading
import time

from gevent import monkey

from zato_daemon import Service

class RaisingRepr:
    def __repr__(self):
        raise RuntimeError('repr must never be called')

class Spin(Service):
    """Spins the CPU without yielding: the hub is blocked until `seconds` pass."""
    name = 'demo.spin'

    def handle(self):
        password = 'spin-secret-value'
        hostile = RaisingRepr()
        huge = 'x' * 5_000_000
        deadline = time.monotonic() + self.request.payload['seconds']
        spins = 0
        while time.monotonic() < deadline:
            spins += 1
        self.response.payload = {'spins': spins}

class HoldLoggingLock(Service):
    """Holds logging's module lock from a real OS thread for `seconds`."""
    name = 'demo.hold-logging-lock'

    def handle(self):
        seconds = self.request.payload['seconds']

        def hold():
            logging._acquireLock()
            try:
                monkey.get_original('time', 'sleep')(seconds)
            finally:
                logging._releaseLock()
        monkey.get_original('_thread', 'start_new_thread')(hold, ())
        self.response.payload = {'holding': seconds}
'''


def deploy_hostile(server):
    pickup = server.server_dir / 'pickup'
    pickup.mkdir(exist_ok=True)
    (server.server_dir / 'hostile.tmp').write_text(HOSTILE)
    (server.server_dir / 'hostile.tmp').rename(pickup / 'hostile.py')
    wait_until(lambda: call(server.port, 'demo.spin', {'seconds': 0})[0] == 200, message='the hostile services')


def dumps(server):
    """(dump id, role, pid) of every dump in server.log, in order."""
    return DUMP_HEADER.findall(server.log())


def dump_text(server, pid):
    """The text of the last dump written by `pid`."""
    log = server.log()
    start = log.rindex(f', pid {pid}, ')
    start = log.rindex('==== zato-daemon dump', 0, start)
    return log[start:log.index('==== end of zato-daemon dump', start)]


def test_a_spinning_greenlet_is_in_its_workers_dump(server):
    deploy_hostile(server)
    worker = server.worker_pids()[0]
    with ThreadPoolExecutor(1) as pool:
        spinning = pool.submit(call, server.port, 'demo.spin', {'seconds': 3})
        time.sleep(0.5)  # let the request reach the spin loop
        before = len(dumps(server))
        started = time.monotonic()
        os.kill(worker, signal.SIGURG)
        wait_until(lambda: len(dumps(server)) > before, message='the dump')
        assert time.monotonic() - started < 2.5, 'the dump waited for the spinning greenlet'
        assert spinning.result(timeout=20)[0] == 200
    text = dump_text(server, worker)
    assert 'in Spin.handle' in text
    assert 'while time.monotonic() < deadline:' in text or 'spins += 1' in text
    assert re.search(r'spins=\d+', text)
    assert 'password=******' in text and 'spin-secret-value' not in server.log()
    assert 'repr must never be called' not in text
    assert len(text) < 600 * 1024


def test_a_dump_is_written_while_another_thread_holds_the_logging_lock(server):
    deploy_hostile(server)
    worker = server.worker_pids()[0]
    call(server.port, 'demo.hold-logging-lock', {'seconds': 4})
    before = len(dumps(server))
    started = time.monotonic()
    os.kill(worker, signal.SIGURG)
    wait_until(lambda: len(dumps(server)) > before, timeout=3.5, message='the dump while the lock is held')
    assert time.monotonic() - started < 3.5


def test_master_fans_out_one_dump_per_process(server_factory):
    server = server_factory(workers=2)
    os.kill(server.pid, signal.SIGURG)
    expected = {server.pid, *server.worker_pids()}
    wait_until(lambda: {int(pid) for _, _, pid in dumps(server)} == expected, message='a dump from every process')
    time.sleep(1.5)  # anything doubled by the fan-out would show up by now
    assert sorted(int(pid) for _, _, pid in dumps(server)) == sorted(expected)
    roles = sorted(role for _, role, _ in dumps(server))
    assert roles == ['master', 'worker-1', 'worker-2']


def test_a_process_reached_twice_dumps_once_and_a_storm_gives_few_dumps(server_factory):
    server = server_factory(workers=2)
    pids = [server.pid, *server.worker_pids()]
    for pid in pids:  # what `systemctl kill -s SIGURG` does: every process, the master too
        os.kill(pid, signal.SIGURG)
    wait_until(lambda: len(dumps(server)) >= 3, message='the dumps')
    time.sleep(1.5)
    assert len(dumps(server)) == 3
    for _ in range(100):
        os.kill(server.pid, signal.SIGURG)
    wait_until(lambda: len(dumps(server)) >= 6, message='the storm dumps')
    time.sleep(2)
    assert 6 <= len(dumps(server)) <= 12
    assert call(server.port, 'demo.echo', {'after': 'storm'})[2] == {'after': 'storm'}
    assert server.worker_pids() == sorted(pids[1:])


def test_dump_command_and_foreground_stdout(server):
    result = zato_daemon('dump', server.server_dir)
    assert result.returncode == 0
    assert f'dump requested from master pid {server.pid}' in result.stdout
    assert 'journalctl -o cat MESSAGE_ID=' in result.stdout
    wait_until(lambda: len(dumps(server)) == 2, message='the dumps')
    wait_until(lambda: server.output().count('==== end of zato-daemon dump') == 2, message='the dumps on stdout')


def test_a_hung_worker_is_dumped_and_replaced_while_the_other_serves(server_factory):
    # In the pickup directory before the start: every worker has demo.spin when it is ready.
    server = server_factory(workers=2, main='hang_timeout = 2', start=False)
    (server.server_dir / 'pickup').mkdir()
    (server.server_dir / 'pickup' / 'hostile.py').write_text(HOSTILE)
    server.start()
    before = set(server.worker_pids())
    with ThreadPoolExecutor(1) as pool:
        pool.submit(call, server.port, 'demo.spin', {'seconds': 30})
        wait_until(lambda: 'its hub is blocked; dumping it, then replacing it' in server.log(), timeout=20,
                   message='the hang to be noticed')
        hung_pid = int(re.search(r'Worker \d \(pid (\d+)\) sent no heartbeat', server.log()).group(1))
        # The other worker serves meanwhile.
        assert call(server.port, 'demo.echo', {'still': 'serving'})[2] == {'still': 'serving'}
        wait_until(lambda: hung_pid not in server.worker_pids() and len(server.worker_pids()) == 2,
                   message='the hung worker to be replaced')
    text = dump_text(server, hung_pid)
    assert 'in Spin.handle' in text and re.search(r'spins=\d+', text)
    assert f'(pid {hung_pid}) was killed by SIGKILL; restarting it' in server.log()
    assert set(server.worker_pids()) != before


def test_after_a_reload_the_masters_dumps_follow_the_new_server_log(server):
    moved = server.server_dir / 'moved' / 'server.log'
    moved.parent.mkdir()
    conf = server.server_dir / 'server.conf'
    conf.write_text(conf.read_text() + f'\n[logging]\nserver_log = {moved}\ndump_max_size = 64K\n')
    server.signal(signal.SIGHUP)
    wait_until(lambda: moved.exists() and 'Reload complete' in moved.read_text(), message='the reload')
    os.kill(server.pid, signal.SIGURG)
    wait_until(lambda: f'master, pid {server.pid}' in moved.read_text(), message="the master's dump in the new file")
    assert f'master, pid {server.pid}' not in server.log()
