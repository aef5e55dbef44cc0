"""What an operator does with the package, for real: install, call, reload, stop, upgrade, remove,
and what piuparts checks: `dpkg -V` clean after an install, purge leaving nothing of ours,
reinstall after purge, and an upgrade from the previous version with edited and untouched
conffiles.

The tests run in order in one booted container (see conftest.py) and each step builds on the
state the previous ones left: the numbers in their names are that order. A step that needs
the package fails, never skips, when the install did not work. The last step purges it.
"""

import json
import re
import subprocess
import textwrap

import pytest

from tests.conftest import REPO_ROOT
from tests.system.container import poll, tail
from tests.system.helpers import (CONFIG_DIR, INSTALL_TIMEOUT, PORT, PREVIOUS_CONFFILES, PREVIOUS_LINE, UNIT,
                                  assert_active, install, main_pid, post,
                                  server_info, systemctl, zato_processes)

pytestmark = pytest.mark.xdist_group('system')

INSTANCES = {'a': 17021, 'b': 17022}
SOCKET_UNIT = f'{UNIT}.socket'
# Where purge must leave nothing of ours (the system user may stay, as Debian practice has it).
PURGED_PLACES = ('/etc', '/var/lib', '/var/log', '/run')
# An unattended upgrade, as unattended-upgrades and piuparts run one: a conffile the admin
# edited is kept, the package's new version goes beside it, and dpkg asks nothing (a question
# would read the empty stdin every container command has, and fail the upgrade).
# Every unit in systemd/, verified as files; the templates as the instance VERIFY_INSTANCE.
UNIT_FILES = sorted(path.name for path in (REPO_ROOT / 'systemd').iterdir() if path.suffix in ('.service', '.socket'))
VERIFY_DIR = '/root/units'
VERIFY_INSTANCE = 'verify'
# The template socket names no address: each instance's comes from a drop-in, as an operator
# writes it with `systemctl edit zato-daemon@NAME.socket`.
LISTEN_DROP_IN = b'[Socket]\nListenStream=127.0.0.1:17099\n'
UNATTENDED = ('-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold')
MAX_EXPOSURE = 1.1
UPGRADE_SUFFIX = '+test1'
# The load script of the reload test, run inside the container by Debian's python3. Its
# clients mix keep-alive connections with new ones, as tests/integration's reload test does.
LOAD_SCRIPT = textwrap.dedent('''\
    """POSTs to demo.echo from several threads until a stop file appears or a time limit
    passes, writing progress to a file; prints {"ok": N, "failed": N, "errors": [...]}."""
    import http.client, json, os, sys, threading, time

    port, seconds, stop_file, progress_file = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
    counts, errors, lock = {'ok': 0, 'failed': 0}, [], threading.Lock()
    deadline = time.monotonic() + seconds

    def is_done():
        return os.path.exists(stop_file) or time.monotonic() > deadline

    def record(ok, error=None):
        with lock:
            counts['ok' if ok else 'failed'] += 1
            if error and len(errors) < 10:
                errors.append(error)

    def hammer():
        connection, number = None, 0
        while not is_done():
            number += 1
            try:
                if connection is None or number % 5 == 0:
                    if connection is not None:
                        connection.close()
                    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
                connection.request('POST', '/services/demo.echo', json.dumps({'n': number}),
                                   {'Content-Type': 'application/json'})
                response = connection.getresponse()
                body = response.read()
                ok = response.status == 200 and json.loads(body) == {'n': number}
                record(ok, None if ok else f'{response.status} {body[:200]!r}')
                if response.getheader('connection', '').lower() == 'close':
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                record(False, repr(exc))
                connection = None

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    while not is_done():
        with lock:
            progress = json.dumps(counts)
        with open(progress_file + '.tmp', 'w') as file:
            file.write(progress)
        os.replace(progress_file + '.tmp', progress_file)
        time.sleep(0.1)
    for thread in threads:
        thread.join(30)
    print(json.dumps(dict(counts, errors=errors)))
''')


def deb_version(deb):
    return subprocess.run(['dpkg-deb', '--field', str(deb), 'Version'], capture_output=True, text=True,
                          check=True).stdout.strip()


def installed_version(container):
    return container.run(['dpkg-query', '-W', '-f', '${Version}', 'zato-daemon']).stdout


def dpkg_verify(container):
    """`dpkg -V zato-daemon`: the lines of files that differ from what the package installed."""
    result = container.run(['dpkg', '-V', 'zato-daemon'], check=False)
    assert result.returncode in (0, 1) and not result.stderr, result
    return result.stdout.splitlines()


def leftovers(container):
    """Paths under PURGED_PLACES named after the package or owned by its user or group."""
    owner = []
    if container.run(['getent', 'passwd', 'zato'], check=False).returncode == 0:
        owner = ['-o', '-user', 'zato', '-o', '-group', 'zato']
    return container.run(['find', *PURGED_PLACES, '(', '-name', '*zato*', *owner, ')', '-print']).stdout.split()


def purge(container):
    container.run(['apt-get', 'purge', '-y', 'zato-daemon'], timeout=INSTALL_TIMEOUT)
    status = container.run(['dpkg-query', '-W', '-f', '${Status}', 'zato-daemon'], check=False).stdout
    assert 'installed' not in status.replace('not-installed', ''), status


def repack_with_version_suffix(deb, suffix, workdir):
    """A copy of `deb` whose version has `suffix` appended: an upgrade with identical files."""
    tree = workdir / 'tree'
    subprocess.run(['dpkg-deb', '-R', str(deb), str(tree)], check=True)
    control = tree / 'DEBIAN' / 'control'
    text, count = re.subn(r'^Version: (\S+)$', lambda match: f'Version: {match[1]}{suffix}',
                          control.read_text(), flags=re.MULTILINE)
    assert count == 1, f'no Version field in {deb.name}:\n{text}'
    control.write_text(text)
    version = re.search(r'^Version: (\S+)$', text, re.MULTILINE)[1]
    upgrade = workdir / f'zato-daemon_{version.split(":")[-1]}_all.deb'
    subprocess.run(['dpkg-deb', '-b', str(tree), str(upgrade)], check=True, capture_output=True)
    return upgrade, version


def start_load(container, seconds=120):
    """Starts LOAD_SCRIPT inside against the main server; it stops at stop_load() or after `seconds`."""
    container.put('/root/load.py', LOAD_SCRIPT.encode())
    container.run(['rm', '-f', '/root/load.stop', '/root/load.progress'])
    return container.popen(['python3', '/root/load.py', str(PORT), str(seconds), '/root/load.stop',
                            '/root/load.progress'])


def load_progress(container):
    """How many requests the load script has had answered correctly so far."""
    if not container.exists('/root/load.progress'):
        return 0
    return json.loads(container.get('/root/load.progress'))['ok']


def stop_load(container, load):
    """Stops the load script; returns its counts {'ok': N, 'failed': N, 'errors': [...]}."""
    container.run(['touch', '/root/load.stop'])
    stdout, stderr = load.communicate(timeout=60)
    assert load.returncode == 0, f'the load script failed:\n{stderr}'
    return json.loads(stdout)


def test_01_package_installs_without_network(container, installed):
    status = container.run(['dpkg-query', '-W', '-f', '${Status}', 'zato-daemon']).stdout
    assert status == 'install ok installed'
    assert installed_version(container) == deb_version(installed)


def test_01b_every_installed_file_is_as_packaged(container, installed):
    assert dpkg_verify(container) == []


def test_01c_the_socket_unit_is_enabled_and_active_the_template_is_not(container, installed):
    assert systemctl(container, 'is-enabled', SOCKET_UNIT, check=False).stdout.strip() == 'enabled'
    assert systemctl(container, 'is-active', SOCKET_UNIT, check=False).stdout.strip() == 'active'
    # A template is never enabled by the package; each instance's socket needs its address first.
    assert systemctl(container, 'is-enabled', f'{UNIT}@.socket', check=False).stdout.strip() == 'disabled'


def test_02_service_is_active_as_zato_with_type_notify(container, installed):
    assert_active(container)
    properties = container.show(UNIT, 'Type', 'User', 'MainPID', 'StatusText')
    assert properties['Type'] == 'notify'
    assert properties['User'] == 'zato'
    assert 'serving' in properties['StatusText'].lower(), properties
    processes = zato_processes(container)
    assert int(properties['MainPID']) in [pid for _, pid, _ in processes], processes
    assert any('worker' in args for _, _, args in processes), processes
    assert {user for user, _, _ in processes} == {'zato'}, processes


def test_03_echo_service_answers_over_http(container, installed):
    status, headers, body = post(container, PORT, '/services/demo.echo', {'a': 1})
    assert status == 200, body
    assert json.loads(body) == {'a': 1}
    assert headers.get('x-zato-cid'), headers


def _open_files_limits(container, pid):
    limits = container.run(['cat', f'/proc/{pid}/limits']).stdout
    [line] = [line for line in limits.splitlines() if line.startswith('Max open files')]
    return [int(value) for value in line.split()[3:5]]


def test_03b_workers_hold_the_units_descriptor_limit_and_browsers_are_refused(container, installed):
    # LimitNOFILE=65536, or what the container's systemd may grant under this machine's own
    # hard limit; the soft limit raised to the hard one either way (systemd's default soft
    # limit is 1024).
    expected = min(65536, _open_files_limits(container, 1)[1])
    for _, pid, args in zato_processes(container):
        assert _open_files_limits(container, pid) == [expected, expected], args
    url = f'http://127.0.0.1:{PORT}/services/demo.echo'
    # curl -d sends a form's Content-Type, as a web page's simple request does: not a service call.
    form = container.run(['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '-d', '{"a": 1}', url]).stdout
    page = container.run(['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Origin: https://evil.example',
                          '--json', '{"a": 1}', url]).stdout
    assert (form, page) == ('415', '403')


def test_04_info_reports_the_main_pid(container, installed):
    assert server_info(container)['master_proc_pid'] == main_pid(container)


def test_05_journal_has_the_start_up_lines(container, installed):
    poll(lambda: 'Server ready' in container.journal('-u', UNIT), 10, message="'Server ready' in the journal")


def test_06_reload_under_load_loses_no_request(container, installed):
    master = main_pid(container)
    old_workers = set(server_info(container)['worker_pids'])

    def new_generation():
        workers = set(server_info(container)['worker_pids'])
        return workers if workers.isdisjoint(old_workers) and len(workers) == len(old_workers) else None

    load = start_load(container)
    try:
        poll(lambda: load_progress(container) > 50, 30, message='requests before the reload')
        systemctl(container, 'reload', UNIT)
        new_workers = poll(new_generation, 60, interval=0.2, message='a new generation of workers')
        served = load_progress(container)
        poll(lambda: load_progress(container) > served + 50, 30, message='requests after the reload')
    finally:
        counts = stop_load(container, load)
    print(f'during the reload: {counts}; workers {sorted(old_workers)} -> {sorted(new_workers)}')
    assert counts['failed'] == 0, counts
    assert main_pid(container) == master
    assert_active(container)
    poll(lambda: 'Reload complete' in container.journal('-u', UNIT), 10, message="'Reload complete' in the journal")


def test_06b_a_refused_reload_leaves_the_unit_active_and_says_why(container, installed):
    # RELOADING=1 goes out when a reload starts: a refusal must send READY=1 again, or systemd
    # would show the unit reloading for ever. `zato-daemon reload` prints the reason.
    conf = f'{CONFIG_DIR}/server.conf'
    container.run(['cp', conf, '/root/server.conf.good'])
    try:
        container.run(['sed', '-i', 's/^workers = .*/workers = many/', conf])
        result = container.run(['zato-daemon', 'reload', CONFIG_DIR], check=False)
        assert result.returncode == 78, (result.returncode, result.stdout, result.stderr)
        assert 'workers' in result.stderr
        systemctl(container, 'reload', UNIT)
        poll(lambda: container.show(UNIT, 'ActiveState', 'SubState') == {'ActiveState': 'active',
                                                                          'SubState': 'running'},
             15, message='the unit active and running, not reloading')
        journal = container.journal('-u', UNIT, '-p', 'err')
        assert 'Reload refused' in journal
    finally:
        container.run(['cp', '/root/server.conf.good', conf])
    assert_active(container)


def test_07_stop_is_clean_then_start_again(container, installed):
    old_master = main_pid(container)
    since = container.run(['date', '+%Y-%m-%d %H:%M:%S']).stdout.strip()
    systemctl(container, 'stop', UNIT)
    assert systemctl(container, 'is-active', UNIT, check=False).stdout.strip() == 'inactive'
    result = container.show(UNIT, 'Result', 'ExecMainStatus', 'ExecMainCode')
    assert result['Result'] == 'success', result
    assert result['ExecMainStatus'] == '0', f'the master did not exit 0 on SIGTERM: {result}'
    # Only this stop: earlier tests (a hung worker) legitimately killed workers.
    journal = container.journal('-u', UNIT, '--since', since)
    for sign_of_a_kill in ('SIGKILL', 'Killing process'):
        assert sign_of_a_kill not in journal, tail(journal, 30)
    assert zato_processes(container) == []

    systemctl(container, 'start', UNIT)
    assert_active(container)
    assert main_pid(container) != old_master
    assert post(container, PORT, '/services/demo.echo', {'again': True})[0] == 200


def test_08_upgrade_keeps_an_edited_conffile_and_restarts(container, installed, tmp_path_factory):
    server_conf = container.host_path(f'{CONFIG_DIR}/server.conf')
    text = server_conf.read_text()
    assert '\n[channels]\n' in text, 'the shipped server.conf has no [channels] section'
    # Written in place, so that the conffile keeps its owner and mode.
    server_conf.write_text(text.replace('\n[channels]\n', '\n[channels]\n/ping2 = demo.echo\n', 1))
    old_master = main_pid(container)
    upgrade, version = repack_with_version_suffix(installed, UPGRADE_SUFFIX, tmp_path_factory.mktemp('upgrade'))

    # No --force-confold: the conffile did not change in the package, so dpkg must not ask.
    result = install(container, upgrade)
    assert result.returncode == 0, f'{tail(result.stdout)}\n{tail(result.stderr)}'
    assert installed_version(container) == version
    assert '/ping2 = demo.echo' in container.get(f'{CONFIG_DIR}/server.conf').decode()
    leftovers = container.run(['find', CONFIG_DIR, '-name', '*.dpkg-*']).stdout.split()
    assert leftovers == [], leftovers
    assert_active(container)
    assert main_pid(container) != old_master, 'the upgrade did not restart the service'
    status, _, body = post(container, PORT, '/ping2', {'ping': 2})
    assert (status, json.loads(body)) == (200, {'ping': 2})


@pytest.fixture
def instance_dirs(container, installed):
    """/etc/zato-daemon/a and b: the shipped config with ports 17021 and 17022 (metrics 18021, 18022).

    Stops the instances and deletes the directories afterwards, so that purge can remove
    /etc/zato-daemon (dpkg leaves a directory that holds files it does not own).
    """
    for name, port in INSTANCES.items():
        directory = f'{CONFIG_DIR}/{name}'
        # Each instance needs its own [main] port and its own [metrics] port.
        container.run(f'mkdir -p {directory} && cp {CONFIG_DIR}/*.conf {directory}/ && '
                      f'sed -i -e "/^\\[main\\]/,/^\\[/ s/^port = .*/port = {port}/" '
                      f'-e "/^\\[metrics\\]/,/^\\[/ s/^port = .*/port = {port + 1000}/" {directory}/server.conf')
        text = container.get(f'{directory}/server.conf').decode()
        assert f'\nport = {port}\n' in text and f'\nport = {port + 1000}\n' in text
    yield
    systemctl(container, 'stop', *(f'{UNIT}@{name}' for name in INSTANCES), check=False)
    container.run(['rm', '-rf', *(f'{CONFIG_DIR}/{name}' for name in INSTANCES)])


def test_09_template_unit_runs_two_instances(container, instance_dirs):
    systemctl(container, 'start', *(f'{UNIT}@{name}' for name in INSTANCES))
    for name, port in INSTANCES.items():
        unit = f'{UNIT}@{name}'
        assert_active(container, unit)
        status, _, body = post(container, port, '/services/demo.echo', {'instance': name})
        assert (status, json.loads(body)) == (200, {'instance': name})
        info = server_info(container, f'{CONFIG_DIR}/{name}')
        assert info['master_proc_pid'] == main_pid(container, unit)
        expected = {'state_dir': f'/var/lib/zato-daemon/{name}', 'logs_dir': f'/var/log/zato-daemon/{name}',
                    'runtime_dir': f'/run/zato-daemon/{name}'}
        assert {key: info[key] for key in expected} == expected
        for directory in expected.values():
            owner = container.run(['stat', '-c', '%U', directory]).stdout.strip()
            assert owner == 'zato', f'{directory} belongs to {owner}'
    assert_active(container)  # the main server on 17010 is untouched


@pytest.mark.parametrize('unit', [f'/lib/systemd/system/{UNIT}.service', f'{UNIT}@a.service'])
def test_10_units_expose_little(container, installed, unit):
    result = container.run(['systemd-analyze', 'security', '--offline=yes', unit], check=False)
    match = re.search(r'Overall exposure level for \S+: ([0-9.]+)', result.stdout)
    assert match, f'no exposure level in the output:\n{result.stdout}\n{result.stderr}'
    exposure = float(match[1])
    print(f'{unit}: exposure {exposure}')
    assert exposure <= MAX_EXPOSURE, tail(result.stdout, 80)


@pytest.mark.parametrize('name', UNIT_FILES)
def test_10b_systemd_analyze_verify_is_clean(container, installed, name):
    # verify also loads the units a unit names (its socket, its service), from the directory of
    # the file it is given: all of them are copied there. The package is installed, so the
    # binaries and the man page the units name exist.
    def instance(file_name):
        return file_name.replace('@.', f'@{VERIFY_INSTANCE}.')

    for unit in UNIT_FILES:
        container.put(f'{VERIFY_DIR}/{instance(unit)}', REPO_ROOT / 'systemd' / unit)
    container.put(f'{VERIFY_DIR}/{UNIT}@{VERIFY_INSTANCE}.socket.d/listen.conf', LISTEN_DROP_IN)
    result = container.run(['systemd-analyze', 'verify', f'{VERIFY_DIR}/{instance(name)}'], check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, ''), result


def test_11_remove_stops_the_service_and_purge_removes_its_files(container, installed):
    container.run(['apt-get', 'remove', '-y', 'zato-daemon'], timeout=INSTALL_TIMEOUT)
    assert systemctl(container, 'is-active', UNIT, check=False).stdout.strip() != 'active'
    assert zato_processes(container) == []
    assert container.exists(f'{CONFIG_DIR}/server.conf'), 'remove (not purge) must keep the conffiles'

    container.run(['apt-get', 'purge', '-y', 'zato-daemon'], timeout=INSTALL_TIMEOUT)
    status = container.run(['dpkg-query', '-W', '-f', '${Status}', 'zato-daemon'], check=False).stdout
    assert 'installed' not in status.replace('not-installed', ''), status
    # Debian Policy 10.8: log files go on purge, as do configuration and state.
    for directory in (CONFIG_DIR, '/var/lib/zato-daemon', '/var/log/zato-daemon', '/run/zato-daemon'):
        assert not container.exists(directory), f'{directory} survived the purge'
    assert leftovers(container) == []
    user = container.run(['getent', 'passwd', 'zato'], check=False).stdout.strip()
    print(f'user zato after purge: {user or "removed"} (Debian practice is to leave it)')


def test_12_reinstall_after_purge_serves(container, installed):
    result = install(container, installed)
    assert result.returncode == 0, f'{tail(result.stdout)}\n{tail(result.stderr)}'
    assert dpkg_verify(container) == []
    assert_active(container)
    assert systemctl(container, 'is-active', SOCKET_UNIT, check=False).stdout.strip() == 'active'
    status, _, body = post(container, PORT, '/services/demo.echo', {'reinstalled': True})
    assert (status, json.loads(body)) == (200, {'reinstalled': True})


def test_13_upgrade_from_the_previous_version_keeps_edited_conffiles_and_replaces_untouched_ones(
        container, installed, previous_deb):
    purge(container)
    result = install(container, previous_deb)
    assert result.returncode == 0, f'{tail(result.stdout)}\n{tail(result.stderr)}'
    assert_active(container)
    shipped = {name: (REPO_ROOT / 'etc' / 'zato-daemon' / name).read_text()
               for name in ('server.conf', 'sso.conf', 'pickup.conf')}
    for name in PREVIOUS_CONFFILES:
        assert container.get(f'{CONFIG_DIR}/{name}').decode().endswith(PREVIOUS_LINE), name
    # The admin's edits, in place (the files keep their owner and mode): server.conf, which the
    # new version changes too, and sso.conf, which it does not. pickup.conf stays untouched.
    edited = {'server.conf': shipped['server.conf'].replace('\n[channels]\n', '\n[channels]\n/ping3 = demo.echo\n', 1)
              + PREVIOUS_LINE, 'sso.conf': shipped['sso.conf'] + '# edited by the admin\n'}
    assert edited['server.conf'] != shipped['server.conf'] + PREVIOUS_LINE, 'server.conf has no [channels]'
    for name, text in edited.items():
        container.host_path(f'{CONFIG_DIR}/{name}').write_text(text)
    old_master = main_pid(container)
    # The socket unit is never stopped or restarted by an upgrade: that would refuse connections.
    socket_started = container.show(SOCKET_UNIT, 'ActiveEnterTimestampMonotonic')

    container.put(f'/root/{installed.name}', installed)
    result = container.run(['apt-get', 'install', '-y', *UNATTENDED, f'/root/{installed.name}'], check=False,
                           timeout=INSTALL_TIMEOUT)
    assert result.returncode == 0, f'{tail(result.stdout)}\n{tail(result.stderr)}'
    assert installed_version(container) == deb_version(installed)
    for name, text in edited.items():
        assert container.get(f'{CONFIG_DIR}/{name}').decode() == text, f'the edited {name} was not kept'
    assert container.get(f'{CONFIG_DIR}/server.conf.dpkg-dist').decode() == shipped['server.conf']
    assert container.get(f'{CONFIG_DIR}/pickup.conf').decode() == shipped['pickup.conf'], 'pickup.conf not replaced'
    others = container.run(['find', CONFIG_DIR, '-name', '*.dpkg-*', '!', '-name', 'server.conf.dpkg-dist']).stdout
    assert others.split() == []
    # Only the edited conffiles differ from the package ('c': a conffile).
    assert sorted(dpkg_verify(container)) == sorted(f'??5?????? c {CONFIG_DIR}/{name}' for name in edited)
    assert_active(container)
    assert main_pid(container) != old_master, 'the upgrade did not restart the service'
    assert container.show(SOCKET_UNIT, 'ActiveEnterTimestampMonotonic') == socket_started, 'the socket restarted'
    status, _, body = post(container, PORT, '/ping3', {'ping': 3})
    assert (status, json.loads(body)) == (200, {'ping': 3})


def test_14_purge_after_the_upgrade_leaves_nothing_of_ours(container, installed):
    purge(container)
    assert zato_processes(container) == []
    assert leftovers(container) == []
