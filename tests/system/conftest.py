"""System tests: the .deb installed in a booted Debian 12 container, driven through systemctl.

Every module here marks its tests `xdist_group('system')`, so that under `--dist loadgroup`
one xdist worker runs them all and boots one container for the session. A machine that
cannot boot the container fails these tests with the reason: they are part of CI, never
skipped.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.system.container import Container, base_tree, host_problems, tail
from tests.system.helpers import PREVIOUS_CONFFILES, PREVIOUS_LINE, PREVIOUS_SUFFIX, export_source, install

BUILD_DIR = REPO_ROOT / 'build'
MAKE_DEB_TIMEOUT = 900


def is_loadgroup(config):
    """False in an xdist worker of a run whose command line and addopts ask for no loadgroup.

    A worker cannot ask its own options: xdist resets `dist` to 'no' in every worker.
    """
    worker_input = getattr(config, 'workerinput', None)
    if worker_input is None:
        return True  # not under xdist: one process runs everything in order
    arguments = [*worker_input.get('mainargv', []), *config.getini('addopts'),
                 os.environ.get('PYTEST_ADDOPTS', '')]
    return 'loadgroup' in ' '.join(arguments)


@pytest.fixture(scope='session')
def container(request):
    """One booted container for the whole session: Debian 12 with the runtime dependencies."""
    if not is_loadgroup(request.config):
        # Any other mode spreads the ordered steps of test_package.py over several workers,
        # each booting its own container and running its own `make deb` in the same build/.
        pytest.fail('system tests under pytest-xdist need --dist loadgroup', pytrace=False)
    problems = host_problems()
    if problems:
        pytest.fail('cannot run the system tests on this machine: ' + '; '.join(problems), pytrace=False)
    with Container(base_tree()) as booted:
        yield booted


@pytest.fixture(scope='session')
def package_deb():
    """The .deb that `make deb` builds: build/zato-daemon_<version>_all.deb.

    $ZATO_DAEMON_DEB names a .deb built elsewhere to test instead (no build then).
    """
    if os.environ.get('ZATO_DAEMON_DEB'):
        deb = Path(os.environ['ZATO_DAEMON_DEB']).resolve()
        assert deb.is_file(), f'ZATO_DAEMON_DEB={deb} is not a file'
        return deb
    result = subprocess.run(['make', '-C', str(REPO_ROOT), 'deb'], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=MAKE_DEB_TIMEOUT)
    if result.returncode != 0:
        pytest.fail(f'make deb failed with {result.returncode}:\n{tail(result.stdout)}\n{tail(result.stderr)}',
                    pytrace=False)
    debs = sorted(BUILD_DIR.glob('zato-daemon_*_all.deb'))
    assert len(debs) == 1, f'expected exactly one build/zato-daemon_*_all.deb after make deb, found {debs}'
    return debs[0]


@pytest.fixture(scope='session')
def installed(container, package_deb):
    """The package installed from build/ with apt, as an operator would; fails if it won't."""
    result = install(container, package_deb)
    if result.returncode != 0:
        pytest.fail(f'apt-get install -y ./{package_deb.name} failed with {result.returncode}:\n'
                    f'{tail(result.stdout)}\n{tail(result.stderr)}', pytrace=False)
    return package_deb


@pytest.fixture(scope='session')
def previous_deb(package_deb, tmp_path_factory):
    """The package built from this tree as the previous version: VERSION~previous1, whose
    server.conf and pickup.conf end with PREVIOUS_LINE. Built with dpkg-buildpackage under the
    nocheck profile, with the Build-Depends that `make deb` installed."""
    version = subprocess.run(['dpkg-deb', '--field', str(package_deb), 'Version'], capture_output=True, text=True,
                             check=True).stdout.strip()
    previous = version + PREVIOUS_SUFFIX
    source = export_source(tmp_path_factory.mktemp('previous') / 'src')
    changelog = source / 'debian' / 'changelog'
    date = re.search(r'^ -- .*?  (.+)$', changelog.read_text(), re.M)[1]
    changelog.write_text(f'zato-daemon ({previous}) unstable; urgency=medium\n\n  * The previous version, for '
                         f'upgrade tests.\n\n -- zato-daemon developers <zato-daemon@example.org>  {date}\n\n'
                         + changelog.read_text())
    for name in PREVIOUS_CONFFILES:
        with open(source / 'etc' / 'zato-daemon' / name, 'a') as conffile:
            conffile.write(PREVIOUS_LINE)
    environment = {**os.environ, 'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'DEB_BUILD_OPTIONS': 'nocheck',
                   'DEB_BUILD_PROFILES': 'nocheck'}
    result = subprocess.run(['dpkg-buildpackage', '-us', '-uc', '-b'], cwd=source, env=environment,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=MAKE_DEB_TIMEOUT)
    if result.returncode != 0:
        pytest.fail(f'building {previous} failed with {result.returncode}:\n{tail(result.stdout)}\n'
                    f'{tail(result.stderr)}', pytrace=False)
    [deb] = source.parent.glob(f'zato-daemon_{previous.split(":")[-1]}_all.deb')
    return deb
