"""Where a server's files go, with and without systemd's directory variables."""

from pathlib import Path

from zato_daemon.paths import ServerDir


def test_own_directory_keeps_everything_inside(tmp_path, monkeypatch):
    for name in ('STATE_DIRECTORY', 'LOGS_DIRECTORY', 'RUNTIME_DIRECTORY'):
        monkeypatch.delenv(name, raising=False)
    server_dir = ServerDir(tmp_path)
    assert server_dir.state == tmp_path / 'state'
    assert server_dir.server_log == tmp_path / 'logs' / 'server.log'
    assert server_dir.admin_socket == tmp_path / 'run' / 'admin.sock'
    assert server_dir.default_pickup_dir == tmp_path / 'state' / 'pickup'


def test_packaged_directories_map_to_fhs(monkeypatch):
    for name in ('STATE_DIRECTORY', 'LOGS_DIRECTORY', 'RUNTIME_DIRECTORY'):
        monkeypatch.delenv(name, raising=False)
    assert ServerDir('/etc/zato-daemon').runtime == Path('/run/zato-daemon')
    instance = ServerDir('/etc/zato-daemon/billing')
    assert (instance.state, instance.logs, instance.runtime) == (
        Path('/var/lib/zato-daemon/billing'), Path('/var/log/zato-daemon/billing'), Path('/run/zato-daemon/billing'))


def test_systemd_variables_win(tmp_path, monkeypatch):
    monkeypatch.setenv('STATE_DIRECTORY', '/var/lib/x:/var/lib/y')
    monkeypatch.setenv('LOGS_DIRECTORY', '/var/log/x')
    monkeypatch.setenv('RUNTIME_DIRECTORY', '/run/x')
    server_dir = ServerDir(tmp_path)
    assert (server_dir.state, server_dir.logs, server_dir.runtime) == (
        Path('/var/lib/x'), Path('/var/log/x'), Path('/run/x'))
