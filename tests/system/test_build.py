"""The package builds the way Debian builds it (issue 15, part 1).

As sbuild does on a buildd: a fresh Debian 12 tree holding only build-essential (debootstrap
minbase, cached, copied for this run), the source package made with dpkg-source, and the binary
package built from the unpacked .dsc after `apt-get build-dep` installed what debian/control
declares, without Recommends. Twice: first under the nocheck profile, with only the
Build-Depends that profile keeps, then with all of them, running the unit tests. apt reaches
only the mirror this machine's sources name; the .debs it downloads are kept in CACHE_DIR, so
that later runs download nothing new.

One module fixture does the work (about a minute and a half once the .debs are cached) and
keeps every step's output; each test checks one promise and shows the step's log when it fails.
"""

import re
import time
from dataclasses import dataclass, field

import pytest

from tests.system.container import BUILD_PACKAGES, CACHE_DIR, Chroot, base_tree, host_problems, tail
from tests.system.helpers import export_source

pytestmark = pytest.mark.xdist_group('system')

BUILD = '/build'
# Inside the chroot: no Recommends (as sbuild installs Build-Depends), downloads as root into
# the bind-mounted cache (apt's _apt user cannot write there), no translations to fetch.
APT_CONF = b'APT::Install-Recommends "false";\nAPT::Sandbox::User "root";\nAcquire::Languages "none";\n'
APT_ARCHIVES = CACHE_DIR / 'apt-archives'
NOCHECK = {'DEB_BUILD_PROFILES': 'nocheck', 'DEB_BUILD_OPTIONS': 'nocheck'}
# What only the build-time tests need: absent from a nocheck build's tree.
TEST_ONLY = ('python3-pytest', 'python3-gevent')
BUILD_TIMEOUT = 900


@dataclass(repr=False)
class Builds:
    version: str = ''
    steps: dict = field(default_factory=dict)  # name -> CompletedProcess
    seconds: dict = field(default_factory=dict)  # name -> wall-clock duration
    packages: dict = field(default_factory=dict)  # moment -> set of installed package names
    collected: int = 0  # unit tests pytest collects in the unpacked source

    def log(self, name):
        if name not in self.steps:
            return f'{name}: not run, an earlier step failed: ' + ', '.join(
                f'{done} exited with {step.returncode}' for done, step in self.steps.items())
        step = self.steps[name]
        return f'{step.args!r} exited with {step.returncode}\n{tail(step.stdout, 60)}\n{tail(step.stderr, 30)}'

    def ok(self, name):
        return name in self.steps and self.steps[name].returncode == 0


def installed_packages(root):
    return set(root.run(['dpkg-query', '-W', '-f', '${Package}\\n']).stdout.split())


@pytest.fixture(scope='module')
def builds():
    problems = host_problems()
    if problems:
        pytest.fail('cannot build in a chroot on this machine: ' + '; '.join(problems), pytrace=False)
    result, started = Builds(), time.monotonic()
    with Chroot(base_tree(BUILD_PACKAGES), binds={APT_ARCHIVES: '/var/cache/apt/archives'}) as root:

        def step(name, cmd, cwd=BUILD, env=None, timeout=BUILD_TIMEOUT):
            started = time.monotonic()
            result.steps[name] = root.run(cmd, cwd=cwd, env=env, check=False, timeout=timeout)
            result.seconds[name] = time.monotonic() - started
            return result.steps[name].returncode == 0

        root.host_path('/etc/apt/apt.conf.d').joinpath('90zato-build').write_bytes(APT_CONF)
        export_source(root.host_path(BUILD) / 'zato-daemon')
        result.packages['start'] = installed_packages(root)
        if not step('source', ['dpkg-source', '-b', 'zato-daemon']):
            return result
        [dsc] = root.host_path(BUILD).glob('zato-daemon_*.dsc')
        result.version = dsc.name.removeprefix('zato-daemon_').removesuffix('.dsc')

        # As sbuild: a fresh unpacking of the .dsc for each build; the .debs then moved aside.
        def build(name, env):
            tree = f'{BUILD}/{name}'
            if not (step(f'{name}-unpack', ['dpkg-source', '-x', dsc.name, name])
                    and step(f'{name}-build-dep', ['apt-get', 'build-dep', '-y', *(['-P', 'nocheck'] if env else []),
                                                   f'./{name}'])):
                return False
            result.packages[name] = installed_packages(root)
            return (step(f'{name}-build', ['dpkg-buildpackage', '-us', '-uc', '-b'], cwd=tree, env=env)
                    and step(f'{name}-keep', f'mkdir {name}-out && mv ./*.deb ./*.changes ./*.buildinfo {name}-out/'))

        if not step('update', ['apt-get', 'update'], timeout=300):
            return result
        build('nocheck', NOCHECK)
        if build('check', {}):
            collect = root.run(['python3', '-m', 'pytest', '--collect-only', '-q', '-p', 'no:cacheprovider',
                                'tests/unit'], cwd=f'{BUILD}/check', check=False)
            counted = re.search(r'^(\d+) tests? collected', collect.stdout, re.M)
            result.collected = int(counted[1]) if counted else 0
            step('install', f'apt-get install -y ./check-out/zato-daemon_{result.version}_all.deb', timeout=300)
            step('verify', ['dpkg', '-V', 'zato-daemon'])
            step('run', ['zato-daemon', '--version'])
            step('contents', 'for deb in nocheck-out/*.deb check-out/*.deb; do '
                             'echo "== $deb"; dpkg-deb -c "$deb" | awk \'{print $1, $2, $6, $7, $8}\'; '
                             'dpkg-deb -I "$deb" md5sums; done')
    print(f'clean build of zato-daemon {result.version}, {time.monotonic() - started:.0f} s in all (tree copied '
          'and deleted): ' + ', '.join(f'{name} {seconds:.1f} s' for name, seconds in result.seconds.items()))
    return result


def test_the_source_package_builds_in_a_tree_of_build_essential_alone(builds):
    assert not {'debhelper', 'python3', 'dh-python'} & builds.packages['start'], sorted(builds.packages['start'])
    assert 'build-essential' in builds.packages['start']
    assert builds.ok('source'), builds.log('source')
    assert builds.version


def test_a_nocheck_build_needs_only_what_that_profile_keeps_and_runs_no_test(builds):
    assert builds.ok('nocheck-build-dep'), builds.log('nocheck-build-dep')
    assert builds.ok('nocheck-build'), builds.log('nocheck-build')
    assert not set(TEST_ONLY) & builds.packages['nocheck'], 'the nocheck tree got what only the tests need'
    log = builds.steps['nocheck-build'].stdout
    assert re.search(r'The call to "dh_auto_test\b.*" was omitted due to "DEB_BUILD_OPTIONS=nocheck"', log), (
        builds.log('nocheck-build'))
    assert not re.search(r'\d+ passed', builds.steps['nocheck-build'].stdout), builds.log('nocheck-build')
    assert builds.ok('nocheck-keep'), builds.log('nocheck-keep')


def test_the_full_build_runs_every_unit_test_against_debians_libraries(builds):
    assert builds.ok('check-build-dep'), builds.log('check-build-dep')
    assert set(TEST_ONLY) <= builds.packages['check']
    assert builds.ok('check-build'), builds.log('check-build')
    log = builds.steps['check-build'].stdout
    summary = re.findall(r'^=+ (.*(?:passed|failed|error).*) in [\d.]+s', log, re.M)
    assert len(summary) == 1, f'expected one pytest run in the build log, found {summary}\n{builds.log("check-build")}'
    counts = {word: int(number) for number, word in re.findall(r'(\d+) (\w+)', summary[0])}
    print(f'build-time tests: {summary[0]} (collected in the source: {builds.collected})')
    assert set(counts) <= {'passed', 'skipped', 'deselected'}, summary[0]
    assert builds.collected > 1000, 'the unit tests were not collected in the unpacked source'
    assert counts['passed'] + counts.get('skipped', 0) == builds.collected, (summary[0], builds.collected)


def test_both_builds_make_the_same_package(builds):
    assert builds.ok('contents'), builds.log('contents')
    listings = builds.steps['contents'].stdout.split('== ')[1:]
    assert len(listings) == 2, builds.steps['contents'].stdout
    nocheck, check = (listing.split('\n', 1)[1] for listing in listings)
    assert nocheck == check, 'the nocheck profile changed the package'
    assert 'lib/systemd/system/zato-daemon.socket' in check, check


def test_the_built_package_installs_and_runs(builds):
    assert builds.ok('install'), builds.log('install')
    assert builds.ok('verify') and builds.steps['verify'].stdout == '', builds.log('verify')
    assert builds.ok('run'), builds.log('run')
    # A native package: the package's version is the program's.
    assert builds.steps['run'].stdout.split() == ['zato-daemon', builds.version], builds.log('run')
