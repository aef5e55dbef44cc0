"""Logging as an admin meets it: the real journald, journalctl filters, the catalog, logrotate."""

import json

import pytest

from tests.system.container import poll
from tests.system.helpers import CONFIG_DIR, PORT, UNIT, assert_active, post, systemctl
from zato_daemon.logs import levels

pytestmark = pytest.mark.xdist_group('system')

SECRET = 'hunter2-do-not-log'
LOG = '/var/log/zato-daemon/server.log'


def entries(container, *filters):
    """Journal entries of the unit matching `filters`, as dicts (-o json, --all for long fields)."""
    output = container.journal('-u', UNIT, '-o', 'json', '--all', *filters)
    return [json.loads(line) for line in output.splitlines() if line.strip()]


@pytest.fixture(scope='module')
def failed_call(container, installed):
    """One failing call to demo.fail with a secret in its input; returns its cid."""
    systemctl(container, 'start', UNIT)
    assert_active(container)
    status, headers, _ = post(container, PORT, '/services/demo.fail',
                              {'user': 'alice', 'password': SECRET, 'nested': {'api_key': SECRET}})
    assert status == 500
    cid = headers['x-zato-cid']
    poll(lambda: entries(container, f'ZATO_CID={cid}'), 10, message='the failure in the journal')
    return cid


def test_priority_warning_shows_the_failure_and_no_lifecycle(container, failed_call):
    problems = entries(container, '-p', 'warning')
    assert problems, 'journalctl -p warning shows nothing'
    assert all(int(entry['PRIORITY']) <= 4 for entry in problems)
    assert any(entry.get('ZATO_CID') == failed_call for entry in problems)
    assert not [entry for entry in problems if 'Server ready' in entry['MESSAGE']]
    # The lifecycle is there, at INFO.
    assert entries(container, f'MESSAGE_ID={levels.SERVER_READY.message_id}')


def test_the_failure_entry_has_context_traceback_and_redacted_input(container, failed_call):
    found = entries(container, f'ZATO_CID={failed_call}', f'MESSAGE_ID={levels.SERVICE_FAILED.message_id}')
    assert len(found) == 1
    entry = found[0]
    assert entry['PRIORITY'] == '3'
    assert entry['ZATO_SERVICE'] == 'demo.fail'
    assert entry['SYSLOG_IDENTIFIER'] == 'zato-daemon'
    assert entry['ZATO_SERVER_DIR'] == CONFIG_DIR
    assert entry['ZATO_WORKER'].isdigit()
    assert entry['CODE_FILE'].endswith('zato_daemon/http/router.py')
    assert 'Traceback (most recent call last):' in entry['MESSAGE']
    assert 'ValueError: demo.fail always fails' in entry['MESSAGE']
    assert '"user": "alice"' in entry['ZATO_INPUT'] and '******' in entry['ZATO_INPUT']
    assert SECRET not in json.dumps(entries(container))
    assert SECRET not in container.get(LOG).decode()


def test_service_filter_finds_the_services_entries(container, failed_call):
    found = entries(container, 'ZATO_SERVICE=demo.fail')
    assert found and all(entry['ZATO_SERVICE'] == 'demo.fail' for entry in found)


def test_every_record_reaches_the_journal_once(container, installed):
    _, headers, _ = post(container, PORT, '/services/demo.sleep', {'seconds': 0.01})
    cid = headers['x-zato-cid']
    poll(lambda: entries(container, f'ZATO_CID={cid}'), 10, message='the sleep line')
    lines = [entry for entry in entries(container) if 'Sleeping for 0.010 s' in entry.get('MESSAGE', '')
             and cid in json.dumps(entry)]
    assert len(lines) == 1, lines
    # Native entries only: nothing of ours arrived through stdout (_TRANSPORT=stdout).
    from_stdout = [str(entry.get('MESSAGE', '')) for entry in entries(container) if entry.get('_TRANSPORT') == 'stdout']
    assert not [message for message in from_stdout if 'zato_daemon' in message], '\n'.join(from_stdout)


def test_catalog_explains_the_event(container, failed_call):
    output = container.journal('-u', UNIT, '-x', f'MESSAGE_ID={levels.SERVICE_FAILED.message_id}')
    assert levels.SERVICE_FAILED.subject in output
    assert f'journalctl ZATO_CID={failed_call}' in output


def test_server_log_is_for_group_adm_only(container, installed):
    container.run(['sh', '-c', 'id alice >/dev/null 2>&1 || useradd -G adm alice; id bob >/dev/null 2>&1 || useradd bob'])
    assert container.run(['runuser', '-u', 'alice', '--', 'cat', LOG], check=False).returncode == 0
    denied = container.run(['runuser', '-u', 'bob', '--', 'cat', LOG], check=False)
    assert denied.returncode != 0 and 'Permission denied' in denied.stderr
    mode = container.run(['stat', '-c', '%a %U', LOG]).stdout.split()
    assert mode == ['640', 'zato']


def test_logrotate_then_a_request_writes_the_new_file(container, installed):
    container.run(['logrotate', '-f', '/etc/logrotate.d/zato-daemon'])
    assert container.exists(LOG + '.1')
    _, headers, _ = post(container, PORT, '/services/demo.sleep', {'seconds': 0.01})
    poll(lambda: container.exists(LOG) and headers['x-zato-cid'] in container.get(LOG).decode(), 10,
         message='the line in the new server.log')
    assert container.run(['runuser', '-u', 'alice', '--', 'cat', LOG], check=False).returncode == 0


def test_a_start_that_fails_is_one_critical_entry_and_no_restart(container, installed):
    container.run(['sh', '-c', 'mkdir -p /etc/zato-daemon/broken && '
                   'printf "[main]\\nport = 17031\\nno_such_key = 1\\n" > /etc/zato-daemon/broken/server.conf'])
    try:
        systemctl(container, 'start', 'zato-daemon@broken', check=False)
        poll(lambda: systemctl(container, 'is-failed', 'zato-daemon@broken', check=False).stdout.strip() == 'failed',
             10, message='the instance to fail')
        shown = container.show('zato-daemon@broken', 'ExecMainStatus', 'NRestarts')
        assert shown == {'ExecMainStatus': '78', 'NRestarts': '0'}
        critical = [json.loads(line) for line in container.journal(
            '-u', 'zato-daemon@broken', '-o', 'json', '-p', 'crit').splitlines() if line.strip()]
        ours = [entry for entry in critical if entry.get('MESSAGE_ID') == levels.START_FAILED.message_id]
        assert len(ours) == 1
        assert 'no_such_key' in ours[0]['MESSAGE'] and 'server.conf:3' in ours[0]['MESSAGE']
    finally:
        systemctl(container, 'reset-failed', 'zato-daemon@broken', check=False)
        container.run(['rm', '-rf', '/etc/zato-daemon/broken'])
