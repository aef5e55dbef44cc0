"""[cluster] of a loaded configuration: empty is a single host, the password file, the defaults."""

import socket

import pytest

from zato_daemon.cluster.settings import from_config
from zato_daemon.config import load_config
from zato_daemon.errors import ConfigError


def load(tmp_path, cluster):
    (tmp_path / 'server.conf').write_text(f'[cluster]\n{cluster}\n', encoding='utf-8')
    return load_config(tmp_path)


def test_an_empty_url_is_a_single_host(tmp_path):
    assert from_config(load(tmp_path, '')) is None


def test_defaults(tmp_path):
    settings = from_config(load(tmp_path, 'redis_url = redis://127.0.0.1:6379/0'))
    assert (settings.name, settings.host_name, settings.heartbeat_ttl, settings.password) == (
        'default', socket.gethostname(), 15.0, None)


def test_the_password_file_relative_to_the_server_directory(tmp_path):
    (tmp_path / 'redis.password').write_text('s3cret\n')
    settings = from_config(load(tmp_path, 'redis_url = redis://h\npassword_file = redis.password\n'
                                          'name = prod\nhost_name = host-1\nheartbeat_ttl = 3'))
    assert (settings.password, settings.name, settings.host_name, settings.heartbeat_ttl) == (
        's3cret', 'prod', 'host-1', 3.0)


def test_nothing_secret_in_repr_or_describe(tmp_path):
    (tmp_path / 'pw').write_text('s3cret')
    settings = from_config(load(tmp_path, 'redis_url = redis://zato@h/0?password_hint=x\npassword_file = pw'))
    assert 's3cret' not in repr(settings) and 's3cret' not in str(settings.describe())
    url_settings = from_config(load(tmp_path, 'redis_url = redis://:hunter2@h/0'))
    assert 'hunter2' not in repr(url_settings)
    assert url_settings.describe()['redis_url'] == 'redis://******@h/0'


@pytest.mark.parametrize('content, problem', [
    (None, 'cannot read'),
    ('', 'is empty'),
    ('\n\n', 'is empty'),
    ('x' * 5000, 'over 4096 bytes'),
    (b'\xff\xfe', 'not UTF-8'),
])
def test_a_bad_password_file_is_one_clear_error(tmp_path, content, problem):
    if isinstance(content, bytes):
        (tmp_path / 'pw').write_bytes(content)
    elif content is not None:
        (tmp_path / 'pw').write_text(content)
    with pytest.raises(ConfigError, match=problem) as raised:
        from_config(load(tmp_path, 'redis_url = redis://h\npassword_file = pw'))
    assert '[cluster] password_file' in str(raised.value)
    assert raised.value.exit_status == 78


def test_a_password_in_both_places_is_refused(tmp_path):
    (tmp_path / 'pw').write_text('one')
    with pytest.raises(ConfigError, match='keep only one') as raised:
        from_config(load(tmp_path, 'redis_url = redis://:two@h\npassword_file = pw'))
    assert 'two' not in str(raised.value).replace('keep only one', '')


@pytest.mark.parametrize('line, problem', [
    ('redis_url = http://h', 'redis://, rediss:// or unix://'),
    ('name = a b', 'a name of letters'),
    ('name = a:b', 'a name of letters'),
    ('host_name = -x', 'nothing or a name of letters'),
    ('host_name = a*', 'nothing or a name of letters'),
    ('host_name = ' + 'h' * 64, 'at most 63 characters'),
    ('heartbeat_ttl = 2', 'from 3 to 300'),
    ('heartbeat_ttl = 301', 'from 3 to 300'),
])
def test_bad_values_are_refused_when_the_file_loads(tmp_path, line, problem):
    with pytest.raises(ConfigError, match=problem):
        load(tmp_path, line)


def test_a_bad_url_with_a_password_is_refused_without_quoting_it(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, 'redis_url = redis://:hunter/2@h')
    assert 'hunter' not in str(raised.value)
