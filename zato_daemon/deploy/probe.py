"""Imports service modules in a disposable child process before any worker deploys them.

A module is user code: at import it may raise, call os._exit(), loop for ever, segfault or
print anything. Imported in a worker, the worst of these end or hang the worker, and every
replacement imports it again. So the master first imports a new or changed module in a
child (`python -P -c CHILD_BOOTSTRAP REQUEST`): the workers' sys.path plus the extlib
directories, the master's environment but for the supervisor's variables, a session of its
own (so a kill reaches whatever the module started), and a time limit per module. The child deploys each module into a fresh
ServiceStore, the way a worker does (same compile, same rules), and reports one JSON line
per module on its original stdout; before importing anything it points fd 1 at stderr,
so what a module prints cannot corrupt the report. What the modules print is logged at
DEBUG, never as raw lines in the journal.

A module that ends the child gets its verdict from the exit status; the modules after it
are imported in a new child. Which of them may be deployed is verdict.py's decision.
"""

import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from zato_daemon.deploy.sources import service_files
from zato_daemon.deploy.verdict import judge
from zato_daemon.errors import EXIT_SOFTWARE, ServiceDeployError, ZatoDaemonError
from zato_daemon.services.builtin import BUILTIN_SERVICES
from zato_daemon.services.cache_builtin import CACHE_SERVICES
from zato_daemon.services.registry import ServiceStore

# How long one module may take to import; [hot_deploy] import_timeout in pickup.conf when set.
IMPORT_TIME_LIMIT = 10.0
# What is kept of what the modules print while importing, for the DEBUG record.
OUTPUT_KEPT = 4096
# How often the parent looks at the child between two reads.
POLL_INTERVAL = 0.05
READ_SIZE = 65536
# At most this many reads of one pipe in a row: a module printing without pause must not
# keep the parent from checking the time limit.
READS_PER_TURN = 16

# Variables that address the server's supervisor: a probe must never notify systemd, pet
# its watchdog or take its sockets.
SUPERVISOR_VARIABLES = ('NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'LISTEN_FDS', 'LISTEN_PID',
                        'LISTEN_FDNAMES')

# The child takes the master's sys.path before it imports anything of this package or of
# the modules (-P keeps the working directory out of it until then).
CHILD_BOOTSTRAP = ('import json, sys; request = json.loads(sys.argv[1]); sys.path[:] = request["sys_path"]; '
                   'from zato_daemon.deploy.probe import main; main(request)')
BUILTIN_HOLDER = 'the built-in services'
BUILTIN_NAMES = frozenset(service.name for service in (*BUILTIN_SERVICES, *CACHE_SERVICES))

logger = logging.getLogger('zato_daemon.deploy')


class ProbeError(ZatoDaemonError):
    """The child could not be started, or ended before it imported anything (not a module's fault)."""

    exit_status = EXIT_SOFTWARE


class ProbeCancelled(Exception):
    """The caller asked the probe to stop (the server stops); the child was killed."""


@dataclass(frozen=True)
class Target:
    """One module to import: a file (`kind` 'file', `name` its path) or an installed module
    (`kind` 'module', `name` its dotted name)."""

    kind: str
    name: str


@dataclass(frozen=True)
class ProbeResult:
    """What importing one module in the child gave: its hash and service names, or why not.

    `error` (with `line`) is the registry's reason, as a worker would have reported it;
    `exit_status` / `signal_number` say the child ended during this import; `time_limit` that
    it was still importing at the limit, then killed.
    """

    target: Target
    sha256: str = ''
    services: tuple = ()
    error: str = ''
    line: int = None
    exit_status: int = None
    signal_number: int = None
    time_limit: float = None

    @property
    def imported(self):
        return not (self.error or self.exit_status is not None or self.signal_number is not None
                    or self.time_limit is not None)


# ---- the parent side


def probe(targets, sys_path, time_limit=IMPORT_TIME_LIMIT, cancelled=None):
    """Imports every target in disposable children; returns one ProbeResult per target, in order.

    `sys_path`: the children's sys.path. `cancelled`: a threading.Event; once set, the
    child is killed and ProbeCancelled raised. Raises ProbeError when no child can run.
    """
    results = []
    while len(results) < len(targets):
        results.extend(_run_child(targets[len(results):], sys_path, time_limit, cancelled))
    return results


# The children running now, whatever thread started them: `kill_running()` ends them when
# the process that started them stops (a stop during a reload, Ctrl-C during a start).
# They run in sessions of their own, which no terminal's Ctrl-C and no KillMode reach.
_running = set()
_running_lock = threading.Lock()


def kill_running():
    """Kills every probe child still running (and what it started in its session)."""
    with _running_lock:
        processes = list(_running)
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def probe_sys_path(paths):
    """The sys.path a worker would have: the master's, then the extlib directories."""
    entries = list(sys.path)
    entries += [str(path) for path in paths.extlib if str(path) not in entries]
    return entries


def _run_child(targets, sys_path, time_limit, cancelled):
    """Runs one child on `targets`; returns the results it gave (at least one)."""
    request = json.dumps({'sys_path': [str(entry) for entry in sys_path],
                          'targets': [[target.kind, target.name] for target in targets]})
    try:
        process = subprocess.Popen([sys.executable, '-P', '-c', CHILD_BOOTSTRAP, request], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_environment(),
                                   start_new_session=True)
    except OSError as exc:
        raise ProbeError(f'cannot start a process to import service modules in: {exc.strerror or exc}') from None
    with _running_lock:
        _running.add(process)
    pipes = _Pipes(process)
    results = []
    is_ready = False
    try:
        deadline = time.monotonic() + time_limit
        while True:
            if cancelled is not None and cancelled.is_set():
                raise ProbeCancelled()
            pipes.read(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))
            has_exited = _has_exited(process)
            if has_exited:
                pipes.drain()
            for message in pipes.messages():
                if message.get('ready'):
                    is_ready = True
                elif len(results) < len(targets):
                    results.append(_result(targets[len(results)], message))
                deadline = time.monotonic() + time_limit
            if len(results) == len(targets):
                return results
            if has_exited:
                if not is_ready:
                    raise ProbeError(f'the process importing service modules ended before importing any '
                                     f'({_describe_status(_end(process))}): {pipes.last_output_line()}')
                return results + [_ended(targets[len(results)], _end(process))]
            if time.monotonic() >= deadline:
                if not is_ready:
                    raise ProbeError(f'the process importing service modules did not start within {time_limit:g} s')
                return results + [ProbeResult(targets[len(results)], time_limit=time_limit)]
    finally:
        _end(process)
        with _running_lock:
            _running.discard(process)
        pipes.close()
        if pipes.output:
            logger.debug('Output of importing %s in a disposable process%s:\n%s',
                         ', '.join(target.name for target in targets),
                         f' ({pipes.dropped} more bytes not kept)' if pipes.dropped else '',
                         pipes.output.decode('utf-8', 'replace'))


def _child_environment():
    return {name: value for name, value in os.environ.items() if name not in SUPERVISOR_VARIABLES}


def _has_exited(process):
    # WNOWAIT: the child stays a zombie, so its process group cannot be reused by another
    # process before _end() kills what the module may have left running in it.
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _end(process):
    """Kills the child's whole session (what a module started too) and reaps it; its returncode."""
    if process.returncode is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()
    return process.returncode


def _describe_status(returncode):
    if returncode < 0:
        return f'killed by signal {-returncode}'
    return f'exit status {returncode}'


def _ended(target, returncode):
    # The child was killed by our SIGKILL only after it had exited by itself: the status is its own.
    if returncode < 0:
        return ProbeResult(target, signal_number=-returncode)
    return ProbeResult(target, exit_status=returncode)


def _result(target, message):
    if 'error' in message:
        return ProbeResult(target, error=str(message['error']), line=message.get('line'))
    return ProbeResult(target, sha256=str(message.get('sha256', '')),
                       services=tuple(map(str, message.get('services', ()))))


class _Pipes:
    """The child's stdout (the report, JSON lines) and stderr (what modules print), read without blocking."""

    def __init__(self, process):
        self.selector = selectors.DefaultSelector()
        self.report = bytearray()
        self.output = bytearray()
        self.dropped = 0
        self.streams = (process.stdout, process.stderr)
        for stream in self.streams:
            os.set_blocking(stream.fileno(), False)
            self.selector.register(stream.fileno(), selectors.EVENT_READ, stream is process.stdout)

    def read(self, timeout):
        for key, _ in self.selector.select(timeout):
            self._read(key)

    def drain(self):
        """What is written already, without waiting: the child has exited (something it started may not)."""
        for key in list(self.selector.get_map().values()):
            self._read(key)

    def _read(self, key):
        for _ in range(READS_PER_TURN):
            try:
                chunk = os.read(key.fd, READ_SIZE)
            except BlockingIOError:
                return
            if not chunk:
                self.selector.unregister(key.fd)
                return
            if key.data:
                self.report += chunk
            else:
                kept = chunk[:max(0, OUTPUT_KEPT - len(self.output))]
                self.output += kept
                self.dropped += len(chunk) - len(kept)

    def messages(self):
        """The complete report lines received since the last call, decoded."""
        *lines, rest = self.report.split(b'\n')
        self.report = bytearray(rest)
        decoded = []
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue  # only a module writing to the report's descriptor on purpose gets here
            if isinstance(message, dict):
                decoded.append(message)
        return decoded

    def last_output_line(self):
        lines = self.output.decode('utf-8', 'replace').strip().splitlines()
        return lines[-1] if lines else 'no output'

    def close(self):
        self.selector.close()
        for stream in self.streams:
            stream.close()


# ---- configured modules


def vet_configured(config, paths, time_limit=None):
    """Raises ServiceDeployError when a configured service module would not deploy.

    Imports `[services] modules` and every file of `[services] paths` in disposable children,
    in the order the workers deploy them; one that fails, or defines a service name a module
    before it (or a built-in service) holds, is refused with the module and the reason.
    Returns every service name they define, the built-in ones included: the names a pickup
    file may not redefine. `time_limit`: per module, by default pickup.conf's import_timeout.
    """
    if time_limit is None:
        time_limit = config.pickup_config.hot_deploy.import_timeout
    targets = [Target('module', name) for name in config.server_config.services.modules]
    targets += [Target('file', str(path)) for configured in paths.service_paths for path in service_files(configured)]
    # A file named twice (itself, and its directory) is deployed once.
    targets = list(dict.fromkeys(targets))
    holders = dict.fromkeys(BUILTIN_NAMES, BUILTIN_HOLDER)
    for result in probe(targets, probe_sys_path(paths), time_limit) if targets else ():
        verdict = judge(result, holders)
        if not verdict.accepted:
            raise ServiceDeployError(verdict.reason, result.target.name, verdict.line)
        holders.update(dict.fromkeys(result.services, result.target.name))
    return set(holders)


# ---- the child side


def _import_one(target):
    store = ServiceStore()
    try:
        if target.kind == 'file':
            info = store.deploy_file(target.name)
        else:
            info = store.deploy_module(target.name)
    except ServiceDeployError as exc:
        return {'error': exc.reason, 'line': exc.line}
    except BaseException as exc:  # noqa: B036 - a module may raise anything, KeyboardInterrupt too
        return {'error': f'raised {exc!r} while importing'}
    return {'sha256': info.sha256, 'services': info.service_names}


def _send(fd, message):
    data = (json.dumps(message) + '\n').encode()
    while data:
        data = data[os.write(fd, data):]


def main(request):
    """The child (CHILD_BOOTSTRAP): imports each target of the request, reporting one JSON line each."""
    report_fd = os.dup(1)
    os.dup2(2, 1)
    _send(report_fd, {'ready': True})
    for kind, name in request['targets']:
        _send(report_fd, _import_one(Target(kind, name)))
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a module may have replaced or closed it
            pass
    # Not a normal exit: threads a module started, or its atexit handlers, must not keep the
    # child alive or change its status once everything is reported.
    os._exit(0)
