"""A single host never imports redis: not the master's modules, not a worker's, not the CLI."""

import subprocess
import sys

from tests.conftest import REPO_ROOT

MODULES = ['zato_daemon.cli', 'zato_daemon.master.arbiter', 'zato_daemon.master.launch', 'zato_daemon.worker.process',
           'zato_daemon.services.builtin', 'zato_daemon.config.settings', 'zato_daemon.cluster.settings',
           'zato_daemon.cluster.membership', 'zato_daemon.cluster.view']


def test_no_module_a_single_host_runs_imports_redis():
    code = ('import sys\n'
            f'for name in {MODULES!r}:\n'
            '    __import__(name)\n'
            'print(sorted(name for name in sys.modules if name.split(".")[0] == "redis"))\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert result.stdout.strip() == '[]'
