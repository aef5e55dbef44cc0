"""The pickup watcher's decisions, driven scan by scan without gevent."""

import logging

import pytest

from zato_daemon.deploy.pickup import PickupWatcher
from zato_daemon.services.registry import ServiceStore

SERVICE = 'from zato_daemon import Service\nclass S(Service):\n    name = "s"\n    version = {version}\n'


@pytest.fixture
def watcher(tmp_path):
    return PickupWatcher(ServiceStore(), tmp_path / 'pickup', tmp_path / 'deployed', logging.getLogger('test'))


def version(watcher):
    return watcher.store.get('s').version


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    # A later write in the same clock tick must still look changed.
    stat = path.stat()
    import os
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def test_new_changed_and_removed_files(watcher):
    path = watcher.pickup_dir / 's.py'
    watcher.deploy_at_boot()
    write(path, SERVICE.format(version=1))
    watcher.scan()
    assert version(watcher) == 1
    assert (watcher.deployed_dir / 's.py').read_text() == SERVICE.format(version=1)
    write(path, SERVICE.format(version=2))
    watcher.scan()
    assert version(watcher) == 2
    path.unlink()
    watcher.scan()
    assert 's' not in watcher.store
    assert not (watcher.deployed_dir / 's.py').exists()


def test_broken_change_keeps_the_previous_version_and_is_logged(watcher, caplog):
    path = watcher.pickup_dir / 's.py'
    write(path, SERVICE.format(version=1))
    watcher.deploy_at_boot()
    write(path, SERVICE.format(version=2) + 'def (\n')
    with caplog.at_level(logging.ERROR):
        watcher.scan()
    assert version(watcher) == 1
    assert f'{path}:5: syntax error' in caplog.text
    assert (watcher.deployed_dir / 's.py').read_text() == SERVICE.format(version=1)
    # The same broken content is not retried (and not logged) on every scan.
    caplog.clear()
    watcher.scan()
    assert caplog.text == ''


def test_boot_with_a_broken_file_uses_the_last_good_copy(watcher, tmp_path):
    write(watcher.deployed_dir / 's.py', SERVICE.format(version=1))
    write(watcher.pickup_dir / 's.py', 'not python at all')
    watcher.deploy_at_boot()
    assert version(watcher) == 1


def test_hidden_and_private_files_are_ignored(watcher):
    write(watcher.pickup_dir / '.s.py.tmp', SERVICE.format(version=1))
    write(watcher.pickup_dir / '_s.py', SERVICE.format(version=1))
    watcher.deploy_at_boot()
    watcher.scan()
    assert 's' not in watcher.store


def test_a_failed_file_is_retried_when_another_change_frees_its_service_name(watcher):
    old, new = watcher.pickup_dir / 'b.py', watcher.pickup_dir / 'a.py'
    write(old, SERVICE.format(version=1))
    watcher.deploy_at_boot()
    write(new, SERVICE.format(version=2))
    watcher.scan()
    assert version(watcher) == 1  # a.py failed: 's' belongs to b.py
    old.unlink()
    watcher.scan()
    assert version(watcher) == 2
    assert watcher.store.services['s'].module.path == str(new)
