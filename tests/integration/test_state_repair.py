"""Databases of the state directory deleted while a real server runs: noticed and recreated.

The diagnostics database: calls made after its deletion are listed by `zato-daemon slow`
again within seconds. The cache database, deleted and then a worker killed: the new worker
and the old one end on one new file, and a value set through one is read through every one.
Each repair is one WARNING naming the file; every other worker logs an INFO when it moves.
"""

import json
import os
import signal

from tests.integration.helpers import call, wait_until, zato_daemon

REPAIR_WAIT = 10.0

REMEMBER = '''\
from zato_daemon import Service

class Remember(Service):
    name = 'demo.remember'

    def handle(self):
        payload = self.request.payload
        cache = self.caches['sessions']
        if 'value' in payload:
            cache.set(payload['key'], payload['value'])
        self.response.payload = {'value': cache.get(payload['key']), 'pid': self.server.pid}
'''


def slow_rows(server):
    result = zato_daemon('slow', server.server_dir, '--json')
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def log_lines(server, *fragments):
    return [line for line in server.log().splitlines() if all(fragment in line for fragment in fragments)]


def moved(server, database, pid):
    """The line a worker logs when it has moved to the new file: the WARNING or an INFO."""
    return log_lines(server, f':{pid} ', f'database {database} was deleted')


def wait_until_every_worker_moved(server, database, pids):
    wait_until(lambda: all(moved(server, database, pid) for pid in pids), REPAIR_WAIT,
               message=f'workers {pids} to move to the new {database.name}:\n{server.log()[-3000:]}')


def remember(server, payload, pid=None):
    """Calls demo.remember until worker `pid` answers (any worker when None); its answer.

    Each call is a new connection, which any worker may accept. A set lands on every worker
    that answered; callers give each attempt its own key when that matters.
    """
    def answer():
        status, _, body = call(server.port, 'demo.remember', payload() if callable(payload) else payload)
        assert status == 200, body
        return body if pid is None or body['pid'] == pid else None
    return wait_until(answer, message=f'worker {pid} to answer')


def test_a_deleted_diagnostics_database_is_recreated_and_used_again(server_factory):
    server = server_factory(workers=2, sections='[slow_thresholds]\ndemo.sleep = 1\n')
    database = server.server_dir / 'state' / 'diagnostics.sqlite3'
    # Until both workers have stored a call: each then has the file open.
    wait_until(lambda: call(server.port, 'demo.sleep', {'seconds': 0.01}) and
               {row['worker'] for row in slow_rows(server)} == {1, 2}, message='both workers to store a slow call')
    stored = {row['cid'] for row in slow_rows(server)}
    database.unlink()
    after = [call(server.port, 'demo.sleep', {'seconds': 0.01})[1]['x-zato-cid'] for _ in range(4)]
    listed = wait_until(lambda: (lambda cids: cids if set(after) <= cids else None)(
        {row['cid'] for row in slow_rows(server)}), REPAIR_WAIT, message='the calls made after the deletion')
    # The rows stored before went with the file (calls still queued then are written now).
    assert not listed & stored
    wait_until_every_worker_moved(server, database, server.worker_pids())
    warnings = log_lines(server, ' WARNING ', f'Diagnostics database {database} was deleted')
    assert len(warnings) == 1, warnings


def test_a_deleted_cache_database_and_a_killed_worker_end_on_one_file(server_factory):
    server = server_factory(workers=2, start=False, sections='[caches]\nsessions = sync_method=in-background\n')
    # Configured, not picked up: every worker, the replacement included, has it at boot.
    (server.server_dir / 'remember.py').write_text(REMEMBER)
    conf = server.server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace('[services]\n', f'[services]\npaths = {server.server_dir}/remember.py\n'))
    server.start()
    database = server.server_dir / 'state' / 'caches.sqlite3'
    killed, survivor = server.worker_pids()
    database.unlink()
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: len(server.worker_pids()) == 2 and killed not in server.worker_pids(), message='a new worker')
    [replacement] = [pid for pid in server.worker_pids() if pid != survivor]
    # Whichever opened the new file first knowing of the deletion reported it: the survivor,
    # or the replacement (it finds the deleted file's -wal and -shm beside no file).
    wait_until_every_worker_moved(server, database, [survivor])
    warnings = wait_until(lambda: log_lines(server, ' WARNING ', f'Cache database {database} was deleted'),
                          REPAIR_WAIT, message='the WARNING')
    assert len(warnings) == 1, warnings
    # Set through one worker, read through every worker; then the other way round.
    for writer, reader in ((replacement, survivor), (survivor, replacement)):
        attempt = iter(range(1000))
        key = None

        def set_once():
            nonlocal key
            key = f'set-by-{writer}-{next(attempt)}'
            return {'key': key, 'value': writer}
        remember(server, set_once, writer)
        for pid in (writer, reader):
            wait_until(lambda: remember(server, {'key': key}, pid)['value'] == writer,
                       message=f'worker {pid} to read {key}')
    assert database.exists()
    assert len(log_lines(server, ' WARNING ', f'Cache database {database} was deleted')) == 1
