"""A booted Debian 12 container for system tests: systemd as PID 1, journald, apt, no mocks.

Theory of operation. The machines we test on are VMs whose PID 1 is not systemd, so a booted
container stands in for a Debian host:

1. `base_tree()` debootstraps bookworm once, with systemd and every runtime dependency of the
   package already installed, and caches it under CACHE_DIR. The name of the cached tree
   carries a hash of the package list, so a changed list builds a new tree. The tree is built
   in a temporary directory beside it and renamed into place, under a lock file: a failed or
   concurrent debootstrap never leaves a half tree behind. The units in MASKED_UNITS, which
   their packages enable, are masked in it. `base_tree(BUILD_PACKAGES)` is the
   tree a Debian builder starts from (build-essential alone), for `Chroot` below.
2. `Container(base).start()` copies that tree (so tests never share a dirty one), boots it with
   `systemd-nspawn --boot --private-network` and waits until `systemctl is-system-running` says
   running or degraded. The container has only a loopback interface: nothing it listens on can
   collide with the host, and nothing in it can reach the network, which is why the runtime
   dependencies are preinstalled.
3. `run()` executes a command inside through `nsenter` into the namespaces of the container's
   PID 1; `put()` and `get()` read and write files in its tree directly.
4. `stop()` powers it off, kills it after a timeout and deletes the copy.

`Chroot(base)` is the other use of a cached tree: a copy in which each `run()` is one
`systemd-nspawn` command, not booted, on the host's network so that apt reaches the mirror the
tree's sources name (and nothing else is asked of the network), as sbuild runs a build.

Only root can do any of this. `host_problems()` says what is missing; callers fail on it rather
than skip, since these tests are part of CI.
"""

import ctypes
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path, PurePosixPath

from tests.polling import wait_until

SUITE = 'bookworm'
DEFAULT_MIRROR = 'http://deb.debian.org/debian'
CACHE_DIR = Path('/var/cache/zato-daemon-tests')
# Bump when the way the tree is built changes, so that cached trees are rebuilt.
RECIPE_VERSION = 4
PACKAGES = (
    # An init system that boots, and a bus for the tools that want one.
    'systemd', 'systemd-sysv', 'dbus',
    # The interpreter and zato-daemon's runtime dependencies: `apt install ./zato-daemon_*.deb`
    # must find everything installed, since the container has no network.
    'python3', 'python3-gevent', 'python3-systemd', 'python3-daemon', 'python3-setproctitle',
    'python3-httptools', 'python3-prometheus-client', 'python3-redis', 'logrotate',
    # Debian's Prometheus server and promtool, which scrape and check /metrics.
    'prometheus',
    # Tools the tests use inside: HTTP calls and process listings; man for `systemd-analyze
    # verify`, which opens the units' Documentation=man: pages.
    'curl', 'procps', 'man-db',
    # The autopkgtests of debian/tests, run by autopkgtest itself (its null virt server) with
    # their Depends (python3-pytest for the unit tests; curl above): nothing can be downloaded.
    # autopkgtest unpacks the source tree it is given with dpkg-source.
    'autopkgtest', 'dpkg-dev', 'python3-pytest',
)
# Units that packages of the tree enable at install and that must not run in every booted
# container: Debian's prometheus.service would scrape itself and a node exporter that is not
# there, and hold port 9090, during every system test. test_metrics.py starts a Prometheus of
# its own, with its own config, and stops it. Masked, not only disabled, so that nothing
# (a dependency, a preset, an upgrade) starts them.
MASKED_UNITS = ('prometheus.service',)
# What sbuild's chroots hold before a build installs its Build-Depends.
BUILD_PACKAGES = ('build-essential',)
# /etc/hosts as the installer writes it, and as sbuild's chroots have it: debootstrap writes
# none, and `localhost` then resolves nowhere (the server's preflight resolves [main] host).
HOSTS = '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n'
HOST_TOOLS = ('debootstrap', 'systemd-nspawn', 'nsenter', 'cp', 'rm')
# A clean environment for commands inside: never the test runner's (its virtualenv, PYTHONPATH).
CONTAINER_ENV = {
    'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    'HOME': '/root',
    'LANG': 'C.UTF-8',
    'TERM': 'dumb',
    'SYSTEMD_PAGER': '',
    'SYSTEMD_COLORS': '0',
    'DEBIAN_FRONTEND': 'noninteractive',
}
DEBOOTSTRAP_TIMEOUT = 1800
BOOT_TIMEOUT = 120
POWEROFF_TIMEOUT = 60
LOG_TAIL_LINES = 40


class ContainerError(Exception):
    """The container could not be built, booted or stopped; the message says why."""


class CommandFailed(subprocess.CalledProcessError):
    """A command inside the container exited non-zero; str() shows its output."""

    def __str__(self):
        return (f'{self.cmd!r} exited with {self.returncode} in the container\n'
                f'--- stdout ---\n{tail(self.stdout)}\n--- stderr ---\n{tail(self.stderr)}')


def tail(text, lines=LOG_TAIL_LINES):
    """The last `lines` lines of `text` (str, bytes or None)."""
    if text is None:
        return ''
    if isinstance(text, bytes):
        text = text.decode(errors='replace')
    return '\n'.join(text.splitlines()[-lines:])


def poll(predicate, timeout, interval=0.1, message='condition'):
    """Calls `predicate` until it returns a true value, which is returned; never a fixed sleep."""
    return wait_until(predicate, timeout, interval, message)


def host_problems():
    """Why this machine cannot run the container, as a list of sentences; empty when it can."""
    problems = []
    if os.geteuid() != 0:
        problems.append('system tests need root (debootstrap, systemd-nspawn, nsenter)')
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        problems.append(f'missing tools: {", ".join(missing)} '
                        '(apt-get install systemd-container debootstrap util-linux coreutils)')
    return problems


def debian_mirror(sources=Path('/etc/apt/sources.list.d/debian.sources'),
                  sources_list=Path('/etc/apt/sources.list'), suite=SUITE):
    """The Debian mirror this host's apt already uses for `suite`, else deb.debian.org."""
    if sources.exists():
        for stanza in sources.read_text().split('\n\n'):
            fields = dict(line.split(':', 1) for line in stanza.splitlines()
                          if ':' in line and not line.startswith(('#', ' ')))
            fields = {key.strip().lower(): value.split() for key, value in fields.items()}
            if 'deb' in fields.get('types', []) and suite in fields.get('suites', []) and fields.get('uris'):
                return fields['uris'][0]
    if sources_list.exists():
        for line in sources_list.read_text().splitlines():
            words = re.sub(r'\[[^]]*\]', ' ', line).split()  # drop [arch=... signed-by=...]
            if len(words) >= 3 and words[0] == 'deb' and words[2] == suite:
                return words[1]
    return DEFAULT_MIRROR


def base_tree_name(packages=PACKAGES, suite=SUITE):
    """`<suite>-<hash>`: the cached tree's name, which changes with the package list."""
    recipe = json.dumps({'suite': suite, 'packages': sorted(packages), 'recipe': RECIPE_VERSION})
    return f'{suite}-{hashlib.sha256(recipe.encode()).hexdigest()[:16]}'


def base_tree(packages=PACKAGES, suite=SUITE, mirror=None, cache_dir=CACHE_DIR):
    """The path of the cached debootstrapped tree, built first if it is not there yet.

    Builds at most once at a time (a lock file in `cache_dir`); a build that fails raises
    ContainerError with the tail of debootstrap's log and leaves nothing behind.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / base_tree_name(packages, suite)
    if target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_dir():  # built by another run while we waited for the lock
            return target
        _remove_stale_builds(cache_dir)
        build = Path(tempfile.mkdtemp(prefix='.build-', dir=cache_dir))
        try:
            _debootstrap(build, packages, suite, mirror or debian_mirror(suite=suite), target)
            _finish(build)
            os.rename(build, target)
        finally:
            if build.exists():
                _remove_tree(build)
    return target


def _remove_stale_builds(cache_dir):
    # Left by a run that was killed mid-build; we hold the lock, so nobody is using them.
    for stale in cache_dir.glob('.build-*'):
        _remove_tree(stale)


def _debootstrap(build, packages, suite, mirror, target):
    log_path = target.with_name(target.name + '.log')
    command = ['debootstrap', '--variant=minbase', f'--include={",".join(packages)}', suite, str(build), mirror]
    with open(log_path, 'w') as log:
        log.write(' '.join(command) + '\n')
        log.flush()
        try:
            result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=DEBOOTSTRAP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ContainerError(f'debootstrap took longer than {DEBOOTSTRAP_TIMEOUT} s; log: {log_path}\n'
                                 f'{tail(log_path.read_text(errors="replace"))}') from None
    if result.returncode != 0:
        inner = build / 'debootstrap' / 'debootstrap.log'
        details = tail(inner.read_text(errors='replace')) if inner.exists() else ''
        raise ContainerError(
            f'debootstrap failed with {result.returncode} (mirror {mirror}); log: {log_path}\n'
            f'{tail(log_path.read_text(errors="replace"))}\n--- {inner.name} ---\n{details}')


def _finish(build):
    # mkdtemp made the tree's / mode 0700: every non-root user (dbus, the service's own) would
    # find no file at all, and dbus-daemon then hangs the boot.
    build.chmod(0o755)
    # debootstrap copies the host's name; without the file, the container takes its machine name.
    (build / 'etc' / 'hostname').unlink(missing_ok=True)
    (build / 'etc' / 'hosts').write_text(HOSTS)
    # Downloaded .debs are only dead weight copied at every session start.
    for deb in (build / 'var' / 'cache' / 'apt' / 'archives').glob('*.deb'):
        deb.unlink()
    mask_units(build, MASKED_UNITS)


def mask_units(root, units):
    """Masks each of `units` that the tree at `root` has, as `systemctl mask` would, and removes
    its enable links: the host's systemctl is not needed (nor, on the host, PID 1 systemd).

    Returns the units masked. A unit the tree lacks (a tree without that package) is left alone."""
    system = root / 'etc' / 'systemd' / 'system'
    masked = []
    for unit in units:
        if not (root / 'usr' / 'lib' / 'systemd' / 'system' / unit).exists():
            continue
        # The links `systemctl enable` made (multi-user.target.wants/ and the like): a target
        # that still wants a masked unit logs about it at every boot. They point at absolute
        # paths of the tree, which the host lacks: glob() would not list them, lexists() does.
        for wants in system.glob('*.wants'):
            if os.path.lexists(wants / unit):
                (wants / unit).unlink()
        mask = system / unit
        mask.unlink(missing_ok=True)
        mask.symlink_to('/dev/null')
        masked.append(unit)
    return masked


def _die_with_parent():
    # preexec_fn of nspawn: SIGTERM when the test process dies, however it dies. nspawn
    # answers SIGTERM with an orderly shutdown of the container; a killed nspawn would
    # leave the container running.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def remove_stale_workdirs(parent):
    """Deletes the copies that containers of test processes which no longer exist left behind."""
    for workdir in Path(parent).glob('zato-test-*'):
        match = re.match(r'zato-test-(\d+)-', workdir.name)
        if match and not Path('/proc', match[1]).exists():
            _remove_tree(workdir)


def _remove_tree(path):
    # --one-file-system: never follow a bind mount out of the tree.
    subprocess.run(['rm', '-rf', '--one-file-system', str(path)], check=False)


def _copy_tree(base, root):
    if not base.is_dir():
        raise ContainerError(f'no base tree at {base}')
    result = subprocess.run(['cp', '-a', '--reflink=auto', str(base), str(root)], capture_output=True, text=True)
    if result.returncode != 0:
        raise ContainerError(f'copying {base} to {root} failed: {result.stderr.strip()}')


def _scratch_dir(parent):
    remove_stale_workdirs(parent)
    # Named after this process (zato-test-PID-...), so that remove_stale_workdirs() knows it.
    return Path(tempfile.mkdtemp(prefix=f'zato-test-{os.getpid()}-', dir=parent))


def tree_path(root, path):
    """Where the absolute `path` of the tree at `root` is on the host, symlinks resolved inside it.

    An absolute symlink in the tree (/etc/resolv.conf, say) points into the tree, never at the
    host's file of the same name.
    """
    path = PurePosixPath(path)
    if not path.is_absolute():
        raise ValueError(f'{path} is not an absolute path in the tree')
    parts, resolved, hops = list(path.parts[1:]), PurePosixPath('/'), 0
    while parts:
        part = parts.pop(0)
        if part in ('', '.'):
            continue
        if part == '..':
            resolved = resolved.parent
            continue
        candidate = root / str(resolved / part).lstrip('/')
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise ContainerError(f'too many levels of symbolic links in {path}')
            link = PurePosixPath(os.readlink(candidate))
            if link.is_absolute():
                resolved = PurePosixPath('/')
            parts = list(link.parts[1:] if link.is_absolute() else link.parts) + parts
            continue
        resolved = resolved / part
    return root / str(resolved).lstrip('/')


def _run_inside(command, cmd, timeout, check, input=None):
    """Runs the host `command` that runs `cmd` inside, in its own session; returns a
    CompletedProcess of `cmd`. On timeout the whole process group is killed; on timeout, or a
    non-zero exit under `check`, CommandFailed shows `cmd` with what it printed."""
    process = subprocess.Popen(command, text=True, start_new_session=True,
                               stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        # nsenter and nspawn fork: kill their children too, not just them.
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise CommandFailed(-signal.SIGKILL, cmd, stdout, f'{stderr}\n(killed after {timeout} s)') from None
    if check and process.returncode != 0:
        raise CommandFailed(process.returncode, cmd, stdout, stderr)
    return subprocess.CompletedProcess(cmd, process.returncode, stdout, stderr)


class Container:
    """A booted copy of a base tree: systemd as PID 1 in its own namespaces, loopback only.

    Use as a context manager, or call start() and stop(). Runs in the test process; every
    method but start() needs a started container.
    """

    def __init__(self, base, name=None, private_network=True, workdir_parent='/var/tmp', network_namespace=None):
        self.base = Path(base)
        self.name = name or f'zato-test-{os.getpid()}-{secrets.token_hex(3)}'
        self.private_network = private_network
        # A network namespace to run in (/run/netns/NAME) instead of a private one: a host of
        # the LAN that tests/system/hosts.py makes.
        self.network_namespace = network_namespace
        self.workdir = _scratch_dir(workdir_parent)
        self.root = self.workdir / 'root'
        self.console_log = self.workdir / 'console.log'
        self.nspawn = None
        self.leader = None
        self.system_state = None
        self.failed_units = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def start(self, timeout=BOOT_TIMEOUT):
        """Copies the base tree, boots it and waits until systemd has finished booting.

        Sets `system_state` ('running' or 'degraded') and `failed_units`. On any failure the
        container is stopped and deleted, and ContainerError says what went wrong.
        """
        try:
            _copy_tree(self.base, self.root)
            self._boot()
            self.leader = poll(self._find_leader, 30, message="the container's PID 1")
            self.system_state = self._wait_booted(timeout)
            if self.system_state == 'degraded':
                failed = self.run(['systemctl', '--failed', '--plain', '--no-legend'], check=False).stdout
                self.failed_units = [line.split()[0] for line in failed.splitlines() if line.strip()]
        except BaseException:
            self.stop()
            raise
        return self

    def _boot(self):
        command = ['systemd-nspawn', '--quiet', '-D', str(self.root), '--boot', '--register=no', '--keep-unit',
                   f'--machine={self.name}', '--link-journal=no', '--console=read-only']
        if self.network_namespace:
            command.append(f'--network-namespace-path={self.network_namespace}')
        elif self.private_network:
            command.append('--private-network')
        with open(self.console_log, 'wb') as console:
            self.nspawn = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=console,
                                           stderr=subprocess.STDOUT, start_new_session=True,
                                           preexec_fn=_die_with_parent)

    def _find_leader(self):
        """The container's PID 1 seen from the host: the child of nspawn in another PID namespace."""
        if self.nspawn.poll() is not None:
            raise ContainerError(f'systemd-nspawn exited with {self.nspawn.returncode}:\n{self._console_tail()}')
        own_namespace = os.readlink('/proc/self/ns/pid')
        for entry in os.scandir('/proc'):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, 'stat').read_text()
                parent = int(stat.rsplit(')', 1)[1].split()[1])
                if parent == self.nspawn.pid and os.readlink(f'{entry.path}/ns/pid') != own_namespace:
                    return int(entry.name)
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
        return None

    def _wait_booted(self, timeout):
        states = []

        def is_booted():
            if self.nspawn.poll() is not None:
                raise ContainerError(f'the container exited with {self.nspawn.returncode} while booting:\n'
                                     f'{self._console_tail()}')
            result = self.run(['systemctl', 'is-system-running'], check=False, timeout=30)
            states.append(result.stdout.strip() or result.stderr.strip())
            return states[-1] if states[-1] in ('running', 'degraded') else None

        try:
            return poll(is_booted, timeout, interval=0.2, message='systemctl is-system-running')
        except AssertionError:
            jobs = self.run(['systemctl', 'list-jobs', '--no-legend'], check=False, timeout=30).stdout
            raise ContainerError(f'the container did not finish booting in {timeout} s; last state '
                                 f'{states[-1] if states else None!r}; pending jobs:\n{jobs}\n'
                                 f'console:\n{self._console_tail()}') from None

    def _console_tail(self):
        try:
            return tail(self.console_log.read_bytes())
        except OSError:
            return ''

    def stop(self, timeout=POWEROFF_TIMEOUT):
        """Powers the container off (killing it after `timeout` s) and deletes its copy."""
        if self.nspawn is not None and self.nspawn.poll() is None:
            self._power_off(timeout)
        if self.workdir.exists():
            _remove_tree(self.workdir)

    def _power_off(self, timeout):
        if self.leader is not None:
            result = self.run(['systemctl', 'poweroff', '--no-block'], check=False, timeout=30)
            if result.returncode != 0:
                # nspawn asks the container to halt.
                self._signal(self.nspawn.pid, signal.SIGTERM)
        try:
            self.nspawn.wait(timeout)
        except subprocess.TimeoutExpired:
            # Killing the PID 1 of a namespace kills everything in it.
            if self.leader is not None:
                self._signal(self.leader, signal.SIGKILL)
            self._signal(self.nspawn.pid, signal.SIGKILL)
            self.nspawn.wait(30)

    @staticmethod
    def _signal(pid, signum):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    def command(self, cmd):
        """The host command line that runs `cmd` (a list, or a string for sh -c) inside."""
        if isinstance(cmd, str):
            cmd = ['sh', '-c', cmd]
        if self.leader is None:
            raise ContainerError('the container is not running')
        environment = [f'{key}={value}' for key, value in CONTAINER_ENV.items()]
        return ['nsenter', '-t', str(self.leader), '-a', '--root', '--wd', 'env', '-i', *environment,
                *map(str, cmd)]

    def run(self, cmd, check=True, input=None, timeout=120):
        """Runs `cmd` inside as root; returns a CompletedProcess with text stdout and stderr.

        `cmd` is a list of arguments, or a string run by sh -c. `input` (str) goes to its
        stdin, which is otherwise empty. With `check`, a non-zero exit raises CommandFailed
        showing the output. On timeout the whole process group is killed.
        """
        return _run_inside(self.command(cmd), cmd, timeout, check, input)

    def popen(self, cmd, **kwargs):
        """Starts `cmd` inside without waiting: a subprocess.Popen of text pipes by default."""
        options = dict(text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       start_new_session=True)
        options.update(kwargs)
        return subprocess.Popen(self.command(cmd), **options)

    def host_path(self, path):
        """Where the container's absolute `path` is in the host tree (see tree_path())."""
        return tree_path(self.root, path)

    def put(self, path, content, mode=0o644):
        """Writes a file at the container's `path`: `content` is bytes, or a local file's Path.

        A str is refused, since it could mean either. Parent directories are created. Returns
        the file's host path. The file belongs to root; chown it with run() if need be.
        """
        if isinstance(content, os.PathLike):
            content = Path(content).read_bytes()
        elif not isinstance(content, (bytes, bytearray)):
            raise TypeError(f'put() takes bytes or a local Path, not {type(content).__name__}')
        target = self.host_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
        return target

    def put_tree(self, path, directory):
        """Copies the local `directory` (its contents, modes kept) to the container's `path`."""
        target = self.host_path(path)
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(['tar', '-C', str(directory), '-cf', '-', '.'], capture_output=True, check=True)
        subprocess.run(['tar', '-C', str(target), '-xf', '-'], input=archive.stdout, capture_output=True, check=True)
        return target

    def get(self, path):
        """The bytes of the container's file at `path`."""
        return self.host_path(path).read_bytes()

    def exists(self, path):
        """Whether the container has something at `path` (following its symlinks)."""
        return self.host_path(path).exists()

    def show(self, unit, *properties):
        """`systemctl show -p ...` as a dict of property name to string value."""
        result = self.run(['systemctl', 'show', unit, *(f'--property={name}' for name in properties)])
        return dict(line.split('=', 1) for line in result.stdout.splitlines() if '=' in line)

    def journal(self, *args):
        """`journalctl --no-pager` with `args` (for instance '-u', 'zato-daemon'): its text."""
        return self.run(['journalctl', '--no-pager', *args]).stdout


class Chroot:
    """A copy of a base tree in which each run() is a `systemd-nspawn` command: root inside, not
    booted, the host's network (apt reaches the mirror the tree's sources name).

    `binds` maps host directories to directories inside, bind-mounted for every command (the
    cache of downloaded .debs, so that a run downloads each one once). Use as a context
    manager: the copy is deleted at the end.
    """

    def __init__(self, base, binds=None, workdir_parent='/var/tmp'):
        self.base = Path(base)
        self.binds = {Path(host): inside for host, inside in (binds or {}).items()}
        self.name = f'zato-build-{os.getpid()}-{secrets.token_hex(3)}'
        self.workdir = _scratch_dir(workdir_parent)
        self.root = self.workdir / 'root'

    def __enter__(self):
        try:
            _copy_tree(self.base, self.root)
        except BaseException:
            _remove_tree(self.workdir)
            raise
        return self

    def __exit__(self, *exc_info):
        _remove_tree(self.workdir)

    def run(self, cmd, cwd='/', env=None, check=True, timeout=600):
        """Runs `cmd` (a list, or a string for sh -c) inside as root in `cwd`, with CONTAINER_ENV
        and `env` only; returns a CompletedProcess of text, and raises CommandFailed as
        Container.run() does."""
        if isinstance(cmd, str):
            cmd = ['sh', '-c', cmd]
        for host in self.binds:
            host.mkdir(parents=True, exist_ok=True)
        # --console=pipe: the command's own pipes, no terminal, so nothing in it colours its output.
        command = ['systemd-nspawn', '--quiet', '-D', str(self.root), '--register=no', '--keep-unit', '--as-pid2',
                   f'--machine={self.name}', '--console=pipe', f'--chdir={cwd}',
                   *(f'--bind={host}:{inside}' for host, inside in self.binds.items()),
                   *(f'--setenv={key}={value}' for key, value in {**CONTAINER_ENV, **(env or {})}.items()),
                   '--', *map(str, cmd)]
        return _run_inside(command, cmd, timeout, check)

    def host_path(self, path):
        """Where the tree's absolute `path` is on the host (see tree_path())."""
        return tree_path(self.root, path)
