"""The pidfile lock belongs to a live process: it goes when the process goes, even on SIGKILL."""

import subprocess
import sys

from tests.conftest import REPO_ROOT
from zato_daemon.pidfile import running_pid


def test_lock_dies_with_the_process(tmp_path):
    path = tmp_path / 'x.pid'
    code = ('import sys, time\nfrom zato_daemon.pidfile import PidFile\n'
            f'PidFile({str(path)!r}).acquire().write_pid()\nprint("locked", flush=True)\ntime.sleep(60)\n')
    child = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        assert child.stdout.readline().strip() == 'locked'
        assert running_pid(path) == child.pid
        child.kill()
        child.wait()
        assert running_pid(path) is None
    finally:
        child.kill()
