"""What the system tests do inside the container, shared by their modules."""

import json
import os
import subprocess

from tests.conftest import REPO_ROOT
from tests.system.container import tail

UNIT = 'zato-daemon'
CONFIG_DIR = '/etc/zato-daemon'
PORT = 17010
# [metrics] port of the shipped server.conf: the master serves /metrics there.
METRICS_PORT = 17011
INSTALL_TIMEOUT = 300
# The previous version (conftest's previous_deb) sorts before the package's own: 0.1.0~previous1
# < 0.1.0. Its server.conf and pickup.conf end with one more line, as an older release's would
# differ: an upgrade replaces them unless they were edited.
PREVIOUS_SUFFIX = '~previous1'
PREVIOUS_CONFFILES = ('server.conf', 'pickup.conf')
PREVIOUS_LINE = '# (a line of the previous version, gone in the next)\n'


def systemctl(container, *args, check=True):
    """`systemctl ARGS` inside; returns the CompletedProcess."""
    return container.run(['systemctl', *args], check=check)


# systemd 252 now and then fails `systemctl kill` with this when a process of the unit exits
# while it signals them all (the main process got the signal; a short-lived child did not).
KILL_RACE = 'to auxiliary processes: Input/output error'


def kill_unit(container, signal_name, unit=UNIT):
    """`systemctl kill -s SIGNAL UNIT`, tolerating systemd's race with a process that exits."""
    result = systemctl(container, 'kill', '-s', signal_name, unit, check=False)
    assert result.returncode == 0 or KILL_RACE in result.stderr, result.stderr
    return result


def unit_report(container, unit=UNIT):
    """Status and journal tail of `unit`, for assertion messages."""
    status = systemctl(container, 'status', '--no-pager', '--full', unit, check=False).stdout
    return f'--- systemctl status ---\n{status}\n--- journal ---\n{tail(container.journal("-u", unit), 30)}'


def assert_active(container, unit=UNIT):
    state = systemctl(container, 'is-active', unit, check=False).stdout.strip()
    assert state == 'active', f'{unit} is {state}\n{unit_report(container, unit)}'


def restart(container, unit=UNIT):
    """`systemctl restart`, then active. The start rate limit (5 starts in 10 s by default),
    which tests restarting one after another would reach, is cleared first."""
    systemctl(container, 'reset-failed', unit, check=False)
    systemctl(container, 'restart', unit)
    assert_active(container, unit)


def main_pid(container, unit=UNIT):
    return int(container.show(unit, 'MainPID')['MainPID'])


def server_info(container, config_dir=CONFIG_DIR):
    """`zato-daemon info DIR --json`, run as root inside."""
    return json.loads(container.run(['zato-daemon', 'info', config_dir, '--json']).stdout)


def zato_processes(container):
    """(user, pid, args) of every process whose title starts with 'zato-daemon:'."""
    output = container.run(['ps', '-eo', 'user:32=,pid=,args=']).stdout
    rows = [line.split(None, 2) for line in output.splitlines()]
    return [(user, int(pid), args) for user, pid, args in rows if args.startswith('zato-daemon:')]


def worker_pids(container, config_dir=CONFIG_DIR):
    """The pids of the workers of the server of `config_dir`, by process title."""
    return sorted(pid for _, pid, title in zato_processes(container)
                  if title.startswith('zato-daemon: worker ') and title.endswith(f' {config_dir}'))


def scrape(container, port=METRICS_PORT):
    """GET /metrics with curl inside, as Prometheus scrapes it: the exposition's text."""
    return container.run(['curl', '-sS', '--fail', '--max-time', '10', f'http://127.0.0.1:{port}/metrics']).stdout


def post(container, port, path, payload):
    """POSTs JSON with curl inside; returns (status, lower-cased headers, body text)."""
    result = container.run(['curl', '-sS', '-i', '--max-time', '10',
                            f'http://127.0.0.1:{port}{path}', '--json', json.dumps(payload)])
    # run() reads text with universal newlines: the CRLFs arrive as plain newlines.
    head, _, body = result.stdout.partition('\n\n')
    status_line, *header_lines = head.splitlines()
    headers = dict(line.split(':', 1) for line in header_lines if ':' in line)
    return int(status_line.split()[1]), {key.strip().lower(): value.strip() for key, value in headers.items()}, body


def install(container, deb):
    """Copies `deb` into /root and runs `apt-get install -y ./NAME` there; returns the result."""
    container.put(f'/root/{deb.name}', deb)
    return container.run(['sh', '-c', f'cd /root && apt-get install -y ./{deb.name}'], check=False,
                         timeout=INSTALL_TIMEOUT)


def export_source(destination):
    """Copies the files `make deb` builds from into `destination`: what git tracks, and the
    files it does not ignore (work not committed yet is built and tested too)."""
    destination.mkdir(parents=True, exist_ok=True)
    listing = subprocess.run(['git', '-C', str(REPO_ROOT), 'ls-files', '-z', '--cached', '--others',
                              '--exclude-standard'], capture_output=True, check=True).stdout
    # A file deleted but not yet committed is still listed: it is not part of the tree.
    names = [name for name in listing.split(b'\0') if name and os.path.lexists(REPO_ROOT / os.fsdecode(name))]
    archive = subprocess.run(['tar', '-C', str(REPO_ROOT), '--null', '--no-recursion', '-T', '-', '-cf', '-'],
                             input=b'\0'.join(names), capture_output=True, check=True).stdout
    subprocess.run(['tar', '-C', str(destination), '-xf', '-'], input=archive, check=True)
    return destination


def ensure_installed(container, deb):
    """Installs `deb` unless the package is installed (test_package.py purges it at its end)."""
    status = container.run(['dpkg-query', '-W', '-f', '${Status}', 'zato-daemon'], check=False).stdout
    if status != 'install ok installed':
        result = install(container, deb)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
