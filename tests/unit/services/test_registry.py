"""Deploying service modules: all or nothing, with file and line on failure."""

import hashlib
import linecache
import textwrap

import pytest

from zato_daemon.errors import ServiceDeployError, ServiceNotFound
from zato_daemon.services.registry import ServiceStore

GOOD = '''\
from zato_daemon import Service

class A(Service):
    name = 'test.a'

    def handle(self):
        self.response.payload = 'a{version}'
'''


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_deploy_file_registers_services_with_hash(tmp_path):
    path = write(tmp_path, 'mod.py', GOOD.format(version=1))
    store = ServiceStore()
    info = store.deploy_file(path)
    assert info.service_names == ['test.a']
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert store.get('test.a').__name__ == 'A'
    assert store.describe()[0]['path'] == str(path)


def test_syntax_error_names_line_and_keeps_previous_version(tmp_path):
    path = write(tmp_path, 'mod.py', GOOD.format(version=1))
    store = ServiceStore()
    store.deploy_file(path)
    previous = store.get('test.a')
    path.write_text(GOOD.format(version=2) + '\ndef broken(:\n')
    with pytest.raises(ServiceDeployError) as info:
        store.deploy_file(path)
    assert info.value.line == 9
    assert str(info.value).startswith(f'{path}:9: syntax error')
    assert store.get('test.a') is previous


def test_exception_at_import_names_the_line(tmp_path):
    path = write(tmp_path, 'mod.py', 'x = 1\ny = 2\nraise KeyError("boom")\n')
    with pytest.raises(ServiceDeployError) as info:
        ServiceStore().deploy_file(path)
    assert info.value.line == 3
    assert "KeyError('boom')" in str(info.value)


def test_module_without_services_is_refused(tmp_path):
    path = write(tmp_path, 'empty.py', 'x = 1\n')
    with pytest.raises(ServiceDeployError, match='defines no Service subclass'):
        ServiceStore().deploy_file(path)


def test_service_without_name_is_refused(tmp_path):
    path = write(tmp_path, 'noname.py', 'from zato_daemon import Service\nclass X(Service):\n    pass\n')
    with pytest.raises(ServiceDeployError, match='has no `name`'):
        ServiceStore().deploy_file(path)


def test_name_taken_by_another_module_is_refused(tmp_path):
    store = ServiceStore()
    store.deploy_file(write(tmp_path, 'one.py', GOOD.format(version=1)))
    with pytest.raises(ServiceDeployError, match="'test.a' is already deployed from"):
        store.deploy_file(write(tmp_path, 'two.py', GOOD.format(version=2)))


def test_redeploy_drops_services_the_module_no_longer_defines(tmp_path):
    store = ServiceStore()
    path = write(tmp_path, 'mod.py', GOOD.format(version=1) + "\nclass B(A):\n    name = 'test.b'\n")
    store.deploy_file(path)
    assert 'test.b' in store
    store.deploy_file(write(tmp_path, 'mod.py', GOOD.format(version=2)))
    assert 'test.b' not in store
    with pytest.raises(ServiceNotFound):
        store.get('test.b')


def test_tracebacks_show_the_source_that_runs(tmp_path):
    path = write(tmp_path, 'mod.py', GOOD.format(version=1))
    ServiceStore().deploy_file(path)
    path.write_text('completely different\n' * 10)
    linecache.checkcache(str(path))
    assert "name = 'test.a'" in linecache.getline(str(path), 4)


def test_imported_services_are_not_registered_twice(tmp_path):
    store = ServiceStore()
    store.deploy_module('zato_daemon.examples.echo')
    path = write(tmp_path, 'importer.py', 'from zato_daemon.examples.echo import Echo\n'
                 'from zato_daemon import Service\nclass Mine(Service):\n    name = "mine"\n')
    assert store.deploy_file(path).service_names == ['mine']


def test_rejected_version_leaves_module_and_source_lines_of_the_serving_one(tmp_path):
    import sys
    store = ServiceStore()
    path = write(tmp_path, 'mod.py', GOOD.format(version=1))
    info = store.deploy_file(path)
    serving_module = sys.modules[info.module_name]
    # Valid Python, but the service lost its name: rejected after executing.
    path.write_text(GOOD.format(version=2).replace("name = 'test.a'", "name = ''"))
    with pytest.raises(ServiceDeployError):
        store.deploy_file(path)
    assert sys.modules[info.module_name] is serving_module
    assert "name = 'test.a'" in linecache.getline(str(path), 4)


def test_files_of_one_name_in_two_directories_get_two_modules(tmp_path):
    store = ServiceStore()
    first = store.deploy_file(write(tmp_path, 'mod.py', GOOD.format(version=1)))
    (tmp_path / 'other').mkdir()
    second = store.deploy_file(write(tmp_path / 'other', 'mod.py', GOOD.format(version=2).replace('test.a', 'test.b')))
    assert first.module_name != second.module_name
