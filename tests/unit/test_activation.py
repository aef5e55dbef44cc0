"""Which socket systemd passed the master serves on, and what it says about the others: case by case."""

import socket

import pytest

from zato_daemon.activation import Choice, Passed, choose, describe
from zato_daemon.errors import ConfigError

TCP = dict(family=socket.AF_INET, type=socket.SOCK_STREAM, listening=True)


def passed(fd, name, address, **overrides):
    return Passed(fd=fd, name=name, address=address, **{**TCP, **overrides})


def test_nothing_passed_means_bind_as_configured():
    assert choose([], '127.0.0.1:17010') == Choice()


def test_the_one_socket_at_the_configured_address_is_used_without_a_warning():
    choice = choose([passed(3, 'http', '127.0.0.1:17010')], '127.0.0.1:17010')
    assert (choice.fd, choice.address, choice.warnings) == (3, '127.0.0.1:17010', ())
    assert 'Listening on 127.0.0.1:17010, the socket systemd passed (http)' in choice.infos[0]


def test_a_name_that_resolves_to_the_passed_address_is_no_reason_to_warn():
    choice = choose([passed(3, 'http', '127.0.0.1:17010')], 'localhost:17010', ('127.0.0.1:17010', '[::1]:17010'))
    assert choice.warnings == ()


def test_another_address_than_server_conf_is_served_with_a_warning():
    choice = choose([passed(3, 'http', '0.0.0.0:8080')], '127.0.0.1:17010')
    assert choice.fd == 3
    [warning] = choice.warnings
    assert 'server.conf names 127.0.0.1:17010 but systemd passed 0.0.0.0:8080' in warning


@pytest.mark.parametrize('order', [0, 1])
def test_the_socket_named_http_wins_and_the_others_are_named_as_ignored(order):
    items = [passed(3, 'metrics', '127.0.0.1:9100'), passed(4, 'http', '127.0.0.1:17010')]
    items = items if order == 0 else items[::-1]
    choice = choose(items, '127.0.0.1:17010')
    assert choice.fd == 4
    assert choice.warnings == ('systemd also passed metrics (127.0.0.1:9100); only one socket is served, '
                               'it is ignored',)


def test_without_a_name_the_first_usable_one_is_taken():
    choice = choose([passed(3, '', '[::1]:17010', family=socket.AF_INET6), passed(4, '', '127.0.0.1:17010')],
                    '[::1]:17010')
    assert choice.fd == 3 and len(choice.warnings) == 1


@pytest.mark.parametrize('unusable', [
    dict(type=socket.SOCK_DGRAM), dict(family=socket.AF_UNIX), dict(listening=False)])
def test_unusable_sockets_are_skipped(unusable):
    choice = choose([passed(3, 'http', '127.0.0.1:1', **unusable), passed(4, 'other', '127.0.0.1:17010')],
                    '127.0.0.1:17010')
    assert choice.fd == 4


def test_only_unusable_sockets_is_a_configuration_error():
    with pytest.raises(ConfigError, match=r'systemd passed http \(/run/x.sock\), none a listening TCP stream'):
        choose([passed(3, 'http', '/run/x.sock', family=socket.AF_UNIX)], '127.0.0.1:17010')


def test_describe_reads_a_real_listening_socket_and_leaves_it_open():
    with socket.socket() as listener:
        listener.bind(('127.0.0.1', 0))
        listener.listen()
        port = listener.getsockname()[1]
        item = describe(listener.fileno(), 'http')
        assert item == Passed(listener.fileno(), 'http', socket.AF_INET, socket.SOCK_STREAM, True, f'127.0.0.1:{port}')
        assert item.is_usable
        listener.getsockname()  # still open
    with socket.socket() as unbound:
        assert not describe(unbound.fileno(), '').listening
