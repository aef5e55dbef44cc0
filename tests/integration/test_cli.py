"""The command line against real servers: check-config, start/stop in the background,
info, invoke, and the clear errors of a broken config, a second start or a busy port."""

import json
import os
import shlex
import socket
import stat
import subprocess
import sys

from tests.conftest import REPO_ROOT
from tests.integration.helpers import ServerProcess, call, free_port, wait_until, write_server_dir, zato_daemon


def test_check_config_accepts_the_shipped_config():
    result = zato_daemon('check-config', 'etc/zato-daemon')
    assert result.returncode == 0, result.stderr
    assert 'configuration OK' in result.stdout


def test_check_config_names_file_line_and_key(tmp_path):
    server_dir = write_server_dir(tmp_path / 's', port='not-a-port')
    result = zato_daemon('check-config', server_dir)
    assert result.returncode == 78
    assert f'{server_dir}/server.conf:3:' in result.stderr
    assert 'port' in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_start_with_broken_config_exits_78_before_binding(tmp_path):
    port = free_port()
    server_dir = write_server_dir(tmp_path / 's', port, main='no_such_key = 1')
    result = zato_daemon('start', server_dir, '--fg')
    assert result.returncode == 78
    assert 'no_such_key' in result.stderr
    assert not (server_dir / 'run' / 'admin.sock').exists()
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', port))


def test_start_fails_when_a_configured_service_does_not_deploy(tmp_path):
    server_dir = write_server_dir(tmp_path / 's', free_port(),
                                  sections='[component_enabled]\nhot_deploy = false\n')
    conf = server_dir / 'server.conf'
    broken = tmp_path / 'broken.py'
    broken.write_text('from zato_daemon import Service\n\nclass X(Service):\n    name = "x"\n    def handle(self)\n')
    conf.write_text(conf.read_text().replace('[services]\n', f'[services]\npaths = {broken}\n'))
    result = zato_daemon('start', server_dir, '--fg')
    assert result.returncode == 78
    # On stderr once start vets configured modules before binding (issue 14, part 5); in the
    # log when a worker found it.
    log = server_dir / 'logs' / 'server.log'
    assert f'{broken}:5: syntax error' in result.stderr + (log.read_text() if log.exists() else '')


def test_port_in_use_is_one_clear_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        port = busy.getsockname()[1]
        server_dir = write_server_dir(tmp_path / 's', port)
        result = zato_daemon('start', server_dir, '--fg')
    assert result.returncode == 69
    assert result.stderr.strip() == (f'zato-daemon: cannot listen on 127.0.0.1:{port}: another process '
                                     'listens there; change [main] port or host in server.conf')
    assert not (server_dir / 'run' / 'zato-daemon.pid').exists()


def test_background_start_reports_errors_before_detaching(tmp_path):
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        server_dir = write_server_dir(tmp_path / 's', busy.getsockname()[1])
        result = zato_daemon('start', server_dir)
    assert result.returncode == 69
    assert 'cannot listen on' in result.stderr
    assert not (server_dir / 'run' / 'zato-daemon.pid').exists()


def test_admin_socket_is_group_only(server):
    mode = (server.server_dir / 'run' / 'admin.sock').stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660


def test_starting_twice_on_one_directory_is_refused(server):
    result = zato_daemon('start', server.server_dir, '--fg')
    assert result.returncode == 69
    assert f'already running in this directory (master pid {server.pid}' in result.stderr
    assert call(server.port, 'demo.echo', {'first': 'still serves'})[2] == {'first': 'still serves'}


def test_background_start_info_invoke_stop(tmp_path):
    port = free_port()
    server_dir = write_server_dir(tmp_path / 's', port, workers=2)
    started = zato_daemon('start', server_dir)
    assert started.returncode == 0, started.stderr + started.stdout
    pid = int((server_dir / 'run' / 'zato-daemon.pid').read_text())
    try:
        assert f'started, master pid {pid}' in started.stdout
        # Detached: in a session of its own, no longer a child of this test.
        assert os.getsid(pid) != os.getsid(0)
        assert pid not in _children()
        server = ServerProcess(server_dir, port)
        server.process = type('Detached', (), {'poll': lambda self: None, 'pid': pid})()
        server.wait_ready()

        info = zato_daemon('info', server_dir)
        assert info.returncode == 0, info.stderr
        assert f'master_proc_pid: {pid}' in info.stdout
        info_json = json.loads(zato_daemon('info', server_dir, '--json').stdout)
        assert info_json['master_proc_pid'] == pid
        assert sorted(info_json['worker_pids']) == server.worker_pids() and len(info_json['worker_pids']) == 2
        assert info_json['listen'] == f'127.0.0.1:{port}'
        echo = [s for s in info_json['services'] if s['name'] == 'demo.echo'][0]
        assert echo['path'].endswith('zato_daemon/examples/echo.py') and len(echo['sha256']) == 64

        invoked = zato_daemon('invoke', server_dir, 'demo.echo', '{"x": [1, 2]}', '--json')
        assert (invoked.returncode, invoked.stdout.strip()) == (0, '{"x":[1,2]}')
        from_stdin = zato_daemon('invoke', server_dir, 'demo.echo', '-', input='{"y": 1}')
        assert json.loads(from_stdin.stdout) == {'y': 1}
        source = json.loads(zato_daemon('invoke', server_dir, 'zato.service.get-source-info',
                                        '{"name": "demo.echo"}').stdout)
        assert source['sha256'] == echo['sha256']
        failed = zato_daemon('invoke', server_dir, 'demo.fail', '{}')
        assert failed.returncode == 1 and 'answered 500' in failed.stderr
        bad_payload = zato_daemon('invoke', server_dir, 'demo.echo', '{nope')
        assert bad_payload.returncode == 64
    finally:
        stopped = zato_daemon('stop', server_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert f'stopped master pid {pid}' in stopped.stdout
    wait_until(lambda: not os.path.exists(f'/proc/{pid}'), message='the master to be gone')
    assert zato_daemon('info', server_dir).returncode == 69


def _children():
    return {int(pid) for pid in open(f'/proc/{os.getpid()}/task/{os.getpid()}/children').read().split()}


def test_stop_when_not_running(tmp_path):
    server_dir = write_server_dir(tmp_path / 's', free_port())
    result = zato_daemon('stop', server_dir)
    assert (result.returncode, result.stdout) == (0, f'zato-daemon: not running in {server_dir}\n')


def test_python_dash_m_and_version():
    result = zato_daemon('--version')
    assert result.returncode == 0
    assert result.stdout.startswith('zato-daemon ')


def test_output_cut_short_by_a_pipe_is_no_traceback(tmp_path):
    target = tmp_path / 'f'
    target.write_text('x')
    script = (f'import sys; sys.argv = ["zato-daemon", "hash"] + [{str(target)!r}] * 20000; '
              'from zato_daemon.cli import main; sys.exit(main())')
    result = subprocess.run(f'{sys.executable} -c {shlex.quote(script)} | head -1', shell=True, capture_output=True,
                            text=True, cwd=REPO_ROOT, timeout=60)
    assert result.stdout.count('\n') == 1
    assert result.stderr == ''
