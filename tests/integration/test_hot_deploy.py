"""Hot-deploy from the pickup directory against a real server with two workers: the master
checks each file in a disposable process, the workers deploy what it accepted."""

import hashlib
import json
import os
import signal
import textwrap

from tests.integration.helpers import call, wait_until, zato_daemon

SERVICE = '''\
import os
from zato_daemon import Service

class Version(Service):
    name = 'demo.version'

    def handle(self):
        self.response.payload = {{'version': {version}, 'pid': os.getpid()}}
'''


def drop(pickup_dir, name, text):
    """Writes a file the way operators should: in full, then renamed into place."""
    pickup_dir.mkdir(parents=True, exist_ok=True)
    temporary = pickup_dir / f'.{name}.tmp'
    temporary.write_text(textwrap.dedent(text))
    os.replace(temporary, pickup_dir / name)


def every_worker_answers(server, expected_version, service='demo.version'):
    """True once calls on new connections reached every worker and all saw `expected_version`."""
    seen = set()
    for _ in range(40):
        status, _, body = call(server.port, service)
        if status != 200 or body['version'] != expected_version:
            return False
        seen.add(body['pid'])
        if seen == set(server.worker_pids()):
            return True
    return False


def only_version_on_every_worker(server, expected_version):
    """Calls until every worker answered; each answer on the way must be `expected_version`.

    For what must hold at once (a replacement worker's code), where every_worker_answers
    polled until it holds: the kernel may hand many connections in a row to one worker.
    """
    seen = set()

    def every_worker_seen():
        status, _, body = call(server.port, 'demo.version')
        assert status == 200 and body['version'] == expected_version, (status, body)
        seen.add(body['pid'])
        return seen >= set(server.worker_pids())
    wait_until(every_worker_seen, interval=0.01, message=f'calls to reach every worker (version {expected_version})')


def refusals(server):
    return [line for line in server.log().splitlines() if 'Refused to deploy' in line]


def test_new_changed_broken_and_removed_files(server_factory):
    server = server_factory(workers=2)
    pickup = server.server_dir / 'pickup'
    drop(pickup, 'version.py', SERVICE.format(version=1))
    wait_until(lambda: every_worker_answers(server, 1), message='version 1 on every worker')

    drop(pickup, 'version.py', SERVICE.format(version=2))
    wait_until(lambda: every_worker_answers(server, 2), message='version 2 on every worker')

    broken = SERVICE.format(version=3).replace("name = 'demo.version'", "name = 'demo.version'\n    oops(")
    drop(pickup, 'version.py', broken)
    wait_until(lambda: refusals(server), message='the refusal')
    assert (f"Refused to deploy {pickup}/version.py:6: syntax error: '(' was never closed; the version "
            f"accepted before (sha256 ") in server.log()
    only_version_on_every_worker(server, 2)

    drop(pickup, 'raises.py', 'from zato_daemon import Service\nraise RuntimeError("at import")\n')
    wait_until(lambda: f'{pickup}/raises.py:2: exception while importing' in server.log(),
               message='the import-time exception with its line')

    (pickup / 'version.py').unlink()
    wait_until(lambda: call(server.port, 'demo.version')[0] == 404, message='the service to be undeployed')
    # One decision for every worker: each refusal is reported once, by the master.
    assert len(refusals(server)) == 2
    assert 'Hot-deploy failed' not in server.log()


def test_worker_started_with_a_broken_file_serves_the_last_good_copy(server):
    pickup = server.server_dir / 'pickup'
    drop(pickup, 'version.py', SERVICE.format(version=1))
    wait_until(lambda: every_worker_answers(server, 1), message='version 1')
    drop(pickup, 'version.py', 'this is not python')
    wait_until(lambda: refusals(server), message='the refusal')
    old_pid = server.worker_pids()[0]
    os.kill(old_pid, signal.SIGKILL)
    wait_until(lambda: server.worker_pids() and server.worker_pids()[0] != old_pid, message='a new worker')
    only_version_on_every_worker(server, 1)


def test_the_last_good_version_survives_a_restart(server_factory):
    server = server_factory()
    pickup = server.server_dir / 'pickup'
    drop(pickup, 'version.py', SERVICE.format(version=1))
    wait_until(lambda: every_worker_answers(server, 1), message='version 1')
    server.stop()
    drop(pickup, 'version.py', SERVICE.format(version=2) + 'raise RuntimeError("broken while stopped")\n')
    server.start()
    only_version_on_every_worker(server, 1)
    assert "RuntimeError('broken while stopped')" in refusals(server)[-1]


def test_module_hash_is_recorded(server):
    pickup = server.server_dir / 'pickup'
    drop(pickup, 'version.py', SERVICE.format(version=7))
    wait_until(lambda: every_worker_answers(server, 7), message='version 7')
    expected = hashlib.sha256((pickup / 'version.py').read_bytes()).hexdigest()
    info = json.loads(zato_daemon('invoke', server.server_dir, 'zato.service.get-source-info',
                                  '{"name": "demo.version"}').stdout)
    assert info['sha256'] == expected
    assert info['path'] == str(pickup / 'version.py')
    assert f'sha256 {expected}' in server.log()
    verify = zato_daemon('verify', server.server_dir, 'demo.version', pickup / 'version.py')
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_good_file_reaches_every_worker_within_a_few_poll_intervals(server_factory):
    # poll_interval is 0.1 s here: the master's scan, the probe (a fresh interpreter) and the
    # workers' next look at the manifest. Generous, since CI machines are shared.
    server = server_factory(workers=2)
    pickup = server.server_dir / 'pickup'
    drop(pickup, 'version.py', SERVICE.format(version=1))
    wait_until(lambda: every_worker_answers(server, 1), timeout=10, interval=0.02, message='version 1 within 10 s')
