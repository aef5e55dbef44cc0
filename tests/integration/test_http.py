"""The HTTP channel against a real server: routing, JSON, status codes, keep-alive."""

import json
import socket
import time

from tests.integration.helpers import call, request


def test_echo_returns_payload_and_a_cid(server):
    status, headers, body = call(server.port, 'demo.echo', {'a': 1, 'b': [1, 2]})
    assert status == 200
    assert body == {'a': 1, 'b': [1, 2]}
    assert headers['content-type'] == 'application/json'
    assert len(headers['x-zato-cid']) >= 16


def test_each_call_gets_its_own_cid(server):
    cids = {call(server.port, 'demo.echo', {})[1]['x-zato-cid'] for _ in range(5)}
    assert len(cids) == 5


def test_channel_path_invokes_its_service(server):
    status, _, body = request(server.port, 'POST', '/echo', b'{"via": "channel"}')
    assert status == 200
    assert json.loads(body) == {'via': 'channel'}


def test_ping(server):
    status, _, body = request(server.port, 'GET', '/zato/ping')
    assert status == 200
    assert json.loads(body)['pong'] is True


def test_malformed_json_is_400_with_cid(server):
    status, headers, body = request(server.port, 'POST', '/services/demo.echo', b'{"broken": ')
    assert status == 400
    error = json.loads(body)
    assert 'malformed JSON' in error['error']
    assert error['cid'] == headers['x-zato-cid']


def test_unknown_service_and_path_are_404(server):
    assert call(server.port, 'no.such.service')[0] == 404
    assert request(server.port, 'POST', '/nowhere', b'{}')[0] == 404


def test_builtin_services_are_not_exposed_over_tcp(server):
    assert call(server.port, 'zato.server.info')[0] == 404


def test_wrong_method_is_405_with_allow(server):
    status, headers, _ = request(server.port, 'GET', '/services/demo.echo')
    assert status == 405
    assert headers['allow'] == 'POST'


def test_body_over_max_request_size_is_413(server_factory):
    server = server_factory(main='max_request_size = 1024')
    assert call(server.port, 'demo.echo', {'x': 'a' * 500})[0] == 200
    status, _, _ = request(server.port, 'POST', '/services/demo.echo', json.dumps({'x': 'a' * 2000}))
    assert status == 413


def test_raising_service_is_500_with_cid_and_no_traceback(server):
    status, headers, body = request(server.port, 'POST', '/services/demo.fail', b'{}')
    assert status == 500
    error = json.loads(body)
    assert error['cid'] == headers['x-zato-cid']
    assert 'Traceback' not in body.decode() and 'ValueError' not in body.decode()
    # The server log has the traceback, under the same cid.
    assert error['cid'] in server.log()
    assert 'ValueError: demo.fail always fails' in server.log()


def _read_responses(sock, count):
    """Reads `count` HTTP responses with Content-Length bodies from a raw socket."""
    data = b''
    responses = []
    while len(responses) < count:
        chunk = sock.recv(65536)
        assert chunk, f'connection closed after {len(responses)} responses'
        data += chunk
        while b'\r\n\r\n' in data:
            head, rest = data.split(b'\r\n\r\n', 1)
            length = int([line.split(b':')[1] for line in head.split(b'\r\n')
                          if line.lower().startswith(b'content-length:')][0])
            if len(rest) < length:
                break
            responses.append((head, rest[:length]))
            data = rest[length:]
    return responses


def _read_to_end(sock):
    data = b''
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_keep_alive_and_pipelining_on_one_connection(server):
    body = b'{"n": %d}'
    requests = b''.join(
        b'POST /services/demo.echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
        b'Content-Length: %d\r\n\r\n%s' % (len(body % n), body % n) for n in range(3))
    with socket.create_connection(('127.0.0.1', server.port), timeout=10) as sock:
        sock.sendall(requests)
        responses = _read_responses(sock, 3)
        assert [json.loads(body) for _, body in responses] == [{'n': 0}, {'n': 1}, {'n': 2}]
        # Still open: one more request on the same connection.
        sock.sendall(b'GET /zato/ping HTTP/1.1\r\nHost: x\r\n\r\n')
        assert b'200 OK' in _read_responses(sock, 1)[0][0]


def test_chunked_request_body(server):
    with socket.create_connection(('127.0.0.1', server.port), timeout=10) as sock:
        sock.sendall(b'POST /services/demo.echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                     b'Transfer-Encoding: chunked\r\n\r\n'
                     b'5\r\n{"a":\r\n3\r\n 1}\r\n0\r\n\r\n')
        head, body = _read_responses(sock, 1)[0]
        assert head.startswith(b'HTTP/1.1 200')
        assert json.loads(body) == {'a': 1}


def test_garbage_request_line_is_400_and_closes(server):
    with socket.create_connection(('127.0.0.1', server.port), timeout=10) as sock:
        sock.sendall(b'NOT HTTP AT ALL\r\n\r\n')
        data = b''
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b'HTTP/1.1 400')


def test_idle_connections_are_closed_after_keep_alive_timeout_and_stalled_requests_get_408(server_factory):
    server = server_factory(main='keep_alive_timeout = 1\nheader_timeout = 1')
    with socket.create_connection(('127.0.0.1', server.port), timeout=10) as idle, \
            socket.create_connection(('127.0.0.1', server.port), timeout=10) as stalled:
        idle.sendall(b'GET /zato/ping HTTP/1.1\r\nHost: x\r\n\r\n')
        assert b'200 OK' in _read_responses(idle, 1)[0][0]
        stalled.sendall(b'POST /services/demo.echo HTTP/1.1\r\nHost: x\r\nContent-Le')
        started = time.monotonic()
        assert idle.recv(100) == b''  # closed by the server, not by this test's timeout
        assert _read_to_end(stalled).startswith(b'HTTP/1.1 408 ')
        assert 0.9 < time.monotonic() - started < 5


def test_expect_100_continue(server):
    with socket.create_connection(('127.0.0.1', server.port), timeout=10) as sock:
        sock.sendall(b'POST /services/demo.echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n'
                     b'Content-Type: application/json\r\nExpect: 100-continue\r\n\r\n')
        assert sock.recv(100) == b'HTTP/1.1 100 Continue\r\n\r\n'
        sock.sendall(b'{"a": 1}')
        head, body = _read_responses(sock, 1)[0]
        assert head.startswith(b'HTTP/1.1 200') and json.loads(body) == {'a': 1}


def test_a_response_larger_than_the_socket_buffers_arrives_whole_to_a_slow_reader(server_factory):
    # Bigger than the largest send buffer Linux gives a socket (tcp_wmem's 4 MiB maximum),
    # read late through a small receive buffer: the server's first send() is partial and
    # the rest goes out as the client reads. Then the connection is reused.
    server = server_factory(main='max_request_size = 16M')
    payload = {'data': 'x' * 8_000_000}
    body = json.dumps(payload).encode()
    head = (b'POST /services/demo.echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
            b'Content-Length: %d\r\n\r\n' % len(body))
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(('127.0.0.1', server.port))
        sock.sendall(head + body)
        time.sleep(0.3)
        [(response_head, response_body)] = _read_responses(sock, 1)
        assert b'200 OK' in response_head
        assert json.loads(response_body) == payload
        sock.sendall(b'GET /zato/ping HTTP/1.1\r\nHost: x\r\n\r\n')
        assert b'200 OK' in _read_responses(sock, 1)[0][0]


def test_a_slow_but_steady_reader_gets_a_response_that_outlasts_keep_alive_timeout(server_factory):
    # The once-a-second sweep closes clients that stopped reading; one still reading is not.
    server = server_factory(main='keep_alive_timeout = 1\nmax_request_size = 16M')
    payload = {'data': 'y' * 8_000_000}
    body = json.dumps(payload).encode()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(('127.0.0.1', server.port))
        sock.sendall(b'POST /services/demo.echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                     b'Content-Length: %d\r\n\r\n%s' % (len(body), body))
        started, received = time.monotonic(), bytearray()
        while not received.endswith(b'}') or len(received) < len(body):
            chunk = sock.recv(65536)
            assert chunk, f'closed by the server after {len(received)} bytes, {time.monotonic() - started:.1f} s'
            received += chunk
            time.sleep(0.002)
        assert time.monotonic() - started > 2.5  # longer than the timeout plus a sweep: the test means something
    assert json.loads(received.partition(b'\r\n\r\n')[2]) == payload
