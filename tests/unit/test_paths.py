"""Where a server's files go, with and without systemd's directory variables."""

import json
from pathlib import Path

from zato_daemon.config import load_config
from zato_daemon.paths import ServerDir, ServerPaths


def test_own_directory_keeps_everything_inside(tmp_path, monkeypatch):
    for name in ('STATE_DIRECTORY', 'LOGS_DIRECTORY', 'RUNTIME_DIRECTORY'):
        monkeypatch.delenv(name, raising=False)
    server_dir = ServerDir(tmp_path)
    assert server_dir.state == tmp_path / 'state'
    assert server_dir.admin_socket == tmp_path / 'run' / 'admin.sock'
    (tmp_path / 'server.conf').write_text('')
    paths = server_dir.resolve(load_config(tmp_path))
    assert paths.server_log == tmp_path / 'logs' / 'server.log'
    assert paths.pickup_dir == tmp_path / 'state' / 'pickup'
    assert paths.extlib == (tmp_path / 'extlib', tmp_path / 'state' / 'extlib')


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


def test_configured_paths_resolve_from_the_server_directory_and_survive_master_json(tmp_path, monkeypatch):
    for name in ('STATE_DIRECTORY', 'LOGS_DIRECTORY', 'RUNTIME_DIRECTORY'):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / 'server.conf').write_text(
        '[logging]\nserver_log = /var/tmp/elsewhere.log\n[diagnostics]\ndatabase = db/diag.sqlite3\n'
        '[misc]\nextra_paths = lib\n[services]\npaths = services, /srv/one.py\n')
    (tmp_path / 'pickup.conf').write_text('[hot_deploy]\npickup_dir = incoming\n')
    paths = ServerDir(tmp_path).resolve(load_config(tmp_path))
    assert paths.server_log == Path('/var/tmp/elsewhere.log')
    assert paths.diagnostics_database == tmp_path / 'db' / 'diag.sqlite3'
    assert paths.pickup_dir == tmp_path / 'incoming'
    assert paths.extlib[-1] == tmp_path / 'lib'
    assert paths.service_paths == (tmp_path / 'services', Path('/srv/one.py'))
    assert paths.status_file == tmp_path / 'run' / 'master.json'
    assert ServerPaths.from_dict(json.loads(json.dumps(paths.as_dict()))) == paths
