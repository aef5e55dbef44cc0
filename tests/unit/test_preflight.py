"""What start checks once the configuration has loaded (zato_daemon/preflight.py): the decisions
case by case, then the checks on real directories and real sockets."""

import errno
import os
import socket
import stat
from pathlib import Path

import pytest

from zato_daemon import preflight
from zato_daemon.config import load_config
from zato_daemon.errors import EXIT_CANTCREAT, EXIT_CONFIG, ConfigError, DirectoryError
from zato_daemon.paths import ServerDir
from zato_daemon.preflight import FILE, TREE, Found, Target, write_problem

AS_ROOT = os.geteuid() == 0


@pytest.fixture(autouse=True)
def no_systemd_directories(monkeypatch):
    for name in ('STATE_DIRECTORY', 'LOGS_DIRECTORY', 'RUNTIME_DIRECTORY'):
        monkeypatch.delenv(name, raising=False)


def server_dir(path, server_conf='', pickup_conf=None):
    """A server directory with this server.conf; returns (config, paths) as start has them."""
    path.mkdir(parents=True, exist_ok=True)
    (path / 'server.conf').write_text(server_conf)
    if pickup_conf is not None:
        (path / 'pickup.conf').write_text(pickup_conf)
    config = load_config(path)
    return config, ServerDir(path).resolve(config)


def tree(tmp_path):
    return sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob('*'))


# Decisions ####################################################################################

DIRECTORY = Target(Path('/srv/x/state'), False, TREE, 'the fix')
LOG_FILE = Target(Path('/srv/x/log/server.log'), True, FILE, 'the fix')
DATABASE = Target(Path('/srv/x/db/diagnostics.sqlite3'), True, TREE, 'the fix')

WRITE_CASES = [
    # (target, found, problem or None)
    (DIRECTORY, Found(Path('/srv/x/state'), is_dir=True, writable=True), None),
    (DIRECTORY, Found(Path('/srv/x/state'), is_dir=True, writable=False),
     '/srv/x/state is not writable by user zato'),
    (DIRECTORY, Found(Path('/srv/x/state'), is_dir=False, writable=True), '/srv/x/state is not a directory'),
    (DIRECTORY, Found(Path('/srv/x'), is_dir=True, writable=True), None),
    (DIRECTORY, Found(Path('/srv'), is_dir=True, writable=True), None),
    (DIRECTORY, Found(Path('/srv'), is_dir=True, writable=False),
     'cannot create /srv/x/state: /srv is not writable by user zato'),
    (DIRECTORY, Found(Path('/srv/x'), is_dir=False, writable=True),
     'cannot create /srv/x/state: /srv/x is not a directory'),
    (DIRECTORY, Found(Path('/srv/x'), error='Too many levels of symbolic links'),
     'cannot use /srv/x/state: Too many levels of symbolic links'),
    (LOG_FILE, Found(Path('/srv/x/log/server.log'), is_dir=False, writable=True), None),
    (LOG_FILE, Found(Path('/srv/x/log/server.log'), is_dir=False, writable=False),
     '/srv/x/log/server.log is not writable by user zato'),
    (LOG_FILE, Found(Path('/srv/x/log/server.log'), is_dir=True, writable=True),
     '/srv/x/log/server.log is a directory'),
    (LOG_FILE, Found(Path('/srv/x/log'), is_dir=True, writable=True), None),
    (LOG_FILE, Found(Path('/srv/x/log'), is_dir=True, writable=False),
     'cannot create /srv/x/log/server.log: /srv/x/log is not writable by user zato'),
    (LOG_FILE, Found(Path('/srv/x/log'), is_dir=False, writable=True),
     'cannot create /srv/x/log/server.log: /srv/x/log is not a directory'),
    # open() creates no directory: a missing one is the problem, however writable its parent.
    (LOG_FILE, Found(Path('/srv/x'), is_dir=True, writable=True),
     'cannot create /srv/x/log/server.log: no such directory /srv/x/log'),
    (LOG_FILE, Found(Path('/srv/x/log/server.log'), is_dir=False, writable=True, is_plain_file=False),
     '/srv/x/log/server.log is not a regular file (a FIFO, a socket or a device)'),
    (DATABASE, Found(Path('/srv'), is_dir=True, writable=True), None),
    (DATABASE, Found(Path('/srv'), is_dir=True, writable=False),
     'cannot create /srv/x/db/diagnostics.sqlite3: /srv is not writable by user zato'),
]


@pytest.mark.parametrize(('target', 'found', 'problem'), WRITE_CASES)
def test_write_problem(target, found, problem):
    assert write_problem(target, found, 'zato') == problem


def test_write_targets_of_a_default_server(tmp_path):
    config, paths = server_dir(tmp_path)
    listed = preflight.write_targets(config, paths)
    targets = {target.path: target for target in listed}
    assert [target.path for target in listed] == [
        tmp_path / 'state', tmp_path / 'logs', tmp_path / 'run', tmp_path / 'state' / 'deployed',
        tmp_path / 'logs' / 'server.log', tmp_path / 'state', tmp_path / 'state' / 'diagnostics.sqlite3',
        tmp_path / 'state' / 'pickup']
    # server.log in the logs directory start creates: made with it.
    assert targets[tmp_path / 'logs' / 'server.log'].made_by == TREE
    assert targets[tmp_path / 'logs' / 'server.log'].is_file
    assert 'pickup_dir' in targets[tmp_path / 'state' / 'pickup'].fix


def test_write_targets_follow_the_configuration(tmp_path):
    config, paths = server_dir(
        tmp_path, '[component_enabled]\nhot_deploy = false\nsamples = false\nslow_responses = false\n'
                  '[logging]\nserver_log = /var/tmp/elsewhere/server.log\n')
    targets = preflight.write_targets(config, paths)
    assert [target.path for target in targets][-1] == Path('/var/tmp/elsewhere/server.log')
    # A server.log elsewhere is opened in a directory that must be there.
    assert targets[-1].made_by == FILE and 'server_log' in targets[-1].fix
    # No diagnostics database and no pickup directory when their components are off.
    assert len(targets) == 5


def test_diagnostics_database_is_checked_when_either_component_is_on(tmp_path):
    config, paths = server_dir(tmp_path, '[component_enabled]\nsamples = false\n[diagnostics]\ndatabase = db/d.sqlite3\n')
    targets = [target.path for target in preflight.write_targets(config, paths)]
    assert tmp_path / 'db' in targets and tmp_path / 'db' / 'd.sqlite3' in targets


@pytest.mark.parametrize(('mode', 'problem'), [
    (stat.S_IFREG, None), (stat.S_IFDIR, None), (stat.S_IFIFO, 'neither a file nor a directory'),
    (stat.S_IFSOCK, 'neither a file nor a directory'), (stat.S_IFCHR, 'neither a file nor a directory')])
def test_service_path_problem(mode, problem):
    assert preflight.service_path_problem(mode | 0o644) == problem


@pytest.mark.parametrize(('host', 'address', 'number', 'problem'), [
    ('192.0.2.1', '192.0.2.1', errno.EADDRNOTAVAIL, "'192.0.2.1' is not an address of this machine"),
    ('example.com', '93.184.216.34', errno.EADDRNOTAVAIL,
     "'example.com' (93.184.216.34) is not an address of this machine"),
    ('::1', '::1', errno.EAFNOSUPPORT, "cannot listen on '::1': this machine has no IPv6"),
    ('10.0.0.1', '10.0.0.1', errno.EACCES, "cannot listen on '10.0.0.1': Permission denied"),
])
def test_host_problem(host, address, number, problem):
    assert preflight.host_problem(host, address, OSError(number, os.strerror(number))) == problem


@pytest.mark.parametrize(('host', 'family'), [
    ('127.0.0.1', socket.AF_INET), ('localhost', socket.AF_INET), ('::', socket.AF_INET6),
    ('fe80::1%lo', socket.AF_INET6)])
def test_listening_family(host, family):
    assert preflight.listening_family(host) == family


# Real directories #############################################################################


def test_a_good_server_directory_passes_and_nothing_is_created(tmp_path):
    config, paths = server_dir(tmp_path / 'server', '[services]\npaths = services\n')
    (tmp_path / 'server' / 'services').mkdir()
    before = tree(tmp_path)
    preflight.check(config, paths)
    assert tree(tmp_path) == before


def test_inspect_path_finds_the_nearest_existing_ancestor(tmp_path):
    (tmp_path / 'file').write_text('')
    assert preflight.inspect_path(tmp_path) == Found(tmp_path, True, True)
    assert preflight.inspect_path(tmp_path / 'a' / 'b') == Found(tmp_path, True, True)
    assert preflight.inspect_path(tmp_path / 'file') == Found(tmp_path / 'file', False, True)
    assert preflight.inspect_path(tmp_path / 'file' / 'x' / 'y') == Found(tmp_path / 'file', False, True)


def test_inspect_path_reports_a_symlink_loop(tmp_path):
    os.symlink(tmp_path / 'loop', tmp_path / 'loop')
    found = preflight.inspect_path(tmp_path / 'loop' / 'x')
    assert found.existing == tmp_path / 'loop' / 'x' and found.error == 'Too many levels of symbolic links'


@pytest.mark.skipif(AS_ROOT, reason='permissions do not stop root; '
                    'tests/integration/test_check_config.py runs this case as nobody')
def test_inspect_path_sees_a_directory_this_user_cannot_write(tmp_path):
    locked = tmp_path / 'locked'
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert preflight.inspect_path(locked / 'state') == Found(locked, True, False)
    finally:
        locked.chmod(0o755)


def test_server_log_that_is_a_directory(tmp_path):
    (tmp_path / 'logdir').mkdir()
    config, paths = server_dir(tmp_path / 'server', f'[logging]\nserver_log = {tmp_path / "logdir"}\n')
    with pytest.raises(DirectoryError) as info:
        preflight.check(config, paths)
    assert str(info.value) == (f'{tmp_path / "logdir"} is a directory; '
                               'fix [logging] server_log, or the permissions of its directory')
    assert info.value.exit_status == EXIT_CANTCREAT


def test_server_log_in_a_directory_that_does_not_exist(tmp_path):
    config, paths = server_dir(tmp_path / 'server', '[logging]\nserver_log = nowhere/server.log\n')
    with pytest.raises(DirectoryError, match=r'/server/nowhere/server\.log: no such directory .*/server/nowhere; '):
        preflight.check(config, paths)


def test_pickup_dir_under_a_file(tmp_path):
    (tmp_path / 'file').write_text('')
    config, paths = server_dir(tmp_path / 'server', pickup_conf=f'[hot_deploy]\npickup_dir = {tmp_path}/file/pickup\n')
    with pytest.raises(DirectoryError) as info:
        preflight.check(config, paths)
    assert str(info.value) == (f'cannot create {tmp_path}/file/pickup: {tmp_path}/file is not a directory; '
                               'fix pickup_dir in pickup.conf, or its permissions')


def test_pickup_dir_is_not_checked_without_hot_deploy(tmp_path):
    (tmp_path / 'file').write_text('')
    config, paths = server_dir(tmp_path / 'server', '[component_enabled]\nhot_deploy = false\n',
                               pickup_conf=f'[hot_deploy]\npickup_dir = {tmp_path}/file/pickup\n')
    preflight.check(config, paths)


def test_state_directory_that_is_a_file(tmp_path):
    config, paths = server_dir(tmp_path)
    (tmp_path / 'state').write_text('')
    with pytest.raises(DirectoryError, match=rf'^{tmp_path}/state is not a directory; move what is in the way or fix the permissions, or run as '):
        preflight.check(config, paths)


def test_missing_service_path(tmp_path):
    config, paths = server_dir(tmp_path, '[services]\npaths = services, gone.py\n')
    (tmp_path / 'services').mkdir()
    with pytest.raises(ConfigError) as info:
        preflight.check(config, paths)
    assert str(info.value) == f'no such file or directory: {tmp_path / "gone.py"}; fix [services] paths'
    assert info.value.exit_status == EXIT_CONFIG


def test_service_path_that_is_a_fifo(tmp_path):
    os.mkfifo(tmp_path / 'pipe.py')
    config, paths = server_dir(tmp_path, '[services]\npaths = pipe.py\n')
    with pytest.raises(ConfigError, match=r'pipe\.py is neither a file nor a directory; fix \[services\] paths$'):
        preflight.check(config, paths)


@pytest.mark.parametrize('kind', ['fifo', 'device'])
def test_server_log_that_is_a_fifo_or_a_device_is_refused_and_dev_null_is_not(tmp_path, kind):
    # A FIFO made start hang for ever opening it; /dev/full made every record a traceback.
    target = tmp_path / 'pipe'
    if kind == 'fifo':
        os.mkfifo(target)
    config, paths = server_dir(tmp_path / 'server',
                               f'[logging]\nserver_log = {target if kind == "fifo" else "/dev/full"}\n')
    with pytest.raises(DirectoryError, match=r'is not a regular file \(a FIFO, a socket or a device\)'):
        preflight.check(config, paths)
    config, paths = server_dir(tmp_path / 'other', '[logging]\nserver_log = /dev/null\n')
    preflight.check(config, paths)


# Real sockets #################################################################################


@pytest.mark.parametrize('host', ['127.0.0.1', 'localhost', '0.0.0.0'])
def test_local_hosts_pass(host):
    preflight.check_host(host)


def test_ipv6_loopback_passes_where_there_is_ipv6():
    if preflight.try_bind(socket.AF_INET6, ('::1', 0, 0, 0)) is not None:
        pytest.skip('no IPv6 here')
    preflight.check_host('::1')


def test_the_configured_port_is_never_bound(tmp_path):
    # A running server holds its port: the check (at reload, or check-config beside it) must pass.
    with socket.socket() as held:
        held.bind(('127.0.0.1', 0))
        held.listen()
        config, paths = server_dir(tmp_path, f'[main]\nhost = 127.0.0.1\nport = {held.getsockname()[1]}\n')
        preflight.check(config, paths)


def test_an_address_of_another_machine():
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): no machine has it.
    with pytest.raises(ConfigError) as info:
        preflight.check_host('192.0.2.1')
    assert str(info.value) == ("[main] host: '192.0.2.1' is not an address of this machine; write an address "
                               'of this machine, e.g. 127.0.0.1, or 0.0.0.0 for all of them')
    assert info.value.exit_status == EXIT_CONFIG


@pytest.mark.parametrize(('host', 'reason'), [
    # .invalid never resolves (RFC 6761); the resolver may say so in other words.
    ('no-such-host.invalid', "cannot resolve 'no-such-host.invalid': "),
    ('a' * 64, 'not a valid host name'),
])
def test_a_host_that_does_not_resolve(host, reason):
    with pytest.raises(ConfigError) as info:
        preflight.check_host(host)
    message = str(info.value)
    assert message.startswith('[main] host: cannot resolve ') and reason in message
    assert '\n' not in message and message.endswith('; write an address of this machine, or a name it resolves')
