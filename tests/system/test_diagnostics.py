"""The troubleshooting store as an operator uses it on an installed server."""

import json

import pytest

from tests.system.container import poll
from tests.system.helpers import CONFIG_DIR, PORT, UNIT, assert_active, post, systemctl

pytestmark = pytest.mark.xdist_group('system')


def slow_as(container, user):
    command = ['zato-daemon', 'slow', CONFIG_DIR, 'demo.sleep', '--json']
    if user != 'root':
        command = ['runuser', '-u', user, '--', *command]
    result = container.run(command, check=False)
    assert result.returncode == 0, f'{user}: {result.stderr}'
    return json.loads(result.stdout)


def test_a_slow_call_is_stored_and_listed_as_zato_and_as_root(container, installed):
    systemctl(container, 'start', UNIT)
    assert_active(container)
    status, headers, _ = post(container, PORT, '/services/demo.sleep', {'seconds': 2.1, 'token': 't-123'})
    assert status == 200
    cid = headers['x-zato-cid']
    rows = poll(lambda: [row for row in slow_as(container, 'root') if row['cid'] == cid], 15, message='the slow call')
    assert rows[0]['duration_ms'] >= 2100 and 't-123' not in json.dumps(rows)
    assert [row for row in slow_as(container, 'zato') if row['cid'] == cid] == rows
    table = container.run(['zato-daemon', 'slow', CONFIG_DIR]).stdout
    assert cid in table and 'demo.sleep' in table
    mode = container.run(['stat', '-c', '%a %U', '/var/lib/zato-daemon/diagnostics.sqlite3']).stdout.split()
    assert mode == ['640', 'zato']
