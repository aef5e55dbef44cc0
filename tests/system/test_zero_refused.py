"""Socket activation in the booted container: zato-daemon.socket holds the listening socket, so a
bounded load (4 clients on loopback, keep-alive and new connections mixed) loses no request
through `systemctl restart`, `systemctl reload` (test_package.py's test_06 measures the same
load through a reload) and `apt install` of a newer version.

Runs after test_package.py, which purges the package at its end: the module installs it again."""

import pytest

from tests.system.container import poll
from tests.system.helpers import CONFIG_DIR, PORT, UNIT, assert_active, ensure_installed, install, main_pid, systemctl
from tests.system.test_package import load_progress, repack_with_version_suffix, start_load, stop_load

pytestmark = pytest.mark.xdist_group('system')

SOCKET_UNIT = 'zato-daemon.socket'
UPGRADE_SUFFIX = '+activation1'


@pytest.fixture(scope='module')
def activated(container, package_deb):
    ensure_installed(container, package_deb)
    systemctl(container, 'reset-failed', UNIT, check=False)
    return package_deb


def through(container, action, *args):
    """Runs `action(*args)` under the load; returns the load's counts."""
    load = start_load(container)
    try:
        poll(lambda: load_progress(container) > 50, 30, message='requests before')
        action(*args)
        served = load_progress(container)
        poll(lambda: load_progress(container) > served + 50, 60, message='requests after')
    finally:
        counts = stop_load(container, load)
    return counts


def test_the_socket_unit_is_enabled_and_passes_its_socket(container, activated):
    assert systemctl(container, 'is-enabled', SOCKET_UNIT).stdout.strip() == 'enabled'
    assert systemctl(container, 'is-active', SOCKET_UNIT).stdout.strip() == 'active'
    systemctl(container, 'restart', UNIT)
    assert_active(container)
    poll(lambda: f'Listening on 127.0.0.1:{PORT}, the socket systemd passed (http)'
         in container.journal('-u', UNIT, '-b'), 20, message='the master naming the socket it got')


def test_a_restart_under_load_refuses_no_connection(container, activated):
    master = main_pid(container)
    counts = through(container, systemctl, container, 'restart', UNIT)
    print(f'through systemctl restart: {counts}')
    assert counts['failed'] == 0, counts
    assert main_pid(container) != master
    assert_active(container)


def test_an_upgrade_under_load_refuses_no_connection(container, activated, tmp_path):
    upgrade, version = repack_with_version_suffix(activated, UPGRADE_SUFFIX, tmp_path)
    master = main_pid(container)

    def apt_install():
        result = install(container, upgrade)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

    counts = through(container, apt_install)
    print(f'through apt install of {version}: {counts}')
    assert counts['failed'] == 0, counts
    assert container.run(['dpkg-query', '-W', '-f', '${Version}', 'zato-daemon']).stdout == version
    assert main_pid(container) != master, 'the upgrade did not restart the server'
    assert systemctl(container, 'is-active', SOCKET_UNIT).stdout.strip() == 'active'


def test_stopping_the_service_alone_keeps_the_socket_and_a_connection_starts_it(container, activated):
    systemctl(container, 'stop', UNIT)
    assert systemctl(container, 'is-active', SOCKET_UNIT).stdout.strip() == 'active'
    result = container.run(['curl', '-sS', '--max-time', '30', f'http://127.0.0.1:{PORT}/services/demo.echo',
                            '--json', '{"woken": true}'])
    assert '"woken":true' in result.stdout.replace(' ', '')
    # Answered by the first worker up, maybe before the master told systemd it is ready.
    poll(lambda: systemctl(container, 'is-active', UNIT, check=False).stdout.strip() == 'active', 30,
         message='the service active')
    assert container.exists(f'{CONFIG_DIR}/server.conf')
