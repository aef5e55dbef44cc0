"""The back-off between attempts, the client's options, and how an error is described."""

import redis

from zato_daemon.cluster.connection import BACKOFF_MAX, TIMEOUT, connect, describe_error, next_delay
from zato_daemon.cluster.settings import ClusterSettings


def settings(url, password=None):
    return ClusterSettings(url=url, name='c', host_name='h', heartbeat_ttl=15.0, password=password)


def test_backoff_starts_at_one_second_and_doubles_to_thirty():
    delays, delay = [], None
    for _ in range(8):
        delay = next_delay(delay)
        delays.append(delay)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert BACKOFF_MAX == 30.0


def test_tcp_client_has_both_time_limits_and_the_file_password():
    options = connect(settings('redis://127.0.0.1:6380/2', password='s3cret')).connection_pool.connection_kwargs
    assert (options['host'], options['port'], options['db']) == ('127.0.0.1', 6380, 2)
    assert options['socket_timeout'] == options['socket_connect_timeout'] == TIMEOUT
    assert options['password'] == 's3cret'


def test_unix_client_has_the_reply_time_limit():
    options = connect(settings('unix:///run/redis.sock')).connection_pool.connection_kwargs
    assert options['path'] == '/run/redis.sock' and options['socket_timeout'] == TIMEOUT
    assert 'socket_connect_timeout' not in options


def test_describe_error_names_the_redacted_url_and_the_error():
    text = describe_error(redis.ConnectionError('Error 111 connecting to h:6379.\nConnection refused.'),
                          settings('redis://:s3cret@h:6379/0'))
    assert text == 'redis://******@h:6379/0: ConnectionError: Error 111 connecting to h:6379. Connection refused.'


def test_describe_error_of_an_empty_message_names_the_type():
    assert describe_error(redis.TimeoutError(), settings('redis://h')).endswith('TimeoutError: TimeoutError')
