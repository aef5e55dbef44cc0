"""Slow, idle and too many clients against a real server: deadlines, max_connections, descriptors.

Only 127.0.0.1; every loop is bounded in count and time.
"""

import contextlib
import errno
import resource
import socket
import time

import pytest

from tests.integration.helpers import request, wait_until
from zato_daemon.logs.levels import ACCEPT_FAILED, CONNECTIONS_LIMITED

PING = b'GET /zato/ping HTTP/1.1\r\nHost: x\r\n\r\n'


@pytest.fixture(autouse=True)
def enough_descriptors():
    """The test process holds a thousand client sockets at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(port, timeout=10):
    return socket.create_connection(('127.0.0.1', port), timeout=timeout)


def read_to_end(sock):
    data = b''
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def ping_takes(port):
    """Seconds a health check on a new connection takes; fails the test if it is not 200."""
    started = time.monotonic()
    status, _, _ = request(port, 'GET', '/zato/ping', timeout=5)
    assert status == 200
    return time.monotonic() - started


def test_slow_clients_are_cut_off_with_408_and_never_stop_health_checks(server_factory):
    server = server_factory(main='header_timeout = 2\nbody_timeout = 2\nbody_min_rate = 1M')
    slow = []
    try:
        for number in range(500):
            sock = connect(server.port)
            if number % 2:
                sock.sendall(b'POST /services/demo.echo HTTP/1.1\r\nHost: x\r\n')  # headers trickle
            else:
                sock.sendall(b'POST /services/demo.echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                             b'Content-Length: 100\r\n\r\n{"a":')  # the body stalls
            slow.append(sock)
        started = time.monotonic()
        # One more byte a second does not move a deadline counted from the request's first byte.
        while time.monotonic() - started < 1.5:
            assert ping_takes(server.port) < 1.0
            for sock in slow[1::2][:50]:
                sock.sendall(b'X')
            time.sleep(0.2)
        answers = [read_to_end(sock) for sock in slow]
        assert time.monotonic() - started < 6
        assert all(answer.startswith(b'HTTP/1.1 408 ') for answer in answers), \
            {answer[:40] for answer in answers}
        assert ping_takes(server.port) < 1.0
    finally:
        for sock in slow:
            sock.close()


def test_a_body_sent_at_the_minimum_rate_is_not_cut_off(server_factory):
    server = server_factory(main='body_timeout = 1\nbody_min_rate = 10')
    body = b'{"pad": "' + b'x' * 30 + b'"}'
    with connect(server.port) as sock:
        sock.sendall(b'POST /services/demo.echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                     b'Content-Length: %d\r\nConnection: close\r\n\r\n' % len(body))
        started = time.monotonic()
        for start in range(0, len(body), 10):  # 10 bytes a second: the minimum rate, for 4 s
            sock.sendall(body[start:start + 10])
            time.sleep(0.9)
        assert time.monotonic() - started > 3  # longer than body_timeout: the rate earned the rest
        assert read_to_end(sock).startswith(b'HTTP/1.1 200 ')


def test_a_body_sent_at_once_and_then_stalled_earns_no_extra_time(server_factory):
    server = server_factory(main='body_timeout = 1\nbody_min_rate = 1')  # 1 byte a second: 100 KB is a day
    with connect(server.port) as sock:
        sock.sendall(b'POST /services/demo.echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                     b'Content-Length: 200000\r\n\r\n' + b' ' * 100_000)
        started = time.monotonic()
        assert read_to_end(sock).startswith(b'HTTP/1.1 408 ')
        assert time.monotonic() - started < 4


def test_bytes_that_start_no_request_do_not_keep_an_idle_connection(server_factory):
    server = server_factory(main='keep_alive_timeout = 1')
    with connect(server.port) as sock:
        started = time.monotonic()
        while time.monotonic() - started < 8:  # blank lines before a request line are skipped
            try:
                sock.sendall(b'\r\n')
                sock.settimeout(0.1)
                if sock.recv(100) == b'':
                    break  # closed by the server while this client kept sending
            except (socket.timeout, BlockingIOError):
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        assert time.monotonic() - started < 3.5


def test_connections_over_max_connections_get_503_while_the_others_are_served(server_factory):
    server = server_factory(main='max_connections = 20')
    kept = [connect(server.port) for _ in range(20)]
    try:
        for sock in kept:
            sock.sendall(PING)
            assert sock.recv(65536).startswith(b'HTTP/1.1 200 ')
        for _ in range(3):
            with connect(server.port) as refused:
                refused.sendall(PING)
                answer = read_to_end(refused)
            assert answer.startswith(b'HTTP/1.1 503 ') and b'Retry-After: 5\r\n' in answer, answer[:200]
            assert b'max_connections' in answer
        for sock in kept:  # the connections the worker has are served as before
            sock.sendall(PING)
            assert sock.recv(65536).startswith(b'HTTP/1.1 200 ')
    finally:
        for sock in kept:
            sock.close()
    wait_until(lambda: ping_takes(server.port) < 1.0, message='room for a new connection')
    [line] = [line for line in server.log().splitlines() if 'refused' in line and '503' in line]
    assert ' WARNING ' in line and 'refused 1 new connection' in line  # once a minute, with the count
    assert CONNECTIONS_LIMITED.message_id  # the journal field; the system tests read journald


def test_a_worker_out_of_descriptors_keeps_its_connections_warns_and_recovers(server_factory):
    server = server_factory()
    [worker] = server.worker_pids()
    resource.prlimit(worker, resource.RLIMIT_NOFILE, (256, 256))
    flood = []
    try:
        for _ in range(1000):
            try:
                flood.append(connect(server.port, timeout=2))
            except OSError as exc:  # the backlog is full: the kernel drops the rest
                assert exc.errno in (errno.ETIMEDOUT, errno.ECONNREFUSED, errno.EAGAIN, None), exc
                break
        wait_until(lambda: 'Cannot accept connections' in server.log(), timeout=10, message='the WARNING')
    finally:
        for sock in flood:
            sock.close()
    flood_ended = time.monotonic()
    wait_until(lambda: _answers(server.port), timeout=10, message='a health check after the flood')
    assert time.monotonic() - flood_ended < 1.5
    [warning] = [line for line in server.log().splitlines() if 'Cannot accept connections' in line]
    assert ' WARNING ' in warning and 'EMFILE' in warning and 'descriptor limit 256' in warning
    assert 'Traceback' not in server.output() and 'Traceback' not in server.log()
    assert server.worker_pids() == [worker]
    assert ACCEPT_FAILED.message_id


def _answers(port):
    try:
        return request(port, 'GET', '/zato/ping', timeout=1)[0] == 200
    except OSError:
        return False


def test_a_request_target_over_the_header_limit_is_414(server):
    with connect(server.port) as sock:
        sock.sendall(b'GET /' + b'a' * (1024 * 1024) + b' HTTP/1.1\r\nHost: x\r\n\r\n')
        assert read_to_end(sock).startswith(b'HTTP/1.1 414 ')


def test_an_http09_request_gets_an_answer(server_factory):
    # Both parsers read "GET /" CRLF as a request line without a version and wait for the
    # header section: the blank line ends it with a 505, and without one the header
    # deadline answers 408; never a silent close.
    server = server_factory(main='header_timeout = 1')
    with connect(server.port, timeout=5) as sock:
        sock.sendall(b'GET /\r\n\r\n')
        assert read_to_end(sock).startswith(b'HTTP/1.1 505 ')
    with connect(server.port, timeout=5) as sock:
        sock.sendall(b'GET /\r\n')
        started = time.monotonic()
        assert read_to_end(sock).startswith(b'HTTP/1.1 408 ')
        assert time.monotonic() - started < 3
