"""Each exit status of the command line, against real servers and real processes: a bad
command line (64), a directory that is not a server directory (66), a user outside the
server's group or one who may not signal its master (77), a master found with its pidfile
gone, a payload over max_request_size, and `reload` waiting for its outcome (0, 78, 69).
"""

import grp
import importlib
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.helpers import (ServerProcess, _env, call, free_port, request, wait_until, write_server_dir,
                                       zato_daemon)
from zato_daemon.paths import ServerDir
from zato_daemon.running import find_master, is_master_of, master_title


def _master_publishes_reload():
    try:
        return hasattr(importlib.import_module('zato_daemon.master.arbiter'), 'RELOAD_STATUS_KEY')
    except ImportError:
        return False


MASTER_PUBLISHES_RELOAD = _master_publishes_reload()
needs_reload_status = pytest.mark.skipif(not MASTER_PUBLISHES_RELOAD,
                                         reason='the master does not publish the outcome of a reload yet')
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason='runs commands as another user')
NOBODY = pwd.getpwnam('nobody')


def as_nobody(*args, groups=()):
    """The CLI as user nobody, with only `groups` besides its own: root's supplementary groups
    would otherwise follow it and grant what the server's group grants."""
    return subprocess.run([sys.executable, '-m', 'zato_daemon', *map(str, args)], capture_output=True, text=True,
                          timeout=60, cwd=REPO_ROOT, env=_env(), user=NOBODY.pw_uid, group=NOBODY.pw_gid,
                          extra_groups=list(groups))


def one_line(result):
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert 'Traceback' not in result.stderr
    return lines[0]


# ---- 64: a bad command line

@pytest.mark.parametrize('args, says', [
    (('restart',), "invalid choice: 'restart'"),
    (('stop', '--force'), 'unrecognized arguments: --force'),
    (('samples', '/etc/zato-daemon'), 'the following arguments are required: SERVICE'),
])
def test_a_bad_command_line_exits_64(args, says):
    result = zato_daemon(*args)
    assert result.returncode == 64
    assert result.stderr.startswith('usage: zato-daemon')
    assert says in result.stderr.splitlines()[-1]


# ---- 66: not a server directory

ON_A_SERVER = [('stop',), ('reload',), ('dump',), ('info',), ('invoke', 'demo.echo', '{}'),
               ('verify', 'demo.echo', __file__), ('slow',), ('samples', 'demo.echo'), ('top', '--once')]


@pytest.mark.parametrize('args', ON_A_SERVER, ids=lambda args: args[0])
def test_a_directory_without_server_conf_is_not_a_server_directory(tmp_path, args):
    result = zato_daemon(args[0], tmp_path, *args[1:])
    assert (result.returncode, result.stdout) == (66, '')
    assert one_line(result) == f'zato-daemon: {tmp_path} is not a server directory: it holds no server.conf'


def test_a_missing_directory_or_a_file_is_not_a_server_directory(tmp_path):
    missing = zato_daemon('stop', tmp_path / 'nope')
    assert missing.returncode == 66
    assert one_line(missing) == (f'zato-daemon: {tmp_path}/nope: no such directory; pass the server directory '
                                 'that holds server.conf')
    (tmp_path / 'file').write_text('')
    a_file = zato_daemon('info', tmp_path / 'file')
    assert a_file.returncode == 66
    assert one_line(a_file).startswith(f'zato-daemon: {tmp_path}/file: not a directory;')


# ---- 77: permission denied

@pytest.fixture
def shared_server():
    """A running server in a directory every user may enter, as a packaged one is (tmp_path's
    parents are 0700); it makes its runtime, state and logs directories 0750 root:root."""
    base = Path(tempfile.mkdtemp(prefix='zato-cli-', dir='/tmp'))
    base.chmod(0o755)
    port = free_port()
    server = ServerProcess(write_server_dir(base / 'server', port), port)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(base)


@needs_root
def test_a_user_outside_the_servers_group_is_told_so_by_every_command(shared_server):
    server_dir = shared_server.server_dir
    for name in ('run', 'state'):
        info = (server_dir / name).stat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o750, 0, 0)
    workers = shared_server.worker_pids()
    for args in ON_A_SERVER + [('info', '--json'), ('slow', 'demo.echo', '--json')]:
        result = as_nobody(args[0], server_dir, *args[1:])
        assert (result.returncode, result.stdout) == (77, ''), (args, result.stderr)
        denied = 'state/diagnostics.sqlite3' if args[0] in ('slow', 'samples') else 'run/zato-daemon.pid'
        # run/ is root's group: joining it is no advice to give.
        assert one_line(result) == f'zato-daemon: {server_dir}/{denied}: permission denied; run as root', args
    assert shared_server.process.poll() is None
    assert shared_server.worker_pids() == workers
    assert call(shared_server.port, 'demo.echo', {'still': 'serving'})[2] == {'still': 'serving'}


@needs_root
def test_a_member_of_the_group_may_ask_but_not_signal(shared_server):
    server_dir = shared_server.server_dir
    info = as_nobody('info', server_dir, '--json', groups=[0])
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)['master_proc_pid'] == shared_server.pid
    invoked = as_nobody('invoke', server_dir, 'demo.echo', '{"a": 1}', '--json', groups=[0])
    assert (invoked.returncode, invoked.stdout) == (0, '{"a":1}\n')
    for command in ('stop', 'reload', 'dump'):
        result = as_nobody(command, server_dir, groups=[0])
        assert (result.returncode, result.stdout) == (77, ''), (command, result.stderr)
        assert one_line(result) == (f'zato-daemon: may not send a signal to master pid {shared_server.pid} '
                                    '(it runs as user root); run as root')
    # A socket the group may not use (another mode than the server's 0660).
    (server_dir / 'run' / 'admin.sock').chmod(0o600)
    result = as_nobody('info', server_dir, groups=[0])
    assert (result.returncode, result.stdout) == (77, '')
    assert one_line(result) == f'zato-daemon: {server_dir}/run/admin.sock: permission denied; run as root'
    (server_dir / 'run' / 'admin.sock').chmod(0o660)
    assert shared_server.process.poll() is None
    assert call(shared_server.port, 'demo.echo', {'still': 'serving'})[2] == {'still': 'serving'}


@needs_root
def test_a_server_conf_the_user_may_not_read_is_77_naming_it_and_the_group():
    base = Path(tempfile.mkdtemp(prefix='zato-cli-', dir='/tmp'))
    try:
        base.chmod(0o755)
        server_dir = write_server_dir(base / 'server', free_port())
        (server_dir / 'server.conf').chmod(0o640)
        os.chown(server_dir / 'server.conf', 0, grp.getgrnam('adm').gr_gid)
        for args in ON_A_SERVER:
            result = as_nobody(args[0], server_dir, *args[1:])
            assert (result.returncode, result.stdout) == (77, ''), (args, result.stderr)
            assert one_line(result) == (f'zato-daemon: {server_dir}/server.conf: permission denied; run as root, '
                                        'or as a member of group adm (adduser $USER adm, then log in again)')
    finally:
        shutil.rmtree(base)


# ---- finding the master without its pidfile

@pytest.mark.parametrize('deleted', ['run/zato-daemon.pid', 'run'])
def test_stop_finds_a_master_whose_runtime_files_were_deleted(server_factory, deleted):
    server = server_factory()
    path = server.server_dir / deleted
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    result = zato_daemon('stop', server.server_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f'zato-daemon: stopped master pid {server.pid} in ')
    assert server.wait_exit() == 0


@pytest.fixture
def titled_process():
    """Starts processes that give themselves the title a master of DIR has, and wait."""
    processes = []

    def start(directory, user=None):
        script = ('import sys, time, setproctitle; setproctitle.setproctitle(sys.argv[1]); '
                  'print("titled", flush=True); time.sleep(120)')
        process = subprocess.Popen([sys.executable, '-c', script, master_title(directory)], stdout=subprocess.PIPE,
                                   cwd=REPO_ROOT, env=_env(), user=user)
        processes.append(process)
        assert process.stdout.readline() == b'titled\n'
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait()
        process.stdout.close()


def test_a_master_is_found_by_its_title_alone(tmp_path, titled_process):
    server_dir = write_server_dir(tmp_path / 'a', free_port())
    master = titled_process(server_dir)
    titled_process(f'{server_dir}b')
    titled_process(server_dir / 'sub')
    assert not (server_dir / 'run').exists()
    assert find_master(ServerDir(server_dir)) == master.pid
    assert find_master(ServerDir(tmp_path / 'other')) is None
    (tmp_path / 'link').symlink_to(server_dir)
    assert find_master(ServerDir(tmp_path / 'link')) == master.pid
    assert is_master_of(master.pid, ServerDir(server_dir))

    result = zato_daemon('stop', server_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f'zato-daemon: stopped master pid {master.pid} in ')
    assert master.wait(10) == -signal.SIGTERM
    assert not is_master_of(master.pid, ServerDir(server_dir))


def test_master_json_counts_only_for_a_process_with_the_title(tmp_path, titled_process):
    server_dir = write_server_dir(tmp_path / 'a', free_port())
    (server_dir / 'run').mkdir()
    status_file = server_dir / 'run' / 'master.json'
    status_file.write_text(json.dumps({'master_proc_pid': os.getpid()}))
    assert find_master(ServerDir(server_dir)) is None
    master = titled_process(server_dir)
    status_file.write_text(json.dumps({'master_proc_pid': master.pid}))
    assert find_master(ServerDir(server_dir)) == master.pid


@needs_root
def test_a_process_of_another_user_with_a_masters_title_is_not_taken_for_it(tmp_path, titled_process):
    server_dir = write_server_dir(tmp_path / 'a', free_port())
    stranger = titled_process(server_dir, user=NOBODY.pw_uid)
    assert find_master(ServerDir(server_dir)) is None
    result = zato_daemon('stop', server_dir)
    assert (result.returncode, result.stdout) == (0, f'zato-daemon: not running in {server_dir}\n')
    assert stranger.poll() is None


# ---- invoke: a payload over max_request_size

def test_invoke_with_a_payload_over_max_request_size_says_so(server_factory):
    server = server_factory(main='max_request_size = 1000')
    payload = json.dumps({'x': 'a' * 5000})
    result = zato_daemon('invoke', server.server_dir, 'demo.echo', payload)
    assert (result.returncode, result.stdout) == (64, '')
    assert one_line(result) == (f'zato-daemon: the payload is {len(payload)} bytes, over max_request_size 1000; '
                                'send less, or raise [main] max_request_size and reload')
    # server.conf changed since the server read it: its 413 tells, even when it cuts the upload short.
    conf = server.server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace('max_request_size = 1000', 'max_request_size = 100M'))
    for size in (5000, 5_000_000):
        payload = json.dumps({'x': 'a' * size})
        result = zato_daemon('invoke', server.server_dir, 'demo.echo', '-', input=payload)
        assert (result.returncode, result.stdout) == (64, '')
        assert one_line(result).startswith(f'zato-daemon: the payload is {len(payload)} bytes, over the '
                                           'max_request_size of the server;')
    assert zato_daemon('invoke', server.server_dir, 'demo.echo', '{"x": 1}').returncode == 0


# ---- reload waits for its outcome

def add_channel(server, path):
    conf = server.server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace('[channels]\n', f'[channels]\n{path} = demo.echo\n'))


@needs_reload_status
def test_reload_exits_0_once_the_change_serves(server_factory):
    server = server_factory()
    add_channel(server, '/later')
    result = zato_daemon('reload', server.server_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('zato-daemon: reload applied in ')
    assert request(server.port, 'POST', '/later', {'a': 1})[0] == 200


@needs_reload_status
def test_reload_of_a_broken_config_exits_78_with_the_reason(server_factory):
    server = server_factory()
    workers = server.worker_pids()
    conf = server.server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace('[main]\n', '[main]\nno_such_key = 1\n'))
    result = zato_daemon('reload', server.server_dir)
    assert (result.returncode, result.stdout) == (78, '')
    line = one_line(result)
    assert line.startswith('zato-daemon: reload refused, the server keeps its previous configuration: '
                           f'{conf}:2: [main] no_such_key: ')
    assert server.worker_pids() == workers
    assert call(server.port, 'demo.echo', {'still': 'serving'})[2] == {'still': 'serving'}


@needs_reload_status
def test_two_reloads_in_a_row_each_apply_their_own_change(server_factory):
    server = server_factory(workers=2)
    for path in ('/one', '/two'):
        add_channel(server, path)
        result = zato_daemon('reload', server.server_dir)
        assert result.returncode == 0, result.stderr
        assert request(server.port, 'POST', path, {'path': path})[0] == 200


HOLD_MODULE = '''
import os
import time

from zato_daemon.common import SERVER_STARTUP


def hold(ctx):
    """At FS_CONFIG_ONLY, waits while the file `hold` exists in the server directory (20 s at most)."""
    if ctx.phase != SERVER_STARTUP.PHASE.FS_CONFIG_ONLY:
        return
    flag = os.path.join(str(ctx.kwargs['base_dir']), 'hold')
    deadline = time.monotonic() + 20
    while os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.02)
'''


def held_server(server_factory):
    """A server whose reloads wait at FS_CONFIG_ONLY while its directory holds a file `hold`."""
    server = server_factory(start=False, sections='[misc]\nstartup_callable = hold_reload.hold\n')
    (server.server_dir / 'extlib').mkdir()
    (server.server_dir / 'extlib' / 'hold_reload.py').write_text(HOLD_MODULE)
    return server.start()


def start_reload(server):
    return subprocess.Popen([sys.executable, '-m', 'zato_daemon', 'reload', str(server.server_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=_env())


def reload_status(server, key):
    return ((server.status() or {}).get('reload') or {}).get(key)


@needs_reload_status
def test_a_reload_asked_for_during_a_reload_is_applied_after_it(server_factory):
    server = held_server(server_factory)
    (server.server_dir / 'hold').touch()
    first = start_reload(server)
    wait_until(lambda: reload_status(server, 'running'), message='the first reload to run')
    add_channel(server, '/second')
    second = start_reload(server)
    wait_until(lambda: reload_status(server, 'queued'), message='the second reload to be queued')
    (server.server_dir / 'hold').unlink()
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert out.startswith('zato-daemon: reload applied')
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert out.startswith('zato-daemon: reload applied')
    # The second command returned once the reload after the first one was done: its change serves.
    assert request(server.port, 'POST', '/second', {'b': 2})[0] == 200


@needs_reload_status
def test_reload_when_the_master_dies_meanwhile_exits_69(server_factory):
    server = held_server(server_factory)
    (server.server_dir / 'hold').touch()
    waiting = start_reload(server)
    wait_until(lambda: reload_status(server, 'running'), message='the reload to run')
    os.killpg(server.pid, signal.SIGKILL)
    server.wait_exit()
    out, err = waiting.communicate(timeout=60)
    assert (waiting.returncode, out) == (69, '')
    assert err == (f'zato-daemon: master pid {server.pid} stopped before the reload finished; see '
                   f'{server.server_dir}\n')
