"""Every autopkgtest of debian/tests, run by autopkgtest itself in the booted container against the
installed .deb (issue 15, part 2).

autopkgtest 5.28, Debian 12's, with its null virt server: the container is the testbed, as a Debian
CI worker's machine is. Given the source tree (the files `make deb` builds from) and the .deb, it
installs the .deb, installs each test's Depends (preinstalled in the container, which has no
network: apt's refresh of the mirror fails with a warning and the packages are found installed),
honours each test's Restrictions (the null server offers root and isolation-machine), runs each
test from the unpacked source tree, and fails a test that writes to stderr unless it declares
allow-stderr. Its summary is the result; each test's output is shown when it fails.

The module leaves the container as it found it: a package it found not installed (the usual case,
this module running first) is purged at its end, so later modules install it afresh.
"""

import re
import textwrap

import pytest

from tests.conftest import REPO_ROOT
from tests.system.container import tail
from tests.system.helpers import UNIT, export_source, install, systemctl

pytestmark = pytest.mark.xdist_group('system')

SOURCE = '/root/autopkgtest-source'
OUTPUT = '/root/autopkgtest-output'
RUN_TIMEOUT = 900


def declared_tests(control_text):
    """The names autopkgtest gives the tests of a debian/tests/control: the names in `Tests:`,
    and command1, command2, ... for the `Test-Command:` stanzas, in file order."""
    names, commands = [], 0
    text = '\n'.join(line.split('#', 1)[0] for line in control_text.splitlines())
    for stanza in re.split(r'\n\s*\n', text):
        fields = dict(re.findall(r'^([\w-]+):[ \t]*(.*(?:\n[ \t].*)*)', stanza, re.M))
        if 'Tests' in fields:
            names += fields['Tests'].replace(',', ' ').split()
        elif 'Test-Command' in fields:
            commands += 1
            names.append(f'command{commands}')
    return names


DECLARED = declared_tests((REPO_ROOT / 'debian' / 'tests' / 'control').read_text())


def test_declared_tests_are_named_as_autopkgtest_names_them():
    control = textwrap.dedent('''\
        Test-Command: true
        # a comment
        Depends: @

        Tests: a, b
        Depends: @,
         curl

        Test-Command: false
        ''')
    assert declared_tests(control) == ['command1', 'a', 'b', 'command2']


def parse_summary(text):
    """{name: (status, detail)} from autopkgtest's summary file."""
    results = {}
    for line in text.splitlines():
        name, status, *detail = line.split(None, 2)
        results[name] = (status, detail[0] if detail else '')
    return results


def run_autopkgtest(container, source, *debs, output=OUTPUT, timeout=RUN_TIMEOUT):
    """Runs autopkgtest on the container's `source` tree with `debs` (container paths), the null
    virt server, its results in `output`; returns (CompletedProcess, {name: (status, detail)})."""
    container.run(['rm', '-rf', output])
    # -B: the tree is not built; the .debs given are the package's binaries.
    result = container.run(['autopkgtest', '-B', '--output-dir', output, *debs, source, '--', 'null'],
                           check=False, timeout=timeout)
    summary = container.run(['cat', f'{output}/summary'], check=False).stdout
    return result, parse_summary(summary)


def output_of(container, name):
    """What the test `name` wrote, for assertion messages."""
    outputs = []
    for stream in ('stdout', 'stderr'):
        path = f'{OUTPUT}/{name}-{stream}'
        if container.exists(path):
            outputs.append(f'--- {name}-{stream} ---\n{tail(container.get(path), 60)}')
    return '\n'.join(outputs)


@pytest.fixture(scope='module')
def autopkgtest_run(container, package_deb, tmp_path_factory):
    status = container.run(['dpkg-query', '-W', '-f', '${Status}', 'zato-daemon'], check=False).stdout
    was_installed = status == 'install ok installed'
    container.put_tree(SOURCE, export_source(tmp_path_factory.mktemp('autopkgtest') / 'source'))
    deb = f'/root/{package_deb.name}'
    container.put(deb, package_deb)
    result, summary = run_autopkgtest(container, SOURCE, deb)
    print(f'autopkgtest exited with {result.returncode}: '
          + '; '.join(f'{name} {status} {detail}'.strip() for name, (status, detail) in summary.items()))
    yield result, summary
    if was_installed:
        install(container, package_deb)
        systemctl(container, 'start', UNIT, check=False)
    else:
        container.run(['apt-get', 'purge', '-y', 'zato-daemon'], check=False, timeout=300)


def test_autopkgtest_ran_every_declared_test_and_all_passed(autopkgtest_run):
    result, summary = autopkgtest_run
    assert list(summary) == DECLARED, f'{summary}\n{tail(result.stderr, 60)}'
    assert result.returncode == 0, f'autopkgtest exited with {result.returncode}\n{tail(result.stderr, 60)}'


@pytest.mark.parametrize('name', DECLARED)
def test_each_autopkgtest_passes(container, autopkgtest_run, name):
    result, summary = autopkgtest_run
    status, detail = summary.get(name, ('MISSING', ''))
    assert status == 'PASS', f'{name}: {status} {detail}\n{output_of(container, name)}\n{tail(result.stderr, 30)}'


def test_the_unit_tests_ran_against_the_installed_package(container, autopkgtest_run):
    output = container.get(f'{OUTPUT}/unit-stdout').decode()
    summary = re.findall(r'^=+ (.*) in [\d.]+s', output, re.M)
    assert summary and re.match(r'\d+ passed', summary[-1]), tail(output)
    passed = int(summary[-1].split()[0])
    print(f'unit tests in autopkgtest: {summary[-1]}')
    assert passed > 1000, summary[-1]
    assert 'failed' not in summary[-1] and 'error' not in summary[-1], summary[-1]
    # The script refuses to run them unless zato_daemon comes from the package: the tree it runs
    # in is autopkgtest's scratch directory, with no zato_daemon/ of its own.
    assert re.search(r'^rootdir: /tmp/autopkgtest[^/]*/autopkgtest_tmp/', output, re.M), tail(output)


def test_this_autopkgtest_fails_a_test_writing_to_stderr_unless_allowed(container, autopkgtest_run, tmp_path):
    # The rule the tests above rely on, shown on a source package of two one-line tests.
    source = tmp_path / 'noisy'
    (source / 'debian' / 'tests').mkdir(parents=True)
    (source / 'debian' / 'changelog').write_text(
        'noisy (1) unstable; urgency=medium\n\n  * Test.\n\n -- A <a@example.org>  Tue, 24 Nov 2026 09:17:00 +0000\n')
    (source / 'debian' / 'control').write_text('Source: noisy\n\nPackage: noisy\nArchitecture: all\n'
                                               'Description: test\n test\n')
    (source / 'debian' / 'tests' / 'control').write_text(
        'Tests: quiet-noise\nDepends: coreutils\n\nTests: loud-noise\nDepends: coreutils\nRestrictions: allow-stderr\n')
    for name in ('quiet-noise', 'loud-noise'):
        script = source / 'debian' / 'tests' / name
        script.write_text('#!/bin/sh\necho "noise on stderr" >&2\n')
        script.chmod(0o755)
    container.put_tree('/root/noisy', source)
    result, summary = run_autopkgtest(container, '/root/noisy', output='/root/noisy-output', timeout=300)
    assert summary.get('loud-noise', ('',))[0] == 'PASS', f'{summary}\n{tail(result.stderr)}'
    status, detail = summary.get('quiet-noise', ('', ''))
    assert (status, detail) == ('FAIL', 'stderr: noise on stderr'), f'{summary}\n{tail(result.stderr)}'
