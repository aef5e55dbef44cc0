"""What became of a pickup file (deploy/pickup.local_outcome), and the deploy command's report."""

import pytest

from zato_daemon.cluster.deploy_command import Item, report
from zato_daemon.deploy.manifest import Entry
from zato_daemon.deploy.pickup import DEPLOYED, REFUSED, UNDEPLOYED, local_outcome

ENTRIES = {'crm.py': Entry('aaa', ('crm.get',), '/p/crm.py', 'crm.aaa.py')}
REFUSALS = {'crm.py': {'sha256': 'bbb', 'reason': '/p/crm.py:3: syntax error'}, 'new.py': {'sha256': 'ccc',
                                                                                          'reason': 'exited'}}


@pytest.mark.parametrize('name, sha256, expected', [
    ('crm.py', 'aaa', (DEPLOYED, '')),
    ('crm.py', 'bbb', (REFUSED, '/p/crm.py:3: syntax error')),   # refused; the older version serves
    ('crm.py', 'ddd', None),                                      # not decided yet
    ('new.py', 'ccc', (REFUSED, 'exited')),
    ('new.py', 'eee', None),
    ('crm.py', None, None),                                       # removal not seen yet
    ('gone.py', None, (UNDEPLOYED, '')),
])
def test_local_outcome(name, sha256, expected):
    assert local_outcome(ENTRIES, REFUSALS, name, sha256) == expected


def test_the_report_exits_1_naming_each_refusal():
    item = Item('crm.py', 'source', {'a': {'outcome': 'deployed', 'reason': ''},
                                      'b': {'outcome': 'refused', 'reason': 'syntax error'}}, 'p' * 32)
    status, lines, data = report(['a', 'b'], [item])
    assert status == 1
    assert lines == ['crm.py  a  deployed', 'crm.py  b  refused: syntax error']
    assert data['ok'] is False and data['modules']['crm.py']['hosts']['b']['reason'] == 'syntax error'


def test_no_live_member_is_not_a_success():
    status, lines, _ = report([], [Item('crm.py', 'source')])
    assert status == 1 and lines == ['no live member now: stored in the cluster, members deploy it when they join']
