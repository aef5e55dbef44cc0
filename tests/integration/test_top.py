"""`zato-daemon top` against real servers: --once as JSON and as text, metrics off, a stopped
server, a socket the user may not use, and the live view in a real terminal (tmux) that
updates, survives a resize and the server going away, and quits with q and with Ctrl-C."""

import json
import shlex
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.helpers import _env, call, wait_until, zato_daemon
# The server in a directory every user may enter, and the CLI run as nobody: the same as
# for the other commands' status 77.
from tests.integration.test_cli_statuses import as_nobody, needs_root, one_line, shared_server  # noqa: F401


def assert_header(line, server_dir, workers):
    """The header names the directory (its start cut when the line is too short) and the workers."""
    where, figures = line.split(f'  workers {workers}  ', 1)
    assert str(server_dir).endswith(where.lstrip('\N{HORIZONTAL ELLIPSIS}')), line
    assert figures.startswith('calls/s '), line


def top_json(server):
    result = zato_daemon('top', server.server_dir, '--once', '--json')
    assert result.returncode == 0, result.stderr
    return result


def by_name(view):
    return {row['service']: row for row in view['services']}


def counted(server, expected):
    """The view once the master counts `expected` {service: calls_total} (the workers report
    once a second and the master publishes once a second)."""
    def view():
        parsed = json.loads(top_json(server).stdout)
        totals = {name: row['calls_total'] for name, row in by_name(parsed).items()}
        return parsed if all(totals.get(name) == calls for name, calls in expected.items()) else None
    return wait_until(view, message=f'top to count {expected}')


def test_once_json_is_one_sorted_object_with_every_service_and_worker(server_factory):
    server = server_factory(workers=2)
    for number in range(3):
        call(server.port, 'demo.echo', {'n': number})
    for _ in range(2):
        assert call(server.port, 'demo.fail', {})[0] == 500
    counted(server, {'demo.echo': 3, 'demo.fail': 2})
    result = top_json(server)
    view = json.loads(result.stdout)
    assert result.stdout == json.dumps(view, sort_keys=True) + '\n'
    assert result.stderr == ''
    services = by_name(view)
    # zato.ping: the fixture's readiness checks over TCP, as many as it took.
    assert sorted(services) == ['demo.echo', 'demo.fail', 'zato.ping']
    assert services['zato.ping']['calls_total'] >= 1
    assert {key: services['demo.echo'][key] for key in ('calls_total', 'errors_total', 'in_flight')} == {
        'calls_total': 3, 'errors_total': 0, 'in_flight': 0}
    assert {key: services['demo.fail'][key] for key in ('calls_total', 'errors_total', 'in_flight')} == {
        'calls_total': 2, 'errors_total': 2, 'in_flight': 0}
    assert view['version'] == 1 and view['age_seconds'] >= 0
    assert sorted(row['pid'] for row in view['workers']) == server.worker_pids()
    assert [(row['number'], row['state']) for row in view['workers']] == [(1, 'ready'), (2, 'ready')]
    assert all(row['rss_bytes'] > 0 and row['open_fds'] > 0 for row in view['workers'])
    assert sum(row['requests'] for row in view['workers']) >= 5
    assert view['totals']['workers_alive'] == 2


def test_once_prints_the_screen_as_wide_as_the_terminal_or_100_columns(server_factory):
    server = server_factory()
    for _ in range(3):
        call(server.port, 'demo.echo', {})
    counted(server, {'demo.echo': 3})
    result = zato_daemon('top', server.server_dir, '--once')
    assert (result.returncode, result.stderr) == (0, '')
    lines = result.stdout.splitlines()
    assert_header(lines[0], server.server_dir, 1)
    assert lines[2].split()[:2] == ['SERVICE', 'CALLS/S'] and lines[2].endswith('TOTAL CALLS')
    echo = next(line for line in lines if line.startswith('demo.echo '))
    assert echo.split()[-2:] == ['0', '3']  # in flight, total calls
    assert any(line.startswith('WORKER') for line in lines)
    assert all(len(line) <= 100 for line in lines)

    narrow = subprocess.run([sys.executable, '-m', 'zato_daemon', 'top', str(server.server_dir), '--once'],
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=dict(_env(), COLUMNS='60'))
    assert narrow.returncode == 0, narrow.stderr
    assert all(len(line) <= 60 for line in narrow.stdout.splitlines())
    assert 'TOTAL CALLS' not in narrow.stdout
    assert any(line.startswith('demo.echo ') for line in narrow.stdout.splitlines())


def test_metrics_off_is_78_saying_so(server_factory):
    server = server_factory(sections='[metrics]\nenabled = false\n')
    for args in (('--once',), ('--once', '--json')):
        result = zato_daemon('top', server.server_dir, *args)
        assert (result.returncode, result.stdout) == (78, '')
        assert one_line(result) == (f'zato-daemon: the server of {server.server_dir} counts nothing: [metrics] '
                                    'enabled is false in server.conf; set it to true and reload to use top')


def test_a_stopped_server_is_69(server_factory):
    server = server_factory()
    server.stop()
    result = zato_daemon('top', server.server_dir, '--once')
    assert (result.returncode, result.stdout) == (69, '')
    assert one_line(result) == f'zato-daemon: no server is running in {server.server_dir}'


@pytest.mark.parametrize('args, says', [
    (('--json',), 'zato-daemon: --json prints one view: use it with --once'),
    ((), 'zato-daemon: top draws on a terminal, and this is not one; use --once to print one view '
         '(--once --json for scripts)'),
])
def test_json_without_once_and_no_terminal_are_usage_errors(server, args, says):
    result = zato_daemon('top', server.server_dir, *args)
    assert (result.returncode, result.stdout) == (64, '')
    assert one_line(result) == says


@needs_root
def test_a_socket_the_user_may_not_use_is_77_naming_it(shared_server):
    server_dir = shared_server.server_dir
    member = as_nobody('top', server_dir, '--once', '--json', groups=[0])
    assert member.returncode == 0, member.stderr
    assert json.loads(member.stdout)['version'] == 1
    socket_path = server_dir / 'run' / 'admin.sock'
    socket_path.chmod(0o600)
    try:
        result = as_nobody('top', server_dir, '--once', groups=[0])
    finally:
        socket_path.chmod(0o660)
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o660
    assert (result.returncode, result.stdout) == (77, '')
    assert one_line(result) == f'zato-daemon: {socket_path}: permission denied; run as root'


# ---- the live view in a real terminal

class Terminal:
    """A tmux server of its own (a private socket) with one 120x40 window running a command."""

    def __init__(self):
        self.socket = f'zato-top-{uuid.uuid4().hex[:12]}'
        self.socket_path = None

    def tmux(self, *args):
        env = _env()
        env.pop('TMUX', None)  # inside a tmux session, tmux would use that one
        # Exported sizes that are not the terminal's (pytest-xdist exports these): top must
        # follow the terminal's own size.
        env.update(COLUMNS='80', LINES='24')
        return subprocess.run(['tmux', '-L', self.socket, *args], capture_output=True, text=True, timeout=10,
                              env=env, check=True).stdout

    def start(self, command):
        self.tmux('new-session', '-d', '-s', 'top', '-x', '120', '-y', '40', command)
        self.socket_path = Path(self.tmux('display-message', '-p', '#{socket_path}').strip())

    def screen(self):
        return self.tmux('capture-pane', '-p', '-t', 'top')

    def wait_for(self, predicate, message):
        """Until predicate(screen lines) is true; its value. A timeout shows the last screen."""
        try:
            return wait_until(lambda: predicate(self.screen().splitlines()), message=message)
        except AssertionError as exc:
            raise AssertionError(f'{exc}; the screen:\n{self.screen()}') from None

    def keys(self, *keys):
        self.tmux('send-keys', '-t', 'top', *keys)

    def close(self):
        try:
            self.tmux('kill-server')
        except subprocess.CalledProcessError:
            pass  # already gone
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)  # a killed tmux server leaves it behind


@pytest.fixture
def terminal():
    terminal = Terminal()
    try:
        yield terminal
    finally:
        terminal.close()


def run_top(terminal, server, tmp_path, term=None):
    """`top DIR` in the terminal; once it exits, the shell says its status and whether the
    terminal's settings are what they were before, and stays, so the test can read that.
    The shell catches SIGINT (Ctrl-C goes to the whole foreground group) and top, which gets
    the default disposition back at exec, has it. stderr goes to a file: it must stay empty."""
    stderr = tmp_path / 'top-stderr.txt'
    top = f'{shlex.quote(sys.executable)} -m zato_daemon top {shlex.quote(str(server.server_dir))}'
    if term is not None:
        top = f'TERM={shlex.quote(term)} {top}'
    script = (f'trap : INT; cd {shlex.quote(str(REPO_ROOT))}; before=$(stty -g); {top} 2>{shlex.quote(str(stderr))}; '
              'status=$?; if [ "$(stty -g)" = "$before" ]; then t=restored; else t=changed; fi; '
              'echo "top exited: status=$status terminal=$t"; exec sleep 600')
    terminal.start(f'sh -c {shlex.quote(script)}')
    return stderr


def service_row(lines, name):
    """The columns of `name`'s row, or None while it is not on the screen."""
    return next((line.split() for line in lines if line.startswith(f'{name} ')), None)


def total_calls(lines, name):
    row = service_row(lines, name)
    return row[-1] if row else None


def assert_exited_cleanly(terminal, stderr):
    terminal.wait_for(lambda lines: any(line.startswith('top exited: ') for line in lines), 'top to exit')
    assert 'top exited: status=0 terminal=restored' in terminal.screen().splitlines()
    assert terminal.tmux('display-message', '-p', '-t', 'top', '#{alternate_on}').strip() == '0'
    assert stderr.read_text() == ''


def test_the_live_view_shows_calls_as_they_happen_and_quits_on_q(server_factory, terminal, tmp_path):
    server = server_factory(workers=2)
    for _ in range(3):
        call(server.port, 'demo.echo', {})
    stderr = run_top(terminal, server, tmp_path)
    terminal.wait_for(lambda lines: total_calls(lines, 'demo.echo') == '3', 'demo.echo with 3 calls')
    lines = terminal.screen().splitlines()
    assert_header(lines[0], server.server_dir, 2)
    assert len(lines[0]) > 80  # as wide as the terminal, not as COLUMNS says
    assert lines[2].split()[0] == 'SERVICE' and lines[2].endswith('TOTAL CALLS')
    workers = [line.split() for line in lines if line.split()[:1] in (['1'], ['2'])]
    assert sorted(int(row[1]) for row in workers) == server.worker_pids()

    for _ in range(5):
        call(server.port, 'demo.echo', {})
    # The rate shows the second in which the calls were counted, then the total.
    terminal.wait_for(lambda lines: total_calls(lines, 'demo.echo') == '8', 'demo.echo with 8 calls')

    terminal.tmux('resize-window', '-t', 'top', '-x', '60', '-y', '15')
    narrow = terminal.wait_for(lambda lines: len(lines) == 15 and lines[2].split()[:1] == ['SERVICE']
                               and 'TOTAL CALLS' not in lines[2] and lines, 'the view redrawn at 60 columns')
    assert service_row(narrow, 'demo.echo') is not None
    assert all(len(line) <= 60 for line in narrow)

    terminal.keys('q')
    assert_exited_cleanly(terminal, stderr)
    assert server.process.poll() is None


def test_ctrl_c_quits_the_live_view_with_0(server, terminal, tmp_path):
    call(server.port, 'demo.echo', {})
    stderr = run_top(terminal, server, tmp_path)
    terminal.wait_for(lambda lines: total_calls(lines, 'demo.echo') == '1', 'demo.echo on the screen')
    terminal.keys('C-c')
    assert_exited_cleanly(terminal, stderr)
    assert 'Traceback' not in terminal.screen()


def test_the_live_view_says_why_while_the_server_is_gone_and_comes_back_with_it(server, terminal, tmp_path):
    call(server.port, 'demo.echo', {})
    stderr = run_top(terminal, server, tmp_path)
    terminal.wait_for(lambda lines: total_calls(lines, 'demo.echo') == '1', 'demo.echo on the screen')
    server.stop()
    # The message is wrapped when the path makes it longer than the terminal is wide.
    says = f'the server does not answer on {server.server_dir}/run/admin.sock: [Errno '
    gone = terminal.wait_for(lambda lines: ' '.join(lines[:lines.index('')]).startswith(says) and lines,
                             'the view to say the server does not answer')
    assert gone[gone.index('') + 1] == 'retrying every 1 s; q quits'
    assert service_row(gone, 'demo.echo') is None

    server.start()
    call(server.port, 'demo.echo', {})
    terminal.wait_for(lambda lines: total_calls(lines, 'demo.echo') == '1', 'the new server on the screen')
    terminal.keys('q')
    assert_exited_cleanly(terminal, stderr)


def test_a_terminal_curses_does_not_know_is_64_saying_which(server, terminal, tmp_path):
    stderr = run_top(terminal, server, tmp_path, term='no-such-terminal')
    terminal.wait_for(lambda lines: any(line.startswith('top exited: ') for line in lines), 'top to exit')
    assert 'top exited: status=64 terminal=restored' in terminal.screen().splitlines()
    assert stderr.read_text() == ('zato-daemon: cannot use this terminal (TERM=no-such-terminal): setupterm: could '
                                  'not find terminal; use --once to print one view\n')
