"""[cluster] redis_url: what is accepted, what is refused (never quoting the URL), how it is shown."""

import pytest

from zato_daemon.cluster.urls import BadUrl, check_url, has_password, shown_url
from zato_daemon.config.validators import InvalidValue, RedisUrl


@pytest.mark.parametrize('url', [
    '',
    'redis://127.0.0.1',
    'redis://redis.example.com:6380/2',
    'redis://:s3cret@127.0.0.1:6379/0',
    'redis://zato:s3cret@[::1]:6379',
    'rediss://cache.example.com:6380/0?ssl_cert_reqs=required',
    'unix:///run/redis/redis-server.sock',
    'unix:///run/redis/redis.sock?db=1',
    'REDIS://127.0.0.1',
    'redis://:p%40ss%2Fw%23rd@127.0.0.1',
])
def test_accepted(url):
    assert check_url(url) == url


@pytest.mark.parametrize('url, reason', [
    ('127.0.0.1:6379', 'scheme'),
    ('http://127.0.0.1:6379', 'scheme'),
    ('redis://', 'no host'),
    ('redis://:6379', 'no host'),
    ('redis://127.0.0.1:99999', 'port'),
    ('redis://127.0.0.1:0', 'port'),
    ('redis://127.0.0.1:x', 'port'),
    ('redis://127.0.0.1/zero', 'database number'),
    ('unix://run/redis.sock', 'absolute path'),
    ('redis://:pa/ss@127.0.0.1', "'@' after the host"),
    ('redis://:pa#ss@127.0.0.1', "'#'"),
    ('redis://127.0.0.1\n', 'control character'),
])
def test_refused_with_the_reason(url, reason):
    with pytest.raises(BadUrl, match=reason):
        check_url(url)


@pytest.mark.parametrize('url', ['redis://:pa/ss@host', 'http://user:hunter2@host', 'redis://:hunter2#@h'])
def test_a_refused_url_is_never_quoted(url):
    with pytest.raises(InvalidValue) as raised:
        RedisUrl()(url)
    message = f'{raised.value.problem} {raised.value.fix}'
    assert 'pa/ss' not in message and 'hunter2' not in message
    assert 'not shown' in message


def test_a_value_assigned_in_code_that_is_not_text_is_refused_by_type():
    with pytest.raises(InvalidValue, match='type int'):
        RedisUrl()(6379)


@pytest.mark.parametrize('url, shown', [
    ('redis://127.0.0.1:6379/0', 'redis://127.0.0.1:6379/0'),
    ('redis://:s3cret@127.0.0.1:6379/0', 'redis://******@127.0.0.1:6379/0'),
    ('redis://zato:s3cret@h', 'redis://******@h'),
    ('rediss://h:6380/0?password=s3cret', 'rediss://h:6380/0?password=******'),
    ('unix://:s3cret@/run/redis.sock', 'unix://******@/run/redis.sock'),
    ('', ''),
])
def test_shown_url_redacts_credentials(url, shown):
    assert shown_url(url) == shown
    assert 's3cret' not in shown_url(url)


@pytest.mark.parametrize('url, expected', [
    ('redis://h', False), ('redis://zato@h', False), ('redis://:pw@h', True), ('redis://h/0?password=pw', True),
])
def test_has_password(url, expected):
    assert has_password(url) is expected
