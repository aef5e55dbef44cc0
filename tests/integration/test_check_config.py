"""check-config is start's first half: for each configuration start fails on, check-config fails
the same way (same exit status, same one-line message), and where check-config says OK, start
serves. Real servers, real files (FIFOs, devices, directories) and real sockets."""

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.helpers import _env, free_port, request, write_server_dir, zato_daemon

START_TIMEOUT = 60


def run_start(server_dir, **user):
    """`start DIR --fg` that is expected to fail: (status, stderr). A start that serves instead
    is stopped, its whole process group, and fails the test."""
    process = subprocess.Popen([sys.executable, '-m', 'zato_daemon', 'start', str(server_dir), '--fg'],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
                               env=_env(), start_new_session=True, **user)
    try:
        _, stderr = process.communicate(timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f'start did not fail within {START_TIMEOUT} s')
    return process.returncode, stderr


def run_check_config(server_dir, **user):
    if not user:
        result = zato_daemon('check-config', server_dir, timeout=START_TIMEOUT)
    else:
        result = subprocess.run([sys.executable, '-m', 'zato_daemon', 'check-config', str(server_dir)],
                                capture_output=True, text=True, cwd=REPO_ROOT, env=_env(),
                                timeout=START_TIMEOUT, **user)
    return result.returncode, result.stderr


def assert_both_fail_alike(server_dir, status, words, **user):
    checked, check_err = run_check_config(server_dir, **user)
    started, start_err = run_start(server_dir, **user)
    assert (checked, started) == (status, status), f'check-config: {check_err}\nstart: {start_err}'
    lines = check_err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], check_err
    assert lines[0] in start_err.splitlines(), start_err
    assert 'Traceback' not in start_err + check_err


def append_to(path, text):
    path.write_text(path.read_text() + text)


def set_in_services(server_dir, line):
    conf = server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace('[services]\n', f'[services]\n{line}\n'))


def replace_with_fifo(server_dir, tmp_path):
    (server_dir / 'server.conf').unlink()
    os.mkfifo(server_dir / 'server.conf')


def replace_with_dev_zero(server_dir, tmp_path):
    (server_dir / 'server.conf').unlink()
    os.symlink('/dev/zero', server_dir / 'server.conf')


def not_utf8(server_dir, tmp_path):
    conf = server_dir / 'server.conf'
    conf.write_bytes(conf.read_bytes().replace(b'[main]\n', b'[main]\n# caf\xe9\n'))


def server_log_is_a_directory(server_dir, tmp_path):
    (tmp_path / 'logdir').mkdir()
    append_to(server_dir / 'server.conf', f'[logging]\nserver_log = {tmp_path / "logdir"}\n')


def pickup_dir_under_a_file(server_dir, tmp_path):
    (tmp_path / 'file').write_text('')
    (server_dir / 'pickup.conf').write_text(f'[hot_deploy]\npickup_dir = {tmp_path}/file/pickup\n')


def main_key(line):
    def change(server_dir, tmp_path):
        conf = server_dir / 'server.conf'
        conf.write_text(conf.read_text().replace('[main]\n', f'[main]\n{line}\n', 1))
    return change


def replace_in_main(old, new):
    def change(server_dir, tmp_path):
        conf = server_dir / 'server.conf'
        conf.write_text(conf.read_text().replace(old, new, 1))
    return change


def replace_host(host):
    return replace_in_main('host = 127.0.0.1', f'host = {host}')


CASES = [
    # (id, change to a working server directory, exit status, words of the one-line error)
    ('backlog of the issue', main_key('backlog = 100000000000000000000'), 78,
     "[main] backlog: expected an integer from 1 to 65535, got '100000000000000000000'"),
    ('too many workers', replace_in_main('workers = 1', 'workers = 1000'), 78,
     "[main] workers: expected an integer from 1 to 256, or auto, got '1000'"),
    ('a timeout of more than a day', main_key('keep_alive_timeout = 1e9'), 78,
     "[main] keep_alive_timeout: expected a number of seconds more than 0 and at most 86400, got '1e9'"),
    ('server.conf a FIFO', replace_with_fifo, 78, 'server.conf: not a regular file but a FIFO (named pipe)'),
    ('server.conf /dev/zero', replace_with_dev_zero, 78, 'server.conf: not a regular file but a character device'),
    ('not UTF-8', not_utf8, 78, 'server.conf:2: not valid UTF-8'),
    ('missing service path', lambda server_dir, tmp_path: set_in_services(server_dir, 'paths = gone.py'), 78,
     'no such file or directory: '),
    ('host that does not resolve', replace_host('no-such-host.invalid'), 78,
     "[main] host: cannot resolve 'no-such-host.invalid'"),
    ('host of another machine', replace_host('192.0.2.1'), 78,
     "[main] host: '192.0.2.1' is not an address of this machine"),
    ('server_log a directory', server_log_is_a_directory, 73, 'is a directory; fix [logging] server_log'),
    ('pickup dir under a file', pickup_dir_under_a_file, 73, 'file is not a directory; fix pickup_dir'),
]


@pytest.mark.parametrize(('change', 'status', 'words'), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_check_config_fails_as_start_does(tmp_path, change, status, words):
    server_dir = write_server_dir(tmp_path / 'server', free_port())
    change(server_dir, tmp_path)
    assert_both_fail_alike(server_dir, status, words)
    # Both stopped before anything was created: no runtime directory, so no socket or pidfile.
    assert not (server_dir / 'run').exists()


@pytest.fixture
def world_readable_dir():
    """A directory outside tmp_path (whose parents are private to root), readable by nobody."""
    path = Path(tempfile.mkdtemp(prefix='zato-check-config-'))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_server_directory_this_user_cannot_write(world_readable_dir):
    server_dir = write_server_dir(world_readable_dir / 'server', free_port())
    if os.geteuid() == 0:
        # Permissions do not stop root: both commands run as nobody, on root's directory.
        user, name = {'user': 'nobody', 'group': 'nogroup', 'extra_groups': []}, 'nobody'
    else:
        user, name = {}, pwd.getpwuid(os.geteuid()).pw_name
        server_dir.chmod(0o555)
    try:
        assert_both_fail_alike(server_dir, 73, f'cannot create {server_dir}/state: {server_dir} is not '
                               f'writable by user {name}; ', **user)
    finally:
        server_dir.chmod(0o755)


@pytest.mark.parametrize('bom', [False, True], ids=['plain', 'with a UTF-8 BOM'])
def test_what_check_config_accepts_start_serves(server_factory, bom):
    server = server_factory(start=False)
    if bom:
        conf = server.server_dir / 'server.conf'
        conf.write_bytes(b'\xef\xbb\xbf# saved by an editor that adds a BOM\n' + conf.read_bytes())
    result = zato_daemon('check-config', server.server_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('zato-daemon: configuration OK: ')
    # check-config creates nothing: no state, logs or runtime directory.
    assert not {'state', 'logs', 'run'} & {path.name for path in server.server_dir.iterdir()}
    server.start()
    assert request(server.port, 'GET', '/zato/ping')[0] == 200
