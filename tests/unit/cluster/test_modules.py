"""Cluster deploy records: signing and verifying, (de)serialization, the key file, what a
member catches up on, and the exit status from each host's outcome."""

import json

import pytest

from zato_daemon.cluster import modules
from zato_daemon.errors import ConfigError

KEY = b'a' * 32
OTHER_KEY = b'b' * 32
PUBLICATION = '0123456789abcdef0123456789abcdef'
SOURCE = 'from zato_daemon import Service\n'


def record(kind=modules.MODULE, name='crm.py', source=SOURCE, key=KEY):
    return modules.make_record(key, kind, name, source, PUBLICATION, 'host-1', 1700000000.0)


def roundtrip(value, name='crm.py'):
    return modules.load_record(modules.dump_record(value), name)


# ---- signing

def test_a_signed_record_verifies_after_a_roundtrip():
    value = roundtrip(record())
    modules.verify(KEY, value)
    assert value['sha256'] == modules.sha256_text(SOURCE) and value['host'] == 'host-1'


@pytest.mark.parametrize('field, value', [('source', SOURCE + 'import os\n'), ('name', 'billing.py'),
                                         ('kind', modules.TOMBSTONE)])
def test_a_tampered_record_does_not_verify(field, value):
    tampered = dict(record(), **{field: value})
    with pytest.raises(modules.RecordError, match='signature'):
        modules.verify(KEY, tampered)


def test_a_tampered_sha256_does_not_verify():
    with pytest.raises(modules.RecordError, match='sha256'):
        modules.verify(KEY, dict(record(), sha256='0' * 64))


def test_another_key_does_not_verify():
    with pytest.raises(modules.RecordError, match='signature'):
        modules.verify(KEY, record(key=OTHER_KEY))


def test_name_and_source_are_separated():
    # 'a' + 'b.py...' and 'ab' + '...' must not sign alike.
    assert modules.signature(KEY, 'module', 'a.py', 'x') != modules.signature(KEY, 'module', 'a.p', 'yx')


def test_a_tombstone_verifies():
    modules.verify(KEY, roundtrip(record(kind=modules.TOMBSTONE, source='')))


# ---- loading

@pytest.mark.parametrize('text, message', [
    ('not json', 'not JSON'),
    ('[]', 'version'),
    (json.dumps({'record_version': 1}), 'no kind'),
    (modules.dump_record(dict(record(), kind='script')), 'unknown kind'),
    (modules.dump_record(record(name='billing.py')), 'stored under'),
    (modules.dump_record(dict(record(), publication='../x')), 'publication'),
    (modules.dump_record(dict(record(), host='h\nERROR forged')), 'host'),
])
def test_what_is_not_a_record_is_refused_saying_why(text, message):
    with pytest.raises(modules.RecordError, match=message):
        modules.load_record(text, 'crm.py')


@pytest.mark.parametrize('name', ['../etc/x.py', 'a/b.py', '.hidden.py', '_private.py', 'crm.txt', 'a\nb.py'])
def test_a_name_that_is_not_a_plain_pickup_file_is_refused(name):
    with pytest.raises(modules.RecordError):
        modules.load_record(modules.dump_record(record(name=name)), name)


# ---- the key file

def test_the_key_is_the_first_line(tmp_path):
    path = tmp_path / 'cluster.key'
    path.write_bytes(b'k' * 40 + b'\nsecond line\n')
    path.chmod(0o640)
    assert modules.read_key(path) == b'k' * 40


@pytest.mark.parametrize('content, mode, message', [
    (b'k' * 40, 0o660, 'writable by its group'),
    (b'k' * 40, 0o646, 'writable by its group or by others'),
    (b'short\n', 0o600, 'shorter than 32'),
    (b'', 0o600, 'shorter than 32'),
])
def test_a_bad_key_file_is_a_config_error_without_the_key(tmp_path, content, mode, message):
    path = tmp_path / 'cluster.key'
    path.write_bytes(content)
    path.chmod(mode)
    with pytest.raises(ConfigError, match=message) as error:
        modules.read_key(path)
    assert content.decode() not in str(error.value) or not content


def test_a_missing_key_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match='cannot read the cluster key file'):
        modules.read_key(tmp_path / 'nothing')


# ---- catching up

def test_catch_up_writes_what_is_missing_or_different_and_removes_tombstones():
    new, changed, same = record(name='new.py'), record(name='changed.py'), record(name='same.py')
    gone, never = record(kind=modules.TOMBSTONE, name='gone.py', source=''), \
        record(kind=modules.TOMBSTONE, name='never.py', source='')
    local = {'changed.py': 'old', 'same.py': same['sha256'], 'gone.py': 'x', 'local-only.py': 'y'}
    records = {value['name']: value for value in (new, changed, same, gone, never)}
    assert modules.catch_up(records, local) == (['changed.py', 'new.py'], ['gone.py'])


def test_an_empty_cluster_removes_nothing():
    # Redis restarted empty: members keep serving what they have.
    assert modules.catch_up({}, {'crm.py': 'x'}) == ([], [])


# ---- the command's exit status

@pytest.mark.parametrize('hosts, outcomes, status', [
    (['a', 'b'], {'a': {'outcome': 'deployed'}, 'b': {'outcome': 'deployed'}}, 0),
    (['a'], {'a': {'outcome': 'undeployed'}}, 0),
    (['a', 'b'], {'a': {'outcome': 'deployed'}}, 1),
    (['a', 'b'], {'a': {'outcome': 'deployed'}, 'b': {'outcome': 'refused', 'reason': 'x.py:1: syntax error'}}, 1),
    (['a'], {'a': {'outcome': 'signature refused'}}, 1),
    # A member that reported but had left the membership still counts: it said no.
    (['a'], {'a': {'outcome': 'deployed'}, 'gone': {'outcome': 'refused'}}, 1),
])
def test_the_status_is_0_only_when_every_live_member_succeeded(hosts, outcomes, status):
    assert modules.summarize(hosts, outcomes)[0] == status


def test_the_lines_name_every_host_and_reason():
    _, lines = modules.summarize(['a', 'b'], {'b': {'outcome': 'refused', 'reason': 'why'}})
    assert lines == [('a', 'no outcome', 'nothing reported within the time limit'), ('b', 'refused', 'why')]


def test_complete_once_every_live_member_reported():
    assert not modules.is_complete(['a', 'b'], {'a': {}})
    assert modules.is_complete(['a'], {'a': {}, 'b': {}})


def test_a_signature_of_non_ascii_text_is_refused_not_a_type_error():
    forged = dict(record(), signature='é' * 64)
    with pytest.raises(modules.RecordError, match='signature'):
        modules.verify(KEY, forged)
