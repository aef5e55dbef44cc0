"""System tests: the .deb installed in a booted Debian 12 container, driven through systemctl.

Every module here marks its tests `xdist_group('system')`, so that under `--dist loadgroup`
one xdist worker runs them all and boots one container for the session. A machine that
cannot boot the container fails these tests with the reason: they are part of CI, never
skipped.
"""

import subprocess

import pytest

from tests.conftest import REPO_ROOT
from tests.system.container import Container, base_tree, host_problems, tail

BUILD_DIR = REPO_ROOT / 'build'
MAKE_DEB_TIMEOUT = 900


@pytest.fixture(scope='session')
def container():
    """One booted container for the whole session: Debian 12 with the runtime dependencies."""
    problems = host_problems()
    if problems:
        pytest.fail('cannot run the system tests on this machine: ' + '; '.join(problems), pytrace=False)
    with Container(base_tree()) as booted:
        yield booted


@pytest.fixture(scope='session')
def package_deb():
    """The .deb that `make deb` builds: build/zato-daemon_<version>_all.deb."""
    result = subprocess.run(['make', '-C', str(REPO_ROOT), 'deb'], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=MAKE_DEB_TIMEOUT)
    if result.returncode != 0:
        pytest.fail(f'make deb failed with {result.returncode}:\n{tail(result.stdout)}\n{tail(result.stderr)}',
                    pytrace=False)
    debs = sorted(BUILD_DIR.glob('zato-daemon_*_all.deb'))
    assert len(debs) == 1, f'expected exactly one build/zato-daemon_*_all.deb after make deb, found {debs}'
    return debs[0]
