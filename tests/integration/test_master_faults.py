"""Faults the master must survive, against real servers: fork failing under a process limit,
startup callables that hang or exit, reloads asked for during a reload, and runtime files
deleted under a running server."""

import contextlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.integration.background import CallsInBackground
from tests.integration.helpers import ServerProcess, free_port, request, wait_until, write_server_dir, zato_daemon

PIDS_CGROUP_ROOT = Path('/sys/fs/cgroup/pids')

CALLABLES = '''\
import os, sys, time
from zato_daemon.common import SERVER_STARTUP

MARKER = {marker!r}

def _reloading(ctx):
    return ctx.phase == SERVER_STARTUP.PHASE.FS_CONFIG_ONLY and os.path.exists(MARKER)

def hang_at_reload(ctx):
    if _reloading(ctx):
        open(MARKER + '.entered', 'w').close()
        time.sleep(3600)

def slow_at_reload(ctx):
    if _reloading(ctx):
        open(MARKER + '.entered', 'w').close()
        time.sleep(1.5)

def hang_always(ctx):
    if ctx.phase == SERVER_STARTUP.PHASE.FS_CONFIG_ONLY:
        time.sleep(3600)
'''


def make_server(tmp_path, callable_name=None, workers=2, main='', timeout=3):
    port = free_port()
    misc = f'[misc]\nstartup_callable = faults.{callable_name}\nstartup_callable_timeout = {timeout}\n' \
        if callable_name else ''
    server_dir = write_server_dir(tmp_path / 'server', port, workers=workers, main=main, sections=misc)
    marker = tmp_path / 'reloading'
    (server_dir / 'extlib').mkdir(exist_ok=True)
    (server_dir / 'extlib' / 'faults.py').write_text(CALLABLES.format(marker=str(marker)))
    return ServerProcess(server_dir, port), marker


@pytest.fixture
def stopping():
    """Servers to stop at the end, whatever happened."""
    servers = []
    yield servers.append
    for server in servers:
        server.stop()


def last_reload(server):
    return ((server.status() or {}).get('reload') or {}).get('last')


# fork() failing ################################################################################

@contextlib.contextmanager
def process_limit(pid):
    """`pid` in a pids cgroup of its own, no new process allowed; lifted on `lift()`."""
    if not os.access(PIDS_CGROUP_ROOT, os.W_OK):
        pytest.skip('no writable pids cgroup controller on this machine')
    group = PIDS_CGROUP_ROOT / f'zato-daemon-test-{os.getpid()}-{pid}'
    group.mkdir()
    try:
        (group / 'cgroup.procs').write_text(str(pid))
        (group / 'pids.max').write_text('1')
        yield lambda: (group / 'pids.max').write_text('max')
    finally:
        # The master and the workers it forked meanwhile, all back where they came from.
        for member in (group / 'cgroup.procs').read_text().split():
            with contextlib.suppress(OSError):
                (PIDS_CGROUP_ROOT / 'cgroup.procs').write_text(member)
        group.rmdir()


def test_fork_failing_at_a_respawn_is_retried_until_the_limit_lifts(tmp_path, stopping):
    server, _ = make_server(tmp_path)
    stopping(server)
    server.start()
    first, second = server.worker_pids()
    with process_limit(server.pid) as lift, CallsInBackground(server.port) as calls:
        # A worker that ends cleanly (drains), so that no request is lost to the worker itself.
        os.kill(first, signal.SIGTERM)
        wait_until(lambda: server.log().count('Cannot start worker') >= 2, message='fork to fail twice')
        assert server.process.poll() is None, 'the master halted'
        assert server.worker_pids() == [second]
        lift()
        wait_until(lambda: len(server.worker_pids()) == 2, timeout=45, message='the respawn once the limit lifted')
    assert not calls.failures and calls.answered > 0, calls.failures[:5]
    print(f'fork failing at a respawn: {calls.answered} calls answered, {len(calls.failures)} failed')
    log = server.log()
    assert 'fork() failed: Resource temporarily unavailable; trying again in' in log
    assert 'Unexpected error in the master' not in log


# Startup callables that hang or exit ##########################################################

def test_a_callable_hanging_at_reload_refuses_it_while_workers_are_supervised(tmp_path, stopping):
    server, marker = make_server(tmp_path, 'hang_at_reload')
    stopping(server)
    server.start()
    first, second = server.worker_pids()
    marker.write_text('')
    with CallsInBackground(server.port) as calls:
        started = time.time()
        server.signal(signal.SIGHUP)
        wait_until(lambda: Path(f'{marker}.entered').exists(), message='the callable to run')
        # While it hangs, a worker that ends is still replaced (SIGTERM: it drains, so no
        # call is lost to the worker itself and every failure would be the master's).
        os.kill(first, signal.SIGTERM)
        wait_until(lambda: len(server.worker_pids()) == 2 and first not in server.worker_pids(),
                   message='the killed worker to be replaced during the reload')
        outcome = wait_until(lambda: last_reload(server), timeout=20, message='the reload outcome')
    assert not calls.failures and calls.answered > 0, calls.failures[:5]
    print(f'callable hanging at reload: {calls.answered} calls answered, {len(calls.failures)} failed')
    assert outcome['outcome'] == 'refused' and outcome['started_at'] >= started - 1
    assert 'startup callable faults.hang_at_reload is still running in phase FS_CONFIG_ONLY after 3 s' \
        in outcome['reason']
    assert outcome['exit_status'] == 70
    assert 'startup_callable_timeout' in server.log()
    # And stop works at once, the callable's thread notwithstanding.
    stopped = time.monotonic()
    result = zato_daemon('stop', server.server_dir, timeout=30)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - stopped < 15
    assert second not in server.worker_pids()


def test_a_callable_hanging_at_start_fails_the_start_with_one_line(tmp_path):
    server, _ = make_server(tmp_path, 'hang_always', timeout=2)
    started = time.monotonic()
    result = zato_daemon('start', server.server_dir, timeout=60)
    assert result.returncode == 70, result.stderr
    assert time.monotonic() - started < 30
    assert ('startup callable faults.hang_always is still running in phase FS_CONFIG_ONLY after 2 s '
            '([misc] startup_callable_timeout)') in result.stderr
    assert 'Traceback' not in result.stderr
    assert zato_daemon('stop', server.server_dir).returncode in (0, 69)


def test_a_startup_module_calling_sys_exit_at_import_is_one_clear_error(tmp_path):
    server, _ = make_server(tmp_path, 'hang_always')
    (server.server_dir / 'extlib' / 'faults.py').write_text('import sys\nsys.exit(3)\n')
    for command in ('check-config', 'start'):
        result = zato_daemon(command, server.server_dir, timeout=60)
        assert result.returncode == 78, (command, result.stderr)
        assert 'module faults called sys.exit(3) while importing' in result.stderr, result.stderr


# A reload asked for during a reload ###########################################################

def origin_allowed(server, origin):
    status, _, _ = request(server.port, 'POST', '/services/demo.echo', b'{}',
                           {'Content-Type': 'application/json', 'Origin': origin})
    return status != 403


def test_a_reload_asked_for_during_a_reload_is_applied_after_it(tmp_path, stopping):
    server, marker = make_server(tmp_path, 'slow_at_reload', workers=1)
    stopping(server)
    server.start()
    conf = server.server_dir / 'server.conf'
    marker.write_text('')
    conf.write_text(conf.read_text().replace('workers = 1', 'workers = 2'))
    server.signal(signal.SIGHUP)
    # The first reload read the files and runs its slow callable: this change comes after.
    wait_until(lambda: Path(f'{marker}.entered').exists(), message='the first reload to prepare')
    conf.write_text(conf.read_text().replace('[main]\n', '[main]\nallowed_origins = https://portal.example.com\n'))
    server.signal(signal.SIGHUP)
    wait_until(lambda: server.log().count('Reload complete') == 2, timeout=40, message='both reloads')
    assert 'it follows once this one ends' in server.log()
    assert len(server.worker_pids()) == 2
    # "Reload complete" comes as the previous workers are told to drain: one of them may still
    # take a connection in the few milliseconds before it stops accepting.
    wait_until(lambda: origin_allowed(server, 'https://portal.example.com'), timeout=10,
               message='the second reload\'s allowed_origins to be served')
    assert not origin_allowed(server, 'https://elsewhere.example.com')
    assert last_reload(server)['outcome'] == 'applied'


# Deleted runtime files ########################################################################

def test_a_deleted_runtime_directory_is_recreated_and_the_cli_finds_the_server(tmp_path, stopping):
    server, _ = make_server(tmp_path)
    stopping(server)
    server.start()
    runtime = server.server_dir / 'run'
    workers = set(server.worker_pids())
    with CallsInBackground(server.port) as calls:
        shutil.rmtree(runtime)
        deleted = time.monotonic()
        wait_until(lambda: zato_daemon('info', server.server_dir, '--json').returncode == 0, timeout=30,
                   message='info to answer again')
        repaired_in = time.monotonic() - deleted
    print(f'runtime directory repaired in {repaired_in:.2f} s; {calls.answered} calls answered meanwhile')
    assert not calls.failures and calls.answered > 0, calls.failures[:5]
    assert (runtime / 'zato-daemon.pid').read_text().strip() == str(server.pid)
    assert json.loads((runtime / 'master.json').read_text())['master_proc_pid'] == server.pid
    log = server.log()
    for name in ('runtime directory', 'pidfile', 'status file', 'admin socket'):
        assert f'The {name} ' in log and 'was deleted while the server ran; recreated it' in log
    # The workers that served the deleted admin socket were replaced by ones serving the new one.
    wait_until(lambda: not workers & set(server.worker_pids()) and len(server.worker_pids()) == 2,
               message='the workers to be replaced')
    assert repaired_in < 15
    # A second start is refused by the recreated lock, and stop finds the server.
    assert zato_daemon('start', server.server_dir).returncode == 69
    result = zato_daemon('stop', server.server_dir, timeout=60)
    assert result.returncode == 0 and f'stopped master pid {server.pid}' in result.stdout, result.stdout


def test_a_reload_refusal_in_master_json_is_redacted(tmp_path, stopping):
    # master.json is readable by the server's group: a callable's exception quoting a DSN
    # must not land there in clear, as it does not in the log or the CLI's output.
    server, marker = make_server(tmp_path, 'raise_dsn_at_reload', workers=1)
    (server.server_dir / 'extlib' / 'faults.py').write_text(CALLABLES.format(marker=str(marker)) + """
def raise_dsn_at_reload(ctx):
    if _reloading(ctx):
        raise RuntimeError('cannot reach postgresql://admin:S3cretPW@db/x')
""")
    stopping(server)
    server.start()
    marker.write_text('')
    result = zato_daemon('reload', server.server_dir, timeout=60)
    assert result.returncode == 70, result.stderr
    status_text = (server.server_dir / 'run' / 'master.json').read_text()
    assert 'postgresql://' in status_text and 'S3cretPW' not in status_text
    assert 'S3cretPW' not in result.stderr + result.stdout
