"""gevent must stay out of the master: it is patched in workers only, after fork."""

import subprocess
import sys

from tests.conftest import REPO_ROOT

MASTER_SIDE_MODULES = ['zato_daemon', 'zato_daemon.cli', 'zato_daemon.master.arbiter', 'zato_daemon.master.launch',
                       'zato_daemon.daemonize', 'zato_daemon.services.builtin', 'zato_daemon.deploy.pickup',
                       'zato_daemon.http.router', 'zato_daemon.diagnostics.recorder', 'zato_daemon.cache.registry',
                       'zato_daemon.dump.setup', 'zato_daemon.startup']


def imported_from(packages, modules):
    """The modules of `packages` (top-level names) a fresh interpreter has loaded after importing
    `modules`, sorted: a fresh one, since this test process has imported everything already."""
    code = ('import sys\n'
            f'for name in {list(modules)!r}:\n'
            '    __import__(name)\n'
            f'print(sorted(name for name in sys.modules if name.split(".")[0] in {tuple(packages)!r}))\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    return result.stdout.strip()


def test_master_side_modules_do_not_import_gevent():
    assert imported_from(('gevent', 'greenlet'), MASTER_SIDE_MODULES) == '[]'


def test_the_worker_module_does_patch():
    code = 'import zato_daemon.worker.process\nfrom gevent import monkey\nprint(monkey.is_module_patched("socket"))\n'
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert result.stdout.strip() == 'True'
