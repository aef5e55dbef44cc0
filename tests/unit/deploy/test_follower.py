"""A worker's half of hot-deploy: the last-good set the master writes, deployed into a real
ServiceStore pass by pass (no gevent, no processes)."""

import logging

import pytest

from zato_daemon.deploy.follower import ManifestFollower, plan
from zato_daemon.deploy.manifest import Entry, copy_name, copy_path, manifest_path, write_manifest
from zato_daemon.services.registry import ServiceStore, sha256_of

SERVICE = 'from zato_daemon import Service\nclass S(Service):\n    name = {name!r}\n    version = {version}\n'


def entry(name, sha='0' * 64, source=None):
    return Entry(sha, ('s',), source or f'/pickup/{name}', copy_name(name, sha))


@pytest.mark.parametrize('applied, desired, expected', [
    ({}, {}, ([], [])),
    ({}, {'b.py': entry('b.py'), 'a.py': entry('a.py')}, ([], ['a.py', 'b.py'])),
    ({'a.py': entry('a.py')}, {'a.py': entry('a.py')}, ([], [])),
    ({'a.py': entry('a.py')}, {}, (['a.py'], [])),
    # A new version replaces the old one in place: the store swaps all or nothing.
    ({'a.py': entry('a.py')}, {'a.py': entry('a.py', '1' * 64)}, ([], ['a.py'])),
    # The pickup directory moved: the services leave the old path, then come under the new one.
    ({'a.py': entry('a.py')}, {'a.py': entry('a.py', source='/new/a.py')}, (['a.py'], ['a.py'])),
])
def test_plan(applied, desired, expected):
    assert plan(applied, desired) == expected


class Master:
    """Writes the last-good set the way the master's PickupDeployer does: copies, then the manifest."""

    def __init__(self, tmp_path):
        self.deployed_dir = tmp_path / 'deployed'
        self.deployed_dir.mkdir()
        self.pickup_dir = tmp_path / 'pickup'
        self.entries = {}

    def accept(self, name, text, services=('s',)):
        source = text.encode()
        sha = sha256_of(source)
        copy_path(self.deployed_dir, copy_name(name, sha)).write_bytes(source)
        self.entries[name] = Entry(sha, tuple(services), str(self.pickup_dir / name), copy_name(name, sha))
        write_manifest(self.deployed_dir, self.entries)
        return self.entries[name]

    def remove(self, name):
        del self.entries[name]
        write_manifest(self.deployed_dir, self.entries)


@pytest.fixture
def master(tmp_path):
    return Master(tmp_path)


@pytest.fixture
def follower(master):
    return ManifestFollower(ServiceStore(), master.deployed_dir, logging.getLogger('test.follower'))


def served(follower, name='s'):
    return follower.store.get(name).version


def test_boot_deploys_the_set_under_the_pickup_path_with_its_hash(master, follower):
    accepted = master.accept('a.py', SERVICE.format(name='s', version=1))
    follower.sync()
    assert served(follower) == 1
    info = follower.store.services['s'].module
    assert (info.path, info.sha256) == (accepted.source, accepted.sha256)


def test_changes_removals_and_nothing_to_do(master, follower):
    master.accept('a.py', SERVICE.format(name='s', version=1))
    master.accept('b.py', SERVICE.format(name='t', version=1), services=('t',))
    follower.sync()
    deployed_at = follower.store.services['t'].module.deployed_at
    master.accept('a.py', SERVICE.format(name='s', version=2))
    follower.sync()
    assert served(follower) == 2
    assert follower.store.services['t'].module.deployed_at == deployed_at  # b.py did not change
    follower.sync()  # the manifest did not change: nothing is read or deployed
    assert follower.store.services['s'].module.sha256 == master.entries['a.py'].sha256
    master.remove('a.py')
    follower.sync()
    assert 's' not in follower.store and served(follower, 't') == 1


def test_without_a_manifest_nothing_is_deployed_and_a_deleted_one_undeploys_nothing(master, follower):
    follower.sync()
    assert follower.store.services == {}
    master.accept('a.py', SERVICE.format(name='s', version=1))
    follower.sync()
    manifest_path(master.deployed_dir).unlink()
    follower.sync()
    assert served(follower) == 1


def test_a_name_moving_between_files_in_one_change_is_deployed_in_rounds(master, follower):
    master.accept('b.py', SERVICE.format(name='s', version=1))
    follower.sync()
    # One change: b.py gives up 's' and a.py, deployed first (sorted), takes it.
    master.accept('b.py', SERVICE.format(name='t', version=1), services=('t',))
    master.accept('a.py', SERVICE.format(name='s', version=2))
    follower.sync()
    assert served(follower) == 2 and served(follower, 't') == 1
    assert follower.store.services['s'].module.path == str(master.pickup_dir / 'a.py')


def test_a_module_failing_in_the_worker_is_an_error_once_and_the_previous_version_serves(master, follower, caplog):
    master.accept('a.py', SERVICE.format(name='s', version=1))
    follower.sync()
    broken = master.accept('a.py', SERVICE.format(name='s', version=2) + 'raise RuntimeError("not here")\n')
    with caplog.at_level(logging.INFO, 'test.follower'):
        follower.sync()
        assert served(follower) == 1
        errors = [record for record in caplog.records if record.levelno == logging.ERROR]
        assert len(errors) == 1
        assert f"Cannot deploy {broken.source} in this worker" in errors[0].getMessage()
        assert "RuntimeError('not here')" in errors[0].getMessage()
        caplog.clear()
        master.accept('b.py', SERVICE.format(name='t', version=1), services=('t',))
        follower.sync()  # another change: the broken one is not tried, nor reported, again
        assert [record.levelno for record in caplog.records] == [logging.INFO]
    master.accept('a.py', SERVICE.format(name='s', version=3))
    follower.sync()
    assert served(follower) == 3


def test_a_copy_that_does_not_match_its_hash_is_not_deployed(master, follower, caplog):
    accepted = master.accept('a.py', SERVICE.format(name='s', version=1))
    copy_path(master.deployed_dir, accepted.copy).write_text(SERVICE.format(name='s', version=666))
    with caplog.at_level(logging.ERROR, 'test.follower'):
        follower.sync()
    assert 's' not in follower.store
    assert f'does not have the sha256 {accepted.sha256}' in caplog.text


def test_a_copy_missing_once_is_read_again_then_reported(master, follower, caplog):
    accepted = master.accept('a.py', SERVICE.format(name='s', version=1))
    copy = copy_path(master.deployed_dir, accepted.copy)
    text = copy.read_text()
    copy.unlink()
    with caplog.at_level(logging.ERROR, 'test.follower'):
        follower.sync()
        assert caplog.text == ''  # most likely a newer manifest is on its way
        copy.write_text(text)
        follower.sync()
        assert served(follower) == 1
        master.accept('b.py', SERVICE.format(name='t', version=1), services=('t',))
        copy_path(master.deployed_dir, master.entries['b.py'].copy).unlink()
        follower.sync()
        follower.sync()
    assert f"cannot read its copy {master.entries['b.py'].copy}" in caplog.text


def test_an_unreadable_manifest_is_a_warning_once_and_keeps_what_serves(master, follower, caplog):
    master.accept('a.py', SERVICE.format(name='s', version=1))
    follower.sync()
    manifest_path(master.deployed_dir).write_text('{not json')
    with caplog.at_level(logging.WARNING, 'test.follower'):
        follower.sync()
        follower.sync()
    assert caplog.text.count('Ignoring') == 1
    assert served(follower) == 1
