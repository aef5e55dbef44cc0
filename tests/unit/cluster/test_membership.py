"""The member's key and record, and what the link's state changes log (cluster/membership.py)."""

import json

from zato_daemon.cluster.connection import next_delay
from zato_daemon.cluster.membership import (Identity, Link, deployed_services, heartbeat_interval, member_key,
                                            member_record, members_pattern, parse_record)
from zato_daemon.logs import levels


def test_keys():
    assert member_key('prod', 'host-1') == 'zato:prod:member:host-1'
    assert members_pattern('prod') == 'zato:prod:member:*'


def test_two_heartbeats_may_be_lost_before_the_key_expires():
    assert heartbeat_interval(15.0) == 5.0
    assert heartbeat_interval(3.0) == 1.0


def test_deployed_services_leave_the_builtin_ones_out():
    described = [{'name': 'crm.get', 'sha256': 'a' * 64, 'path': '/x.py'},
                 {'name': 'zato.ping', 'sha256': None, 'path': 'zato_daemon.services.builtin'}]
    assert deployed_services(described) == {'crm.get': 'a' * 64}


def test_the_record_holds_identity_services_and_last_seen():
    identity = Identity(pid=42, version='0.1.0', listen='127.0.0.1:17010', started_at=100.0)
    record = member_record(identity.as_dict('host-1'), {'crm.get': 'a' * 64}, 130.0)
    assert record == {'host_name': 'host-1', 'pid': 42, 'version': '0.1.0', 'listen': '127.0.0.1:17010',
                      'started_at': 100.0, 'last_seen': 130.0, 'services': {'crm.get': 'a' * 64},
                      'record_version': 1}
    assert parse_record(json.dumps(record)) == record


def test_services_not_known_yet_are_none():
    record = member_record({'host_name': 'h'}, None, 1.0)
    assert parse_record(json.dumps(record))['services'] is None


def test_what_is_not_a_record_is_left_out():
    for text in ('not json', '[]', '{}', '{"host_name": 3}', '{"host_name": "h", "services": []}', None):
        assert parse_record(text) is None


def test_link_logs_unreachable_once_and_joined_once():
    link = Link()
    assert link.as_dict() == {'state': 'unknown', 'reachable': False, 'since': None, 'last_error': None}
    assert link.failed(1.0, 'refused', next_delay) is levels.CLUSTER_UNREACHABLE
    assert link.delay == 1.0
    assert link.failed(2.0, 'timeout', next_delay) is None
    assert (link.delay, link.last_error, link.since) == (2.0, 'timeout', 1.0)
    assert link.failed(4.0, 'timeout', next_delay) is None and link.delay == 4.0
    assert link.succeeded(8.0) is levels.CLUSTER_JOINED
    assert link.as_dict() == {'state': 'reachable', 'reachable': True, 'since': 8.0, 'last_error': 'timeout'}
    assert link.delay is None
    assert link.succeeded(9.0) is None


def test_link_joined_at_once_then_lost_then_back():
    link = Link()
    assert link.succeeded(1.0) is levels.CLUSTER_JOINED
    assert link.failed(2.0, 'gone', next_delay) is levels.CLUSTER_UNREACHABLE
    # The back-off starts again from 1 s after each time Redis answered.
    assert link.delay == 1.0
    assert link.succeeded(3.0) is levels.CLUSTER_JOINED


def test_the_events_are_warning_and_info():
    assert levels.CLUSTER_UNREACHABLE.level == 30 and levels.CLUSTER_JOINED.level == 20
