"""zato-daemon against the fastest Python HTTP servers: uvicorn, granian, gunicorn+gevent.

    /usr/bin/python3 bench/compare.py                          # the full matrix, 3 rounds of 5 s
    /usr/bin/python3 bench/compare.py --workers 1 --connections 50 --bodies small --rounds 1 --seconds 2
    /usr/bin/python3 bench/compare.py --servers zato uvicorn --json /tmp/compare.json
    git worktree add /tmp/zd-old HEAD~3 && \
    /usr/bin/python3 bench/compare.py --servers zato --against /tmp/zd-old   # this tree vs an older one

Every server echoes a JSON POST on 127.0.0.1 (json.loads of the body, json.dumps back,
Content-Type application/json), with the same number of worker processes:

- zato-daemon, demo.echo on its /echo channel with the operability features on
  (throughput.py's zato_server_dir), run by --python (Debian's /usr/bin/python3 with its
  python3-gevent and python3-httptools) from this tree, and from --against TREE if given;
- uvicorn --loop uvloop --http httptools, a raw ASGI app (echo_apps.asgi);
- granian, a raw RSGI app (echo_apps.rsgi) and throughput.py's WSGI app;
- gunicorn -k gevent, the same WSGI app.

uvicorn, uvloop, httptools, granian, gunicorn and gevent come from PyPI, pinned, into one
venv made from the same interpreter without its system site packages (--venv; created on
first use), so zato-daemon's Debian libraries and the venv's never mix.

Each server starts once per worker count and stays up through that count's cells; its echo
answer is checked once per body before anything is measured. In each cell (workers x wrk
connections x body) every server gets a warm-up, then the servers take turns, round after
round. The table gives the median req/s, p50 and p99 of the rounds (wrk -t1), the CPU per
request (utime + stime of the server's whole process tree from /proc, over all rounds), the
cores that CPU amounts to, wrk's errors, and the ratios to the first server (zato-daemon).
"""

import argparse
import contextlib
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import throughput  # noqa: E402  (bench/ is not a package; the path is set just above)

REPO = throughput.REPO

# Pinned so that runs months apart measure the same servers; change together with the docs.
# gunicorn's gevent worker imports packaging without declaring it.
REQUIREMENTS = ('uvicorn==0.55.0', 'uvloop==0.23.0', 'httptools==0.9.0', 'granian==2.8.9', 'gunicorn==27.0.1',
                'gevent==26.9.0', 'packaging==26.4')
VENV_MARKER = 'zato-bench-requirements.txt'
DEFAULT_VENV = Path.home() / '.cache' / 'zato-daemon-bench' / 'venv'

LARGE_RECORDS = 89  # makes LARGE_BODY 10,231 bytes


def large_body():
    """About 10 KB of JSON: an object holding a list of records, the same bytes every run."""
    records = [{'id': number, 'customer': f'c-{number:04d}', 'amount': round(10 + number * 1.37, 2),
                'currency': 'EUR', 'ok': number % 3 != 0, 'tags': ['retail', f'region-{number % 5}']}
               for number in range(LARGE_RECORDS)]
    return json.dumps({'batch': 'b-0001', 'source': 'bench', 'records': records})


BODIES = {'small': throughput.BODY, 'large': large_body()}

# wrk counts a request slower than this as a timeout error; stated so the docs can say it.
WRK_TIMEOUT = '2s'
SUMMARY_MARK = 'ZATO-BENCH-SUMMARY '

# wrk's own report is for people; done() gives the exact figures, latencies in microseconds.
WRK_SCRIPT = '''\
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, '
    .. '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
'''

SERVERS = ('zato', 'uvicorn', 'granian-rsgi', 'granian-wsgi', 'gunicorn')
LABELS = {'zato': 'zato-daemon', 'against': 'zato-daemon (--against)', 'uvicorn': 'uvicorn+uvloop+httptools (ASGI)',
          'granian-rsgi': 'granian (RSGI)', 'granian-wsgi': 'granian (WSGI)', 'gunicorn': 'gunicorn+gevent'}


class BenchError(Exception):
    """A reason to stop the whole run, said in one line (the server's name first)."""


# --- Pure decisions -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    """How to start one contender: argv run in cwd with PYTHONPATH, answering on path."""
    key: str
    argv: tuple
    cwd: Path
    pythonpath: str
    port: int
    path: str


def server_specs(keys, workers, ports, python, venv, workdir, server_dirs):
    """The Spec of each selected contender, in the order given. ports and server_dirs map a
    key to its port and (for zato-daemon) its server directory; server_dirs maps 'against'
    to (tree, directory) when --against is used."""
    bin_dir = Path(venv) / 'bin'
    apps = f'{BENCH}:{workdir}'
    host = ('--host', '127.0.0.1')
    specs = []
    for key in keys:
        port = ports[key]
        if key in ('zato', 'against'):
            tree, server_dir = server_dirs[key]
            specs.append(Spec(key, (python, '-m', 'zato_daemon', 'start', str(server_dir), '--fg'), Path(tree),
                              str(tree), port, '/echo'))
        elif key == 'uvicorn':
            specs.append(Spec(key, (str(bin_dir / 'uvicorn'), 'echo_apps:asgi', *host, '--port', str(port),
                                    '--workers', str(workers), '--loop', 'uvloop', '--http', 'httptools',
                                    '--log-level', 'warning', '--no-access-log', '--lifespan', 'off'),
                              Path(workdir), apps, port, '/'))
        elif key in ('granian-rsgi', 'granian-wsgi'):
            interface, target = ('rsgi', 'echo_apps:rsgi') if key == 'granian-rsgi' else ('wsgi', 'wsgi_app:app')
            specs.append(Spec(key, (str(bin_dir / 'granian'), '--interface', interface, *host, '--port', str(port),
                                    '--workers', str(workers), '--loop', 'uvloop', '--log-level', 'warning',
                                    '--no-access-log', target), Path(workdir), apps, port, '/'))
        elif key == 'gunicorn':
            specs.append(Spec(key, (str(bin_dir / 'gunicorn'), '-k', 'gevent', '-w', str(workers), '-b',
                                    f'127.0.0.1:{port}', '--log-level', 'warning', 'wsgi_app:app'),
                              Path(workdir), apps, port, '/'))
        else:
            raise ValueError(f'no such server: {key}')
    return specs


def server_env(environ, pythonpath):
    """The environment a server runs in: only its own PYTHONPATH, no user site packages,
    nothing of a virtualenv the script itself may run in."""
    env = {name: value for name, value in environ.items() if name not in ('PYTHONPATH', 'VIRTUAL_ENV', 'PYTHONHOME')}
    env.update(PYTHONPATH=pythonpath, PYTHONNOUSERSITE='1', PYTHONDONTWRITEBYTECODE='1')
    return env


def echo_problem(status, content_type, answer, sent):
    """What is wrong with a server's answer to the echo of `sent`, or None."""
    if status != 200:
        return f'status {status}, body {answer[:200]!r}'
    if not (content_type or '').startswith('application/json'):
        return f'Content-Type {content_type!r}'
    try:
        echoed = json.loads(answer)
    except ValueError:
        return f'an answer that is not JSON: {answer[:200]!r}'
    if echoed != json.loads(sent):
        return f'an answer that is not the body sent: {answer[:200]!r}'
    return None


def parse_wrk(stdout):
    """wrk's done() line as a dict, or None if wrk printed none."""
    for line in stdout.splitlines():
        if line.startswith(SUMMARY_MARK):
            return json.loads(line[len(SUMMARY_MARK):])
    return None


def parse_stat(text):
    """(utime, stime, threads) from the text of /proc/PID/stat; the command name, in
    parentheses, may itself hold spaces and parentheses."""
    fields = text.rpartition(')')[2].split()
    return int(fields[11]), int(fields[12]), int(fields[17])


def cpu_delta(before, after):
    """(user ticks, system ticks, threads, processes changed) between two {pid: (utime,
    stime, threads)} snapshots of a process tree. A process that appeared counts from zero;
    one that vanished took its CPU time with it, hence the flag."""
    user = system = threads = 0
    for pid, (utime, stime, count) in after.items():
        old_utime, old_stime, _ = before.get(pid, (0, 0, 0))
        user += utime - old_utime
        system += stime - old_stime
        threads += count
    return user, system, threads, set(before) != set(after)


def run_figures(wrk, user_s, system_s, threads, processes, changed):
    """One measured run: wrk's summary and the CPU of the server's tree, in the JSON's units."""
    seconds = wrk['duration_us'] / 1e6
    return {'requests': wrk['requests'], 'seconds': seconds, 'rate': wrk['requests'] / seconds,
            'p50_ms': wrk['p50_us'] / 1000, 'p99_ms': wrk['p99_us'] / 1000, 'max_ms': wrk['max_us'] / 1000,
            'bytes': wrk['bytes'], 'cpu_user_s': user_s, 'cpu_system_s': system_s, 'threads': threads,
            'processes': processes, 'processes_changed': changed,
            'errors': {kind: wrk[kind] for kind in ('status', 'connect', 'read', 'write', 'timeout')}}


def describe_errors(errors):
    """wrk's error counts in words, '' when there were none."""
    parts = []
    if errors.get('status'):
        parts.append(f'{errors["status"]:,} non-2xx')
    sockets = [f'{kind} {errors[kind]:,}' for kind in ('connect', 'read', 'write', 'timeout') if errors.get(kind)]
    if sockets:
        parts.append('socket errors: ' + ', '.join(sockets))
    return '; '.join(parts)


def summarize(runs):
    """The medians of a server's rounds and its CPU per request over all of them."""
    requests = sum(run['requests'] for run in runs)
    seconds = sum(run['seconds'] for run in runs)
    user = sum(run['cpu_user_s'] for run in runs)
    system = sum(run['cpu_system_s'] for run in runs)
    errors = {kind: sum(run['errors'][kind] for run in runs) for kind in runs[0]['errors']}
    return {'rate': statistics.median(run['rate'] for run in runs),
            'p50_ms': statistics.median(run['p50_ms'] for run in runs),
            'p99_ms': statistics.median(run['p99_ms'] for run in runs),
            'cpu_user_us': user / requests * 1e6 if requests else None,
            'cpu_system_us': system / requests * 1e6 if requests else None,
            'cores': (user + system) / seconds if seconds else None,
            'errors': errors, 'processes_changed': any(run['processes_changed'] for run in runs)}


def render_cell(title, summaries):
    """A cell's Markdown: the title, a loud line if any server had errors, and the table.
    summaries maps label -> summarize(); the first label is the base of the ratios."""
    base_label, base = next(iter(summaries.items()))
    lines = [f'### {title}', '']
    failed = {label: describe_errors(s['errors']) for label, s in summaries.items() if describe_errors(s['errors'])}
    if failed:
        lines += ['**ERRORS in this cell, its figures are not comparable: ' +
                  '; '.join(f'{label}: {text}' for label, text in failed.items()) + '**', '']
    changed = [label for label, s in summaries.items() if s['processes_changed']]
    if changed:
        lines += ['**A process started or ended during a run of: ' + ', '.join(changed) +
                  ' (CPU per request misses what a vanished process used)**', '']
    lines += [f'| server | req/s | p50 ms | p99 ms | CPU µs/req (user + sys) | cores | req/s vs {base_label} '
              f'| p99 vs {base_label} | errors |', '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for label, s in summaries.items():
        if s['cpu_user_us'] is None:
            cpu, cores = '-', '-'
        else:
            cpu = f'{s["cpu_user_us"] + s["cpu_system_us"]:.0f} ({s["cpu_user_us"]:.0f} + {s["cpu_system_us"]:.0f})'
            cores = f'{s["cores"]:.2f}'
        rate_ratio = f'{s["rate"] / base["rate"]:.2f}x' if base['rate'] else '-'
        p99_ratio = f'{s["p99_ms"] / base["p99_ms"]:.2f}x' if base['p99_ms'] else '-'
        lines.append(f'| {label} | {s["rate"]:,.0f} | {s["p50_ms"]:.2f} | {s["p99_ms"]:.2f} | {cpu} | {cores} '
                     f'| {rate_ratio} | {p99_ratio} | {failed.get(label, "-")} |')
    return '\n'.join(lines) + '\n'


def cell_title(workers, connections, body_name, body_bytes, rounds, seconds):
    body = f'{body_bytes:,}-byte body' + (' (records)' if body_name == 'large' else '')
    return (f'{workers} worker{"s" if workers > 1 else ""}, wrk -t1 -c{connections}, {body}, '
            f'{rounds} round{"s" if rounds > 1 else ""} of {seconds} s')


# --- I/O ----------------------------------------------------------------------------------------------------------

def say(text):
    print(text, file=sys.stderr, flush=True)


def ensure_venv(venv, python):
    """The venv of the PyPI contenders, created from `python` with REQUIREMENTS unless it
    already holds exactly them (the marker file is written last, so a broken install is
    redone)."""
    venv = Path(venv)
    wanted = '\n'.join((python, *REQUIREMENTS)) + '\n'
    marker = venv / VENV_MARKER
    if marker.exists() and marker.read_text() == wanted:
        return venv
    say(f'Creating the benchmark venv {venv} from {python} (no system site packages) with '
        f'{", ".join(REQUIREMENTS)}; once, later runs reuse it')
    try:
        subprocess.run([python, '-m', 'venv', '--clear', str(venv)], check=True, timeout=300)
        subprocess.run([str(venv / 'bin' / 'python'), '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check',
                        *REQUIREMENTS], check=True, timeout=1200)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        raise BenchError(f'benchmark venv {venv}: {error}') from None
    marker.write_text(wanted)
    return venv


def interpreter_versions(python, env, modules):
    """{module: version, 'python': version, 'paths': where each module came from} as the
    given interpreter in env sees them."""
    code = ('import importlib, importlib.metadata as m, json, sys\n'
            f'modules = {list(modules)!r}\n'
            'print(json.dumps({"python": sys.version.split()[0], "executable": sys.executable,\n'
            '  "versions": {n: m.version(n) for n in modules},\n'
            '  "paths": {n: importlib.import_module(n.replace("-", "_")).__file__ for n in modules}}))')
    result = subprocess.run([python, '-c', code], env=env, capture_output=True, text=True, timeout=60)
    if result.returncode:
        raise BenchError(f'{python}: cannot import {", ".join(modules)}: {result.stderr.strip().splitlines()[-1:]}')
    return json.loads(result.stdout)


def tree_commit(tree):
    """The tree's commit, and whether zato_daemon/ differs from it (the code measured)."""
    git = ['git', '-C', str(tree)]
    commit = subprocess.run([*git, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True, timeout=30)
    if commit.returncode:
        return 'not a git checkout'
    changed = subprocess.run([*git, 'status', '--porcelain', '--', 'zato_daemon'], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    return commit.stdout.strip() + (' with uncommitted changes in zato_daemon/' if changed else '')


def process_tree(root):
    """The pids of root and all its descendants (the children of every thread)."""
    pids, pending = [], [root]
    while pending:
        pid = pending.pop()
        pids.append(pid)
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for task in Path(f'/proc/{pid}/task').iterdir():
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    pending.extend(int(child) for child in (task / 'children').read_text().split())
    return pids


def cpu_snapshot(root):
    snapshot = {}
    for pid in process_tree(root):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            snapshot[pid] = parse_stat(Path(f'/proc/{pid}/stat').read_text())
    return snapshot


class Contender(throughput.Server):
    """throughput.Server with the server's output kept in a log file (its tail explains a
    failed start) and nothing of its process group left behind."""

    def __init__(self, spec, label, log_path):
        super().__init__(label, list(spec.argv), spec.port, spec.cwd, server_env(os.environ, spec.pythonpath))
        self.spec, self.log_path = spec, log_path

    def __enter__(self):
        with open(self.log_path, 'wb') as log:
            self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def __exit__(self, *exc_info):
        if self.process.poll() is None:
            super().__exit__(*exc_info)
        # Workers that outlived their leader (uvicorn's and granian's are spawned, not forked).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def log_tail(self, lines=15):
        text = self.log_path.read_text(errors='replace').strip().splitlines()[-lines:]
        return '\n'.join('    ' + line for line in text) or '    (no output)'

    def check_alive(self):
        if self.process.poll() is not None:
            raise BenchError(f'{self.name} exited with status {self.process.returncode}; its last output:\n'
                             f'{self.log_tail()}')

    def wait_ready(self, bodies, timeout=60):
        """Until the port accepts connections and the echo of each body is right."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                throughput.wait_for_port(self.port, timeout=0.5)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise BenchError(f'{self.name}: nothing listens on port {self.port} after {timeout} s') from None
        sizes = {}
        for name, body in bodies.items():
            status, content_type, answer = self.post(body, deadline)
            problem = echo_problem(status, content_type, answer, body)
            if problem:
                raise BenchError(f'{self.name} answered the echo of the {name} body wrongly: {problem}')
            sizes[name] = len(answer)
        return sizes

    def post(self, body, deadline):
        """One POST of body; retried while the workers are still starting, until deadline."""
        while True:
            self.check_alive()
            connection = http.client.HTTPConnection('127.0.0.1', self.port, timeout=10)
            try:
                connection.request('POST', self.spec.path, body=body.encode(),
                                   headers={'Content-Type': 'application/json'})
                response = connection.getresponse()
                return response.status, response.getheader('Content-Type'), response.read()
            except (ConnectionError, TimeoutError, http.client.HTTPException) as error:
                if time.monotonic() > deadline:
                    raise BenchError(f'{self.name}: no answer to the echo check: {error!r}') from None
                time.sleep(0.2)
            finally:
                connection.close()

    def measure(self, connections, seconds, script):
        """One wrk run against this server and the CPU its process tree used meanwhile."""
        self.check_alive()
        before = cpu_snapshot(self.process.pid)
        wrk = run_wrk(self.name, self.port, self.spec.path, connections, seconds, script)
        after = cpu_snapshot(self.process.pid)
        user, system, threads, changed = cpu_delta(before, after)
        tick = os.sysconf('SC_CLK_TCK')
        return run_figures(wrk, user / tick, system / tick, threads, len(after), changed)


def run_wrk(name, port, path, connections, seconds, script):
    command = ['wrk', '-t1', f'-c{connections}', f'-d{seconds}s', '--timeout', WRK_TIMEOUT, '--latency', '-s',
               str(script), f'http://127.0.0.1:{port}{path}']
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        raise BenchError(f'{name}: wrk did not finish within {seconds + 60} s') from None
    summary = parse_wrk(result.stdout)
    if result.returncode or summary is None:
        raise BenchError(f'{name}: wrk failed (status {result.returncode}): {(result.stderr or result.stdout)[-300:]}')
    return summary


def measure_cell(contenders, connections, seconds, rounds, warmup, script):
    """Warm-up of each server, then `rounds` rounds of each in turn; label -> runs."""
    for contender in contenders:
        if warmup:
            contender.measure(connections, warmup, script)
    runs = {contender.name: [] for contender in contenders}
    for _ in range(rounds):
        for contender in contenders:
            runs[contender.name].append(contender.measure(connections, seconds, script))
    return runs


def write_json(path, report):
    if path:
        temporary = Path(f'{path}.tmp')
        temporary.write_text(json.dumps(report, indent=1) + '\n')
        temporary.replace(path)


def machine():
    model = next((line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().splitlines()
                  if line.startswith('model name')), 'unknown')
    return {'cores': os.cpu_count(), 'cpu': model, 'kernel': platform.release()}


def run(args):
    """The whole matrix; returns the number of cells with errors."""
    if not shutil.which('wrk'):
        raise BenchError('wrk is missing: apt-get install wrk')
    keys = list(args.servers)
    against = None
    if args.against:
        against = Path(args.against).resolve()
        if not (against / 'zato_daemon' / '__main__.py').exists():
            raise BenchError(f'--against {against}: no zato_daemon package there')
        keys.insert(keys.index('zato') + 1 if 'zato' in keys else 0, 'against')
    pypi = set(keys) - {'zato', 'against'}
    venv = ensure_venv(args.venv, args.python) if pypi else Path(args.venv)
    started = time.monotonic()
    report = describe_run(args, against, venv if pypi else None)
    print(header(report, args))
    errors = 0
    with tempfile.TemporaryDirectory(prefix='zato-compare-') as temporary:
        workdir = Path(temporary)
        (workdir / 'wsgi_app.py').write_text(throughput.WSGI_APP)
        scripts = {}
        for name in args.bodies:
            scripts[name] = workdir / f'post-{name}.lua'
            scripts[name].write_text(WRK_SCRIPT.format(body=BODIES[name], mark=SUMMARY_MARK))
        for workers in args.workers:
            # closing(): an exception here stops the servers now, not when the generator is collected.
            with contextlib.closing(measure_workers(workers, keys, against, venv, workdir, scripts, args)) as cells:
                for cell in cells:
                    errors += any(describe_errors(s['errors']) for s in cell['summary'].values())
                    report['cells'].append(cell)
                    report['wall_seconds'] = round(time.monotonic() - started, 1)
                    write_json(args.json, report)
    say(f'done in {time.monotonic() - started:.0f} s' + (f'; raw figures in {args.json}' if args.json else ''))
    return errors


def describe_run(args, against, venv):
    """The report's head: when, where, what code and which libraries."""
    report = {'started': datetime.datetime.now().astimezone().isoformat(timespec='seconds'), 'command': sys.argv,
              'machine': machine(), 'options': {key: str(value) if isinstance(value, Path) else value
                                                for key, value in vars(args).items()},
              'bodies': {name: len(BODIES[name]) for name in args.bodies}, 'wrk_timeout': WRK_TIMEOUT, 'cells': []}
    report['zato_daemon'] = {
        'tree': str(REPO), 'commit': tree_commit(REPO),
        **interpreter_versions(args.python, server_env(os.environ, str(REPO)), ('gevent', 'greenlet', 'httptools'))}
    if against:
        report['against'] = {'tree': str(against), 'commit': tree_commit(against)}
    if venv:
        report['venv'] = {'path': str(venv), **interpreter_versions(
            str(venv / 'bin' / 'python'), server_env(os.environ, ''),
            [requirement.split('==')[0] for requirement in REQUIREMENTS])}
    return report


def measure_workers(workers, keys, against, venv, workdir, scripts, args):
    """Starts every server with `workers` workers, checks its echo, then yields the JSON of
    each cell (connections x body) as it is measured, its table printed; stops them all."""
    ports = {key: throughput.free_port() for key in keys}
    server_dirs = {}
    if 'zato' in keys:
        server_dirs['zato'] = (REPO, throughput.zato_server_dir(workdir, ports['zato'], workers))
    if against:
        server_dirs['against'] = (against, throughput.zato_server_dir(workdir, ports['against'], workers))
    specs = server_specs(keys, workers, ports, args.python, venv, workdir, server_dirs)
    bodies = {name: BODIES[name] for name in args.bodies}
    with contextlib.ExitStack() as stack:
        contenders = [stack.enter_context(Contender(spec, LABELS[spec.key], workdir / f'{spec.key}-{workers}.log'))
                      for spec in specs]
        say(f'{workers} worker(s): started {", ".join(c.name for c in contenders)}; checking their echo')
        answers = {contender.name: contender.wait_ready(bodies) for contender in contenders}
        for connections in args.connections:
            for name in args.bodies:
                title = cell_title(workers, connections, name, len(BODIES[name]), args.rounds, args.seconds)
                say(f'measuring: {title}')
                runs = measure_cell(contenders, connections, args.seconds, args.rounds, args.warmup, scripts[name])
                summaries = {label: summarize(label_runs) for label, label_runs in runs.items()}
                print(render_cell(title, summaries), flush=True)
                yield {'workers': workers, 'connections': connections, 'body': name,
                       'answer_bytes': {label: sizes[name] for label, sizes in answers.items()}, 'runs': runs,
                       'summary': summaries}


def header(report, args):
    zato = report['zato_daemon']
    lines = [f'## zato-daemon against uvicorn and granian, {report["started"]}', '',
             f'- machine: {report["machine"]["cores"]} cores, {report["machine"]["cpu"]}, '
             f'Linux {report["machine"]["kernel"]}',
             f'- zato-daemon {zato["commit"]} ({zato["tree"]}), features on, on {zato["executable"]} '
             f'{zato["python"]}: ' + ', '.join(f'{n} {v}' for n, v in zato['versions'].items())]
    if 'against' in report:
        lines.append(f'- --against: zato-daemon {report["against"]["commit"]} ({report["against"]["tree"]})')
    if 'venv' in report:
        venv = report['venv']
        lines.append(f'- venv {venv["path"]}, Python {venv["python"]}: ' +
                     ', '.join(f'{n} {v}' for n, v in venv['versions'].items()))
    lines.append('- bodies: ' + ', '.join(f'{name} {size:,} bytes' for name, size in report['bodies'].items()) +
                 f'; warm-up {args.warmup} s per server and cell; wrk --timeout {WRK_TIMEOUT}')
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--servers', nargs='+', choices=SERVERS, default=list(SERVERS),
                        help='contenders, in the order of the tables; the first is the base of the ratios')
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--connections', type=int, nargs='+', default=[50, 500])
    parser.add_argument('--bodies', nargs='+', choices=tuple(BODIES), default=list(BODIES),
                        help=f'small: {len(BODIES["small"])} bytes; large: {len(BODIES["large"]):,} bytes')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--seconds', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2, help='seconds of wrk per server before each cell')
    parser.add_argument('--python', default='/usr/bin/python3',
                        help="zato-daemon's interpreter, and the one the venv is made from")
    parser.add_argument('--venv', type=Path, default=DEFAULT_VENV, help='the venv of the PyPI servers')
    parser.add_argument('--against', help='another checkout of zato-daemon (a git worktree of an older commit), '
                                          'measured too, right after this tree')
    parser.add_argument('--json', type=Path, help='write the raw figures here (after each cell)')
    args = parser.parse_args()
    if min(args.workers + args.connections) < 1 or args.rounds < 1 or args.seconds < 1 or args.warmup < 0:
        parser.error('workers, connections, rounds and seconds must be at least 1, warmup at least 0')
    # SIGTERM unwinds like Ctrl-C does, through every server's __exit__.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        cells_with_errors = run(args)
    except BenchError as error:
        sys.exit(f'compare.py: {error}')
    except KeyboardInterrupt:
        sys.exit('compare.py: interrupted (Ctrl-C or SIGTERM); every server was stopped')
    if cells_with_errors:
        sys.exit(f'compare.py: {cells_with_errors} cell(s) had errors, see the tables')


if __name__ == '__main__':
    main()
