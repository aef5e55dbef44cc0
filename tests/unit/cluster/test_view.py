"""What `zato-daemon cluster` decides: exit 0 only when every member deploys the same hashes."""

import pytest

from zato_daemon.cluster.view import as_json, compare, render

A, B = 'a' * 64, 'b' * 64


def member(host, services, started_at=100.0, last_seen=160.0):
    return {'host_name': host, 'pid': 1, 'version': '0.1.0', 'listen': '127.0.0.1:1', 'started_at': started_at,
            'last_seen': last_seen, 'services': services}


@pytest.mark.parametrize('members, consistent', [
    ([], False),
    ([member('h1', {})], True),
    ([member('h1', {'x': A})], True),
    ([member('h1', {'x': A}), member('h2', {'x': A})], True),
    ([member('h1', {'x': A}), member('h2', {'x': B})], False),
    ([member('h1', {'x': A, 'y': B}), member('h2', {'x': A})], False),
    ([member('h1', {'x': A}), member('h2', None)], False),
    ([member('h1', {'x': None}), member('h2', {'x': None})], False),
])
def test_consistent(members, consistent):
    assert compare(members).consistent is consistent


def test_rows_name_every_service_with_each_members_hash():
    comparison = compare([member('h1', {'x': A, 'y': A}), member('h2', {'x': B, 'y': A}), member('h3', None)])
    assert [(row.name, row.hashes, row.same) for row in comparison.rows] == [
        ('x', {'h1': A, 'h2': B}, False), ('y', {'h1': A, 'h2': A}, True)]
    assert comparison.unknown == ['h3'] and comparison.members == ['h1', 'h2', 'h3']


def test_text_names_the_difference_and_both_hashes():
    text = render('prod', 'redis://******@h', [member('h1', {'x': A, 'y': A}), member('h2', {'y': A})], 200.0,
                  lambda seconds: f'{seconds:.0f}s')
    lines = text.splitlines()
    assert lines[0] == 'cluster prod on redis://******@h: 2 member(s)'
    assert lines[1].split() == ['HOST', 'PID', 'VERSION', 'LISTEN', 'UPTIME', 'LAST', 'SEEN']
    assert lines[2].split() == ['h1', '1', '0.1.0', '127.0.0.1:1', '100s', '40', 's', 'ago']
    assert 'services: 2, 1 differ' in lines
    differs = lines.index('  DIFFERS x')
    assert lines[differs + 1:differs + 3] == [f'    h1  {A}', '    h2  - (not deployed)']
    assert f'  same    y  {A}' in lines


def test_text_without_members():
    assert 'no member is registered' in render('prod', 'redis://h', [], 0.0, str)


def test_json_is_the_decision_and_the_ages():
    data = as_json('prod', 'redis://h', [member('h1', {'x': A}), member('h2', None)], 200.0)
    assert data['consistent'] is False and data['services_unknown'] == ['h2']
    assert data['services'] == {'x': {'same': True, 'hashes': {'h1': A}}}
    assert data['members'][0]['uptime_seconds'] == 100.0 and data['members'][0]['last_seen_seconds_ago'] == 40.0
