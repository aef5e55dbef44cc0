"""Which socket systemd passed the master serves on, and what it says about the others: case by case."""

import os
import socket

import pytest

from zato_daemon.activation import Choice, Passed, choose, describe, passed_by_systemd
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


def test_two_listening_tcp_sockets_are_one_configuration_error():
    # Connections on the one not served would hang: the kernel completes them all.
    items = [passed(3, 'http', '127.0.0.1:17010'), passed(4, 'http', '[::1]:17010', family=socket.AF_INET6)]
    with pytest.raises(ConfigError, match=r'systemd passed 2 listening TCP sockets \(127.0.0.1:17010, '
                                          r'\[::1\]:17010\); the server serves one: keep one ListenStream='):
        choose(items, '127.0.0.1:17010')


@pytest.mark.parametrize('unusable', [
    dict(type=socket.SOCK_DGRAM), dict(family=socket.AF_UNIX), dict(listening=False)])
def test_unusable_sockets_are_skipped(unusable):
    choice = choose([passed(3, 'http', '127.0.0.1:1', **unusable), passed(4, 'other', '127.0.0.1:17010')],
                    '127.0.0.1:17010')
    assert choice.fd == 4
    assert choice.warnings == ('systemd also passed http (127.0.0.1:1), which is not a listening TCP socket; '
                               'closed',)


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


def test_describe_a_descriptor_that_is_no_socket(tmp_path):
    # systemd may pass files and FIFOs too (ListenFIFO=, the fd store): no crash, no use.
    with open(tmp_path / 'file', 'w') as file:
        item = describe(file.fileno(), 'stored')
        assert not item.is_usable and item.address.startswith('not a socket')


def test_listen_variables_leave_the_environment_and_a_bogus_count_is_said(monkeypatch):
    monkeypatch.setenv('LISTEN_FDS', 'abc')
    monkeypatch.setenv('LISTEN_PID', str(os.getpid()))
    found, warnings = passed_by_systemd()
    assert found == [] and "LISTEN_FDS='abc' names no descriptor passed to this process" in warnings[0]
    assert 'LISTEN_FDS' not in os.environ and 'LISTEN_PID' not in os.environ


def test_listen_variables_of_another_process_are_dropped_without_a_word(monkeypatch):
    monkeypatch.setenv('LISTEN_FDS', '1')
    monkeypatch.setenv('LISTEN_PID', '1')
    assert passed_by_systemd() == ([], [])
    assert 'LISTEN_FDS' not in os.environ
