"""Deploying never endangers serving: modules that exit, crash or hang at import, name clashes,
and a pickup directory that cannot be listed.

First the master's PickupDeployer and the configured-module vetting on their own (real
disposable processes, a temporary directory, a worker's ServiceStore following the
manifest), then whole servers under load.
"""

import logging
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.integration.background import CallsInBackground
from tests.integration.helpers import free_port, wait_until, write_server_dir, zato_daemon
from tests.integration.test_hot_deploy import (SERVICE, drop, every_worker_answers, only_version_on_every_worker,
                                               refusals)
from zato_daemon.config import load_config
from zato_daemon.deploy.follower import ManifestFollower
from zato_daemon.deploy.manifest import copy_path, manifest_path, read_manifest
from zato_daemon.deploy.pickup import PickupDeployer
from zato_daemon.deploy.probe import vet_configured
from zato_daemon.errors import ServiceDeployError
from zato_daemon.logs.levels import DEPLOY_REFUSED, PICKUP_SCAN_FAILED
from zato_daemon.paths import ServerDir, ServerPaths
from zato_daemon.services.registry import ServiceStore

NAMED = 'from zato_daemon import Service\nclass S(Service):\n    name = {name!r}\n    version = {version}\n'
EXITS = 'import os\nos._exit(3)\n'
CRASHES = 'import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n'
LOOPS = 'while True:\n    pass\n'
# Starts a process of its own, says where, then hangs: the probe's kill must reach both.
SPAWNS_AND_HANGS = '''\
import subprocess, sys, time
child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])
open({marker!r}, 'w').write(f'{{child.pid}}')
time.sleep(600)
'''
TIME_LIMIT = 1.0
LOGGER = 'test.pickup'


def make_paths(root):
    base = Path(root) / 'server'
    return ServerPaths(base=base, state=base / 'state', logs=base / 'logs', runtime=base / 'run',
                       server_log=base / 'logs' / 'server.log', diagnostics_database=base / 'state' / 'd.sqlite3',
                       pickup_dir=base / 'state' / 'pickup', extlib=(base / 'extlib',), service_paths=())


class Rig:
    """A master's PickupDeployer and one worker's follower on the same server directory."""

    def __init__(self, root, configured_names=frozenset()):
        self.paths = make_paths(root)
        self.deployer = PickupDeployer(self.paths, 0.05, configured_names, logging.getLogger(LOGGER),
                                       import_time_limit=TIME_LIMIT)
        self.follower = ManifestFollower(ServiceStore(), self.paths.deployed_dir, logging.getLogger(LOGGER))

    @property
    def pickup(self):
        return self.paths.pickup_dir

    def scan(self):
        """One scan by the master, then one pass of the worker."""
        self.deployer.scan_once()
        self.follower.sync()

    def manifest(self):
        return read_manifest(self.paths.deployed_dir)

    def served(self, name='s'):
        service = self.follower.store.services.get(name)
        return None if service is None else (service.service_class.version, service.module.path)


@pytest.fixture
def rig(tmp_path):
    rig = Rig(tmp_path)
    rig.scan()
    return rig


def records(caplog, event):
    return [record for record in caplog.records if getattr(record, 'message_id', None) == event.message_id]


def is_running(pid):
    try:
        with open(f'/proc/{pid}/stat') as stat:
            return stat.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


# ---- the master's PickupDeployer, with a worker following it


@pytest.mark.parametrize('text, reason', [
    (EXITS, 'exited with status 3 during import'),
    (CRASHES, 'killed by SIGSEGV during import'),
    (LOOPS, f'still importing after {TIME_LIMIT:g} s'),
    ('import sys\nsys.exit(4)\n', 'called sys.exit(4) while importing'),
    ('from zato_daemon import Service\nraise KeyboardInterrupt\n', 'raised KeyboardInterrupt() while importing'),
    ('x = 1\n', 'defines no Service subclass'),
])
def test_a_file_that_fails_at_import_is_refused_once_and_the_previous_version_serves(rig, caplog, text, reason):
    drop(rig.pickup, 'svc.py', NAMED.format(name='s', version=1))
    rig.scan()
    accepted = rig.manifest()
    assert rig.served() == (1, str(rig.pickup / 'svc.py'))
    drop(rig.pickup, 'svc.py', text)
    with caplog.at_level(logging.INFO, LOGGER):
        rig.scan()
        rig.scan()  # the same content is neither probed nor reported again
    refused = records(caplog, DEPLOY_REFUSED)
    assert len(refused) == 1 and refused[0].levelno == logging.ERROR
    message = refused[0].getMessage()
    assert message.startswith(f'Refused to deploy {rig.pickup}/svc.py')
    assert reason in message
    assert f"the version accepted before (sha256 {accepted['svc.py'].sha256}) keeps serving" in message
    assert rig.manifest() == accepted
    assert rig.served() == (1, str(rig.pickup / 'svc.py'))


def test_a_hanging_import_is_killed_with_what_it_started(rig, tmp_path):
    marker = tmp_path / 'grandchild.pid'
    drop(rig.pickup, 'hangs.py', SPAWNS_AND_HANGS.format(marker=str(marker)))
    rig.scan()
    grandchild = int(marker.read_text())
    wait_until(lambda: not is_running(grandchild), timeout=5, message='the process the module started to be gone')
    assert rig.manifest() == {}


def test_what_a_module_prints_never_corrupts_the_report_and_is_logged_at_debug(rig, caplog):
    noisy = ('import os, sys\nprint(\'{"error": "forged"}\')\nos.write(1, b\'{"ready": true}\\n\')\n'
             'sys.stderr.write("to stderr\\n")\n' + NAMED.format(name='s', version=1))
    drop(rig.pickup, 'noisy.py', noisy)
    with caplog.at_level(logging.DEBUG, 'zato_daemon.deploy'):
        rig.scan()
    assert rig.served() == (1, str(rig.pickup / 'noisy.py'))
    printed = [record for record in caplog.records if 'forged' in record.getMessage()]
    assert [record.levelno for record in printed] == [logging.DEBUG]
    assert 'to stderr' in printed[0].getMessage()


def test_a_failed_listing_changes_nothing_and_warns_once(rig, caplog, tmp_path):
    drop(rig.pickup, 'svc.py', NAMED.format(name='s', version=1))
    rig.scan()
    accepted = rig.manifest()
    away = tmp_path / 'away'
    with caplog.at_level(logging.INFO, LOGGER):
        rig.pickup.rename(away)
        rig.scan()
        rig.pickup.write_text('a file where the directory was')
        rig.scan()
        rig.pickup.unlink()
        rig.scan()
    warnings = records(caplog, PICKUP_SCAN_FAILED)
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert f'Cannot list the pickup directory {rig.pickup}: No such file or directory' in warnings[0].getMessage()
    assert [record for record in caplog.records if record.levelno >= logging.INFO] == warnings
    assert not rig.pickup.exists()  # not made again, empty, by a scan
    assert rig.manifest() == accepted
    assert copy_path(rig.paths.deployed_dir, accepted['svc.py'].copy).exists()
    assert rig.served() == (1, str(rig.pickup / 'svc.py'))
    away.rename(rig.pickup)
    rig.scan()
    assert rig.manifest() == accepted
    (rig.pickup / 'svc.py').unlink()
    rig.scan()
    assert rig.manifest() == {} and rig.served() is None
    assert os.listdir(rig.paths.deployed_dir) == ['manifest.json']


def test_a_second_file_defining_a_name_is_refused_until_the_first_leaves(rig, caplog):
    drop(rig.pickup, 'b.py', NAMED.format(name='s', version=1))
    rig.scan()
    drop(rig.pickup, 'a.py', NAMED.format(name='s', version=2))
    with caplog.at_level(logging.ERROR, LOGGER):
        rig.scan()
    assert f'Refused to deploy {rig.pickup}/a.py: service s is already defined by b.py; nothing of it is deployed' \
        in caplog.text
    assert set(rig.manifest()) == {'b.py'}
    assert rig.served() == (1, str(rig.pickup / 'b.py'))
    # A worker started now deploys the same set, whatever the file names' order.
    fresh = ManifestFollower(ServiceStore(), rig.paths.deployed_dir, logging.getLogger(LOGGER))
    fresh.sync()
    assert fresh.store.get('s').version == 1
    (rig.pickup / 'b.py').unlink()
    rig.scan()
    assert set(rig.manifest()) == {'a.py'}
    assert rig.served() == (2, str(rig.pickup / 'a.py'))


def test_configured_and_built_in_names_are_held(tmp_path, caplog):
    rig = Rig(tmp_path, configured_names={'demo.echo', 'zato.ping'})
    drop(rig.pickup, 'echo.py', NAMED.format(name='demo.echo', version=1))
    drop(rig.pickup, 'ping.py', NAMED.format(name='zato.ping', version=1))
    drop(rig.pickup, 'mine.py', NAMED.format(name='mine', version=1))
    with caplog.at_level(logging.ERROR, LOGGER):
        rig.scan()
    assert 'echo.py: service demo.echo is already defined by a module configured in server.conf' in caplog.text
    assert 'ping.py: service zato.ping is already defined by the built-in services' in caplog.text
    assert set(rig.manifest()) == {'mine.py'}
    # A reload configures 'mine' and drops demo.echo: mine.py leaves, echo.py comes in.
    caplog.clear()
    rig.deployer.update(rig.paths, 0.05, {'mine', 'zato.ping'})
    with caplog.at_level(logging.ERROR, LOGGER):
        rig.scan()
    assert 'mine.py: service mine is already defined by a module configured in server.conf; it leaves the workers' \
        in caplog.text
    assert set(rig.manifest()) == {'echo.py'}
    assert rig.served('mine') is None and rig.served('demo.echo') == (1, str(rig.pickup / 'echo.py'))


def test_the_manifest_is_the_starting_set_after_a_restart(tmp_path, caplog):
    first = Rig(tmp_path)
    drop(first.pickup, 'svc.py', NAMED.format(name='s', version=1))
    drop(first.pickup, 'other.py', NAMED.format(name='t', version=1))
    first.scan()
    accepted = first.manifest()
    # While the server is stopped: svc.py breaks, other.py's copy is damaged.
    drop(first.pickup, 'svc.py', EXITS)
    copy_path(first.paths.deployed_dir, accepted['other.py'].copy).write_text('damaged')
    second = Rig(tmp_path)
    with caplog.at_level(logging.ERROR, LOGGER):
        second.scan()
    assert 'svc.py: exited with status 3 during import; the version accepted before' in caplog.text
    # svc.py keeps its last good version; other.py, whose copy no longer matches, was probed again.
    assert second.manifest() == accepted
    assert second.served() == (1, str(second.pickup / 'svc.py'))
    assert copy_path(second.paths.deployed_dir, accepted['other.py'].copy).read_text() != 'damaged'


def test_copies_an_earlier_version_kept_are_the_starting_set_without_a_manifest(tmp_path):
    rig = Rig(tmp_path)
    rig.paths.deployed_dir.mkdir(parents=True)
    (rig.paths.deployed_dir / 'svc.py').write_text(NAMED.format(name='s', version=1))
    (rig.paths.deployed_dir / 'gone.py').write_text('not python')
    drop(rig.pickup, 'svc.py', 'broken (')
    rig.scan()
    assert rig.served() == (1, str(rig.pickup / 'svc.py'))
    assert rig.manifest()['svc.py'].copy == 'svc.py'
    drop(rig.pickup, 'svc.py', NAMED.format(name='s', version=2))
    rig.scan()
    assert rig.served() == (2, str(rig.pickup / 'svc.py'))
    assert sorted(os.listdir(rig.paths.deployed_dir)) == sorted(['manifest.json', rig.manifest()['svc.py'].copy])


def test_the_thread_scans_every_poll_interval_and_stop_ends_a_hanging_probe(tmp_path):
    paths = make_paths(tmp_path)
    marker = tmp_path / 'grandchild.pid'
    deployer = PickupDeployer(paths, 0.05, frozenset(), logging.getLogger(LOGGER), import_time_limit=600)
    deployer.scan_once()
    deployer.start()
    try:
        drop(paths.pickup_dir, 'svc.py', NAMED.format(name='s', version=1))
        wait_until(lambda: 'svc.py' in (read_manifest(paths.deployed_dir) or {}), message='the file accepted')
        drop(paths.pickup_dir, 'hangs.py', SPAWNS_AND_HANGS.format(marker=str(marker)))
        wait_until(marker.exists, message='the probe to hang')
        grandchild = int(wait_until(marker.read_text, message='the pid'))
    finally:
        started = time.monotonic()
        deployer.stop()
    assert not deployer._thread.is_alive() and time.monotonic() - started < 5
    wait_until(lambda: not is_running(grandchild), timeout=5, message='the hanging probe to be killed')


# ---- configured modules, checked by start and check-config


def configured(tmp_path, modules='', paths=()):
    server_dir = write_server_dir(tmp_path / 'server', free_port())
    conf = server_dir / 'server.conf'
    text = conf.read_text().replace('modules = ', f'modules = {modules}{", " if modules else ""}')
    conf.write_text(text.replace('[services]\n', f'[services]\npaths = {", ".join(map(str, paths))}\n'))
    (server_dir / 'extlib').mkdir()
    config = load_config(server_dir)
    return config, ServerDir(server_dir).resolve(config)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_configured_modules_that_import_cleanly_give_every_name_they_hold(tmp_path):
    mine = write(tmp_path / 'services' / 'mine.py', NAMED.format(name='mine', version=1))
    config, paths = configured(tmp_path, paths=[mine.parent, mine])  # one file named twice is one module
    names = vet_configured(config, paths)
    assert {'mine', 'demo.echo', 'demo.sleep', 'demo.fail', 'zato.ping', 'zato.cache.builtin.get'} <= names


@pytest.mark.parametrize('text, reason', [
    (EXITS, 'exited with status 3 during import'),
    (LOOPS, f'still importing after {TIME_LIMIT:g} s'),
    ("raise RuntimeError('no database')\n", "1: exception while importing: RuntimeError('no database')"),
    (NAMED.format(name='zato.ping', version=1), 'service zato.ping is already defined by the built-in services'),
    (NAMED.format(name='demo.echo', version=1), 'service demo.echo is already defined by zato_daemon.examples.echo'),
])
def test_a_configured_file_that_would_not_deploy_is_a_configuration_error(tmp_path, text, reason):
    bad = write(tmp_path / 'bad.py', text)
    config, paths = configured(tmp_path, paths=[bad])
    with pytest.raises(ServiceDeployError) as raised:
        vet_configured(config, paths, time_limit=TIME_LIMIT)
    assert str(raised.value).startswith(str(bad)) and reason in str(raised.value)
    assert raised.value.exit_status == 78


def test_configured_modules_are_imported_with_the_extlib_directories_on_the_path(tmp_path):
    config, paths = configured(tmp_path, modules='leaves_early')
    write(paths.extlib[0] / 'leaves_early.py', 'import sys\nsys.exit(2)\n')
    with pytest.raises(ServiceDeployError, match=r"leaves_early: module 'leaves_early' called sys.exit\(2\)"):
        vet_configured(config, paths)


def test_two_configured_files_defining_one_name(tmp_path):
    first = write(tmp_path / 'a.py', NAMED.format(name='s', version=1))
    second = write(tmp_path / 'b.py', NAMED.format(name='s', version=2))
    config, paths = configured(tmp_path, paths=[first, second])
    with pytest.raises(ServiceDeployError, match=f'^{second}: service s is already defined by {first}$'):
        vet_configured(config, paths)


# ---- whole servers


def test_pickup_files_that_exit_or_hang_at_import_never_reach_a_worker(server_factory):
    server = server_factory(workers=2, start=False)
    with open(server.server_dir / 'pickup.conf', 'a') as conf:
        conf.write('import_timeout = 2\n')
    server.start()
    pids = server.worker_pids()
    pickup = server.server_dir / 'pickup'
    with CallsInBackground(server.port, max_seconds=60) as calls:
        drop(pickup, 'exits.py', EXITS)
        drop(pickup, 'hangs.py', LOOPS)
        wait_until(lambda: len(refusals(server)) == 2, message='both files refused')
        # Still serving after the refusals, on the same workers.
        wait_until(lambda: calls.answered > 50, message='calls answered')
    log = server.log()
    assert f'Refused to deploy {pickup}/exits.py: exited with status 3 during import' in log
    assert f'Refused to deploy {pickup}/hangs.py: still importing after 2 s' in log
    assert calls.failures == []
    assert server.worker_pids() == pids


def test_two_files_one_name_every_worker_even_a_new_one_serves_the_first(server_factory):
    server = server_factory(workers=2)
    pickup = server.server_dir / 'pickup'
    drop(pickup, 'b.py', SERVICE.format(version=1))
    wait_until(lambda: every_worker_answers(server, 1), message='b.py on every worker')
    drop(pickup, 'a.py', SERVICE.format(version=2))
    wait_until(lambda: refusals(server), message='the refusal')
    assert f'{pickup}/a.py: service demo.version is already defined by b.py' in refusals(server)[0]
    old_pid = server.worker_pids()[0]
    os.kill(old_pid, signal.SIGKILL)
    wait_until(lambda: len(server.worker_pids()) == 2 and old_pid not in server.worker_pids(),
               message='the replacement worker')
    only_version_on_every_worker(server, 1)


@pytest.mark.parametrize('replacement', ['renamed away', 'replaced by a file'])
def test_a_pickup_directory_that_cannot_be_listed_changes_nothing(server_factory, tmp_path, replacement):
    server = server_factory(workers=2)
    pickup = server.server_dir / 'pickup'
    drop(pickup, 'version.py', SERVICE.format(version=1))
    wait_until(lambda: every_worker_answers(server, 1), message='version 1')
    manifest = manifest_path(server.server_dir / 'state' / 'deployed').read_text()
    pickup.rename(tmp_path / 'away')
    if replacement == 'replaced by a file':
        pickup.write_text('not a directory')
    wait_until(lambda: 'Cannot list the pickup directory' in server.log(), message='the warning')
    old_pid = server.worker_pids()[0]
    os.kill(old_pid, signal.SIGKILL)
    wait_until(lambda: len(server.worker_pids()) == 2 and old_pid not in server.worker_pids(),
               message='the replacement worker')
    only_version_on_every_worker(server, 1)
    assert manifest_path(server.server_dir / 'state' / 'deployed').read_text() == manifest
    assert server.log().count('Cannot list the pickup directory') == 1
    assert 'Undeploy' not in server.log()


# ---- what an adversarial review found (each failed before its fix)


def test_modules_hanging_at_import_delay_the_first_workers_a_bounded_time_and_stop_is_heard(server_factory):
    # The first scan ran on the master's loop: twelve looping files held the start for 12 x
    # import_timeout, and a stop for as long.
    server = server_factory(workers=1, start=False)
    pickup = server.server_dir / 'pickup'
    for number in range(6):
        drop(pickup, f'loops{number}.py', LOOPS)
    drop(pickup, 'good.py', SERVICE.format(version=7))
    started = time.monotonic()
    server.start()
    assert time.monotonic() - started < 20, 'the start waited for every hanging module'
    server.signal(signal.SIGTERM)
    server.wait_exit(timeout=20)
    assert 'Server stopped (exit status 0)' in server.log()


def serving_kept(server_factory, workers, version):
    """A server with kept.py of `version` picked up and answering on every worker, and the
    directory of the accepted set's copies."""
    server = server_factory(workers=workers)
    drop(server.server_dir / 'pickup', 'kept.py', SERVICE.format(version=version))
    wait_until(lambda: every_worker_answers(server, version), message='kept.py on every worker')
    return server, server.server_dir / 'state' / 'deployed'


def test_deleted_copies_of_the_accepted_set_are_written_again(server_factory):
    server, deployed = serving_kept(server_factory, workers=2, version=3)
    for copy in deployed.glob('kept.*.py'):
        copy.unlink()
    wait_until(lambda: list(deployed.glob('kept.*.py')), message='the copy written again')
    assert 'was deleted; written it again' in server.log()
    old_pid = server.worker_pids()[0]
    os.kill(old_pid, signal.SIGKILL)
    wait_until(lambda: len(server.worker_pids()) == 2 and old_pid not in server.worker_pids(),
               message='the replacement worker')
    only_version_on_every_worker(server, 3)


def test_a_deleted_deployed_directory_is_made_again_without_a_flood(server_factory):
    server, deployed = serving_kept(server_factory, workers=1, version=4)
    # Renamed away first: deleting its files one by one raced the scan that writes them again.
    gone = deployed.with_name('deployed.gone')
    deployed.rename(gone)
    shutil.rmtree(gone, ignore_errors=True)  # only the path matters to the server
    wait_until(lambda: manifest_path(deployed).exists() and list(deployed.glob('kept.*.py')),
               message='the directory, its manifest and the copy back')
    time.sleep(1)  # several scans at poll_interval 0.1: none of them may report an error
    assert 'Cannot write' not in server.log()


@pytest.mark.parametrize('name', ['bad\udcff.py', 'two\nlines.py'])
def test_a_file_name_that_is_not_printable_utf8_is_refused_once_and_info_keeps_working(server_factory, name):
    server = server_factory(workers=1)
    pickup = server.server_dir / 'pickup'
    (pickup / os.fsencode(name).decode('utf-8', 'surrogateescape')).write_text(SERVICE.format(version=5))
    wait_until(lambda: 'its name is not printable UTF-8' in server.log(), message='the refusal')
    time.sleep(0.5)
    assert server.log().count('its name is not printable UTF-8') == 1
    result = zato_daemon('info', server.server_dir)
    assert result.returncode == 0, result.stderr
