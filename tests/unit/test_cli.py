"""The command line without a server: --help of every command, the status of a bad command
line, and the one-line messages the CLI composes."""

import re
from types import SimpleNamespace

import pytest

from zato_daemon import cli
from zato_daemon.cli import (HELP, main, not_a_server_directory_message, payload_too_large_message,
                             permission_message, reload_wait_limit, signal_permission_message)

COMMAND_NAMES = sorted(cli.COMMANDS)


def help_of(capsys, *argv):
    with pytest.raises(SystemExit) as exited:
        main([*argv, '--help'])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_every_command_has_help_text():
    assert sorted(HELP) == COMMAND_NAMES


@pytest.mark.parametrize('name', COMMAND_NAMES)
def test_help_of_every_command_has_a_description_an_example_and_exit_statuses(capsys, name):
    text = help_of(capsys, name)
    usage, description = text.split('\n\n')[:2]
    assert usage.startswith(f'usage: zato-daemon {name} ')
    # A description: the summary, then at least one more paragraph saying more.
    assert ' '.join(description.split()) == HELP[name].summary
    assert len(text.split('\n\n')[2].split()) >= 10
    example = text.split('example:\n', 1)[1].split('\n\n')[0]
    assert all(line.startswith(f'  zato-daemon {name} ') or f'| zato-daemon {name} ' in line
               for line in example.splitlines()), example
    statuses = dict(re.findall(r'^  (\d+) +(.+)$', text.split('exit status:\n', 1)[1], re.MULTILINE))
    assert statuses['0']
    assert set(statuses) <= {'0', '1', '64', '66', '69', '70', '73', '77', '78'}


@pytest.mark.parametrize('name', ['stop', 'reload', 'dump', 'info', 'invoke', 'slow', 'samples', 'verify', 'top'])
def test_commands_on_a_server_directory_document_66_and_77(capsys, name):
    text = help_of(capsys, name).split('exit status:\n', 1)[1]
    assert re.search(r'^  66 +DIR is not a server directory', text, re.MULTILINE)
    assert re.search(r'^  77 +permission denied', text, re.MULTILINE)


def test_the_top_level_help_lists_every_command_and_the_statuses(capsys):
    text = help_of(capsys)
    listed = re.findall(r'^    (\S+)', text, re.MULTILINE)
    assert listed == list(cli.COMMANDS)
    for name in COMMAND_NAMES:
        assert HELP[name].summary.split()[0] in text
    assert 'zato-daemon COMMAND --help' in text
    statuses = re.findall(r'^  (\d+) ', text.split('exit status:\n', 1)[1], re.MULTILINE)
    assert statuses == ['0', '1', '64', '66', '69', '70', '73', '77', '78']


@pytest.mark.parametrize('argv, says', [
    ([], 'required: COMMAND'),
    (['restart'], "invalid choice: 'restart'"),
    (['stop', '--force'], 'unrecognized arguments: --force'),
    (['stop', '/srv/a', '/srv/b'], 'unrecognized arguments: /srv/b'),
    (['invoke', '/srv/a'], 'required: SERVICE'),
    # One operand is DIR, never a SERVICE taken for it.
    (['samples', '/srv/a'], 'required: SERVICE'),
    (['samples'], 'required: DIR, SERVICE'),
    (['verify', '/srv/a', 'x.y'], 'required: FILE'),
    (['hash'], 'required: FILE'),
    (['dump', '/srv/a', '--cluster', '--timeout', '0'], "'0' is not a number of seconds over 0 and at most 3600"),
    (['samples', '/srv/a', '--cluster'], 'required: SERVICE'),
])
def test_a_bad_command_line_exits_64_saying_what_is_wrong(capsys, argv, says):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 64
    err = capsys.readouterr().err
    assert err.startswith('usage: zato-daemon')
    assert says in err.splitlines()[-1]


def test_version_exits_0(capsys):
    with pytest.raises(SystemExit) as exited:
        main(['--version'])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith('zato-daemon ')


@pytest.mark.parametrize('path, group, expected', [
    ('/run/zato-daemon/zato-daemon.pid', 'zato',
     '/run/zato-daemon/zato-daemon.pid: permission denied; run as root, or as a member of group zato '
     '(adduser $USER zato, then log in again)'),
    ('/srv/a/run/admin.sock', 'root', '/srv/a/run/admin.sock: permission denied; run as root'),
    ('/srv/a/server.conf', None,
     "/srv/a/server.conf: permission denied; run as root, or as a member of the server's group"),
    (None, 'zato', 'permission denied; run as root, or as a member of group zato (adduser $USER zato, then '
                   'log in again)'),
])
def test_a_permission_error_names_the_path_and_what_to_do(path, group, expected):
    assert permission_message(path, group) == expected


def test_the_reason_the_system_gave_is_kept():
    assert permission_message('/x', 'root', 'Operation not permitted') == \
        '/x: operation not permitted; run as root'


@pytest.mark.parametrize('owner, expected', [
    ('zato', 'may not send a signal to master pid 42 (it runs as user zato); run as root or as user zato'),
    ('root', 'may not send a signal to master pid 42 (it runs as user root); run as root'),
    (None, 'may not send a signal to master pid 42; run as root'),
])
def test_a_signal_the_user_may_not_send(owner, expected):
    assert signal_permission_message(42, owner) == expected


@pytest.mark.parametrize('exists, is_dir, expected', [
    (False, False, '/srv/a: no such directory; pass the server directory that holds server.conf'),
    (True, False, '/srv/a: not a directory; pass the server directory that holds server.conf'),
    (True, True, '/srv/a is not a server directory: it holds no server.conf'),
])
def test_a_directory_that_is_not_a_server_directory(exists, is_dir, expected):
    assert not_a_server_directory_message('/srv/a', exists, is_dir) == expected


def test_a_payload_over_the_limit():
    assert payload_too_large_message(2048, 1024) == (
        'the payload is 2048 bytes, over max_request_size 1024; send less, or raise [main] max_request_size '
        'and reload')
    assert payload_too_large_message(2048, None).startswith(
        'the payload is 2048 bytes, over the max_request_size of the server;')


def server_config(worker_boot_timeout, **misc):
    return SimpleNamespace(main=SimpleNamespace(worker_boot_timeout=worker_boot_timeout),
                           misc=SimpleNamespace(**misc))


def test_reload_waits_for_the_callables_and_a_boot_plus_a_margin():
    assert reload_wait_limit(server_config(20.0, startup_callable_timeout=5.0)) == 5.0 + 20.0 + cli.RELOAD_MARGIN


def test_reload_with_a_config_that_does_not_load_waits_the_defaults():
    assert reload_wait_limit(None) == 60.0 + 60.0 + cli.RELOAD_MARGIN


@pytest.mark.parametrize('argv, expected', [
    (['dump', '/srv/a'], {'cluster': False, 'timeout': 10.0, 'json': False}),
    (['dump', '/srv/a', '--cluster', '--timeout', '2.5', '--json'], {'cluster': True, 'timeout': 2.5, 'json': True}),
    (['slow', '/srv/a', 'crm.get', '--cluster', '--since', '2026-01-31'],
     {'cluster': True, 'service': 'crm.get', 'since': '2026-01-31'}),
    (['samples', '/srv/a', 'crm.get', '--cluster', '--json'], {'cluster': True, 'service': 'crm.get', 'json': True}),
])
def test_the_cluster_options_of_dump_slow_and_samples(argv, expected):
    args = cli.build_parser().parse_args(argv)
    assert {name: getattr(args, name) for name in expected} == expected


def test_a_since_that_is_not_a_time_is_64_before_redis_is_asked(capsys, tmp_path):
    assert main(['slow', str(tmp_path), '--cluster', '--since', 'yesterday']) == 64
    assert capsys.readouterr().err == ("zato-daemon: --since: 'yesterday' is not an ISO 8601 time "
                                       "(e.g. 2026-01-31T08:00, UTC unless it says)\n")


def test_dump_json_without_cluster_is_64_and_signals_nothing(capsys, tmp_path):
    # Checked before the server is even looked for: nothing is signalled.
    assert main(['dump', str(tmp_path), '--json']) == 64
    assert capsys.readouterr().err == ('zato-daemon: --json needs --cluster: a dump of one server goes to '
                                       'server.log and the journal\n')
