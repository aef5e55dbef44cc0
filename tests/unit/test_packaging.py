"""Packaging facts that drift silently unless a test holds them."""

import re

from tests.conftest import REPO_ROOT
from zato_daemon import __version__

SYSTEMD = REPO_ROOT / 'systemd'


def test_changelog_version_is_the_package_version():
    first_line = (REPO_ROOT / 'debian' / 'changelog').read_text().splitlines()[0]
    assert re.match(r'zato-daemon \(([^)]+)\)', first_line).group(1) == __version__


def _template_from_main_unit():
    text = (SYSTEMD / 'zato-daemon.service').read_text()
    text = text.replace('Description=zato-daemon service server', 'Description=zato-daemon service server %i')
    text = text.replace('start /etc/zato-daemon\n', 'start /etc/zato-daemon/%i\n')
    for kind in ('Configuration', 'State', 'Logs', 'Runtime'):
        text = text.replace(f'{kind}Directory=zato-daemon\n', f'{kind}Directory=zato-daemon/%i\n')
    # An instance's socket unit needs an address from a drop-in first: ordered after it, not wanted.
    text = text.replace('After=network.target zato-daemon.socket\n', 'After=network.target zato-daemon@%i.socket\n')
    text = re.sub(r'# The listening socket \(socket activation\).*?\nWants=zato-daemon.socket\n', '', text, flags=re.S)
    # Only the main unit must keep /run/zato-daemon, which holds the instances' directories.
    return re.sub(r'# zato-daemon@NAME.*?\nRuntimeDirectoryPreserve=yes\n', '', text, flags=re.S)


def test_template_unit_differs_from_the_main_unit_only_by_instance():
    assert (SYSTEMD / 'zato-daemon@.service').read_text() == _template_from_main_unit()


def test_debian_unit_files_are_the_systemd_ones():
    for name in ('zato-daemon.service', 'zato-daemon@.service'):
        link = REPO_ROOT / 'debian' / name
        assert link.is_symlink() and link.resolve() == (SYSTEMD / name).resolve()


def test_stop_timeout_exceeds_the_default_graceful_timeout():
    from zato_daemon.config.settings import find_setting
    from zato_daemon.master.arbiter import GRACEFUL_STOP_MARGIN
    graceful = float(find_setting('server.conf', 'main', 'graceful_timeout').default)
    stop = int(re.search(r'^TimeoutStopSec=(\d+)$', (SYSTEMD / 'zato-daemon.service').read_text(), re.M).group(1))
    assert stop > graceful + GRACEFUL_STOP_MARGIN
