"""The container itself, before any package: it boots under systemd and journald works.

If these fail, the package tests cannot mean anything: look here first.
"""

import secrets

import pytest

from tests.system.container import poll

pytestmark = pytest.mark.xdist_group('system')


def test_container_boots_systemd_to_running_or_degraded(container):
    print(f'system state: {container.system_state}; failed units: {container.failed_units or "none"}')
    assert container.system_state in ('running', 'degraded')
    assert container.run(['cat', '/proc/1/comm']).stdout.strip() == 'systemd'
    assert container.run(['systemctl', 'is-system-running'], check=False).stdout.strip() in ('running', 'degraded')


def test_container_has_only_loopback(container):
    interfaces = container.run(['ls', '/sys/class/net']).stdout.split()
    assert interfaces == ['lo']


def test_journald_records_a_message(container):
    tag = f'zato-test-{secrets.token_hex(4)}'
    container.run(['systemd-cat', '-t', tag, '-p', 'warning', 'echo', 'hello from the system tests'])

    def journal_entry():
        return container.run(['journalctl', '--no-pager', '-t', tag, '-o', 'cat']).stdout.strip()

    assert poll(journal_entry, 10, message='the message in the journal') == 'hello from the system tests'
    assert tag in container.journal('-p', 'warning', '-t', tag)


def test_commands_run_in_a_clean_environment(container):
    environment = container.run(['env']).stdout
    assert 'VIRTUAL_ENV' not in environment and 'PYTHONPATH' not in environment
    assert container.run(['python3', '-c', 'import sys; print(sys.executable)']).stdout.strip() == '/usr/bin/python3'


def test_runtime_dependencies_are_preinstalled(container):
    modules = 'gevent, systemd.journal, systemd.daemon, daemon, setproctitle, httptools'
    container.run(['python3', '-c', f'import {modules}'])


def test_put_and_get_stay_inside_the_tree(container):
    target = container.put('/root/put-test/file.txt', b'payload\n', mode=0o600)
    assert target.is_relative_to(container.root)
    assert container.run(['cat', '/root/put-test/file.txt']).stdout == 'payload\n'
    assert container.run(['stat', '-c', '%a', '/root/put-test/file.txt']).stdout.strip() == '600'
    container.run(['ln', '-sfn', '/root/put-test', '/root/put-link'])
    assert container.host_path('/root/put-link/file.txt') == target
    assert container.get('/root/put-link/file.txt') == b'payload\n'
