"""Hot-deploy from the pickup directory against a real server with two workers."""

import os
import textwrap

from tests.integration.helpers import call, wait_until

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


def every_worker_answers(server, expected_version):
    """True once calls on new connections reached every worker and all saw `expected_version`."""
    seen = set()
    for _ in range(40):
        status, _, body = call(server.port, 'demo.version')
        if status != 200 or body['version'] != expected_version:
            return False
        seen.add(body['pid'])
        if seen == set(server.worker_pids()):
            return True
    return False


def test_new_changed_broken_and_removed_files(server_factory):
    server = server_factory(workers=2)
    pickup = server.server_dir / 'pickup'
    drop(pickup, 'version.py', SERVICE.format(version=1))
    wait_until(lambda: every_worker_answers(server, 1), message='version 1 on every worker')

    drop(pickup, 'version.py', SERVICE.format(version=2))
    wait_until(lambda: every_worker_answers(server, 2), message='version 2 on every worker')

    broken = SERVICE.format(version=3).replace("name = 'demo.version'", "name = 'demo.version'\n    oops(")
    drop(pickup, 'version.py', broken)
    wait_until(lambda: server.log().count('Hot-deploy failed') >= 2, message='both workers to report the error')
    assert f"{pickup}/version.py:6: syntax error: '(' was never closed" in server.log()
    assert every_worker_answers(server, 2)

    drop(pickup, 'raises.py', 'from zato_daemon import Service\nraise RuntimeError("at import")\n')
    wait_until(lambda: f'{pickup}/raises.py:2: exception while importing' in server.log(),
               message='the import-time exception with its line')

    (pickup / 'version.py').unlink()
    wait_until(lambda: call(server.port, 'demo.version')[0] == 404, message='the service to be undeployed')


def test_worker_started_with_a_broken_file_serves_the_last_good_copy(server):
    pickup = server.server_dir / 'pickup'
    drop(pickup, 'version.py', SERVICE.format(version=1))
    wait_until(lambda: every_worker_answers(server, 1), message='version 1')
    drop(pickup, 'version.py', 'this is not python')
    wait_until(lambda: 'Hot-deploy failed' in server.log(), message='the error')
    old_pid = server.worker_pids()[0]
    os.kill(old_pid, 9)
    wait_until(lambda: server.worker_pids() and server.worker_pids()[0] != old_pid, message='a new worker')
    assert every_worker_answers(server, 1)
    assert 'Serving the last good version of' in server.log()


def test_module_hash_is_recorded(server):
    import hashlib
    import json
    from tests.integration.helpers import zato_daemon
    pickup = server.server_dir / 'pickup'
    drop(pickup, 'version.py', SERVICE.format(version=7))
    wait_until(lambda: every_worker_answers(server, 7), message='version 7')
    expected = hashlib.sha256((pickup / 'version.py').read_bytes()).hexdigest()
    info = json.loads(zato_daemon('invoke', server.server_dir, 'zato.service.get-source-info',
                                  '{"name": "demo.version"}').stdout)
    assert info['sha256'] == expected
    assert info['path'] == str(pickup / 'version.py')
    assert f'sha256 {expected}' in server.log()
