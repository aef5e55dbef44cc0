"""Runs a benchmark script inside the system tests' booted Debian 12 container.

    python3 bench/in_container.py bench/journal.py [ARGS...]

The container (see tests/system/container.py) has a real systemd and journald and Debian's
python3-* packages; the package source is copied in, and the script runs as a transient
unit with journald's rate limit off. Needs root, like the system tests.
"""

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.system.container import Container, base_tree  # noqa: E402

INSIDE = '/root/zato-daemon'


def main(script, *args):
    with Container(base_tree()) as container:
        target = Path(container.host_path(INSIDE))
        for name in ('zato_daemon', 'bench'):
            shutil.copytree(REPO / name, target / name, ignore=shutil.ignore_patterns('__pycache__'))
        command = ['systemd-run', '--wait', '--pipe', '--quiet', '-p', 'LogRateLimitIntervalSec=0',
                   '-p', f'WorkingDirectory={INSIDE}', 'python3', f'{INSIDE}/{script}', *args]
        result = container.run(command, check=False, timeout=1800)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.returncode


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
