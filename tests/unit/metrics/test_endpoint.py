"""The master's /metrics listener, on a real loopback socket."""

import http.client
import socket
import time

import pytest
from prometheus_client import CollectorRegistry, Counter

from zato_daemon.metrics import endpoint as endpoint_module
from zato_daemon.metrics.endpoint import MAX_CLIENTS, MetricsEndpoint
from zato_daemon.sockets import bind_tcp


@pytest.fixture
def endpoint():
    registry = CollectorRegistry(auto_describe=False)
    Counter('zato_test_things', 'Things', registry=registry).inc(3)
    served = MetricsEndpoint(bind_tcp('127.0.0.1', 0, 16), registry).start()
    yield served
    served.stop()


def get(endpoint, path, method='GET', timeout=5):
    connection = http.client.HTTPConnection(*endpoint.sock.getsockname()[:2], timeout=timeout)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.getheader('Content-Type'), response.read()
    finally:
        connection.close()


def test_metrics_are_served_in_the_text_format(endpoint):
    status, content_type, body = get(endpoint, '/metrics')
    assert status == 200 and content_type.startswith('text/plain; version=0.0.4')
    assert b'zato_test_things_total 3.0' in body


def test_another_path_is_a_404_that_names_the_right_one(endpoint):
    assert get(endpoint, '/') == (404, 'text/plain; charset=utf-8', b'zato-daemon serves its metrics at /metrics\n')
    assert get(endpoint, '/metricsx')[0] == 404


def test_another_method_is_refused(endpoint):
    assert get(endpoint, '/metrics', method='POST')[0] == 501


def test_clients_past_the_limit_are_closed_at_once_and_a_scrape_works_once_they_go(endpoint, monkeypatch):
    monkeypatch.setattr(endpoint_module._Handler, 'timeout', 0.5)
    address = endpoint.sock.getsockname()[:2]
    silent = [socket.create_connection(address) for _ in range(MAX_CLIENTS)]
    try:
        time.sleep(0.2)  # every silent client holds a handler thread
        with socket.create_connection(address, timeout=5) as extra:
            extra.sendall(b'GET /metrics HTTP/1.0\r\n\r\n')
            assert extra.recv(100) == b'', 'a client past MAX_CLIENTS was served'
    finally:
        for sock in silent:
            sock.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if get(endpoint, '/metrics', timeout=1)[0] == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError('no scrape answered after the silent clients went')


def test_a_client_that_never_sends_its_request_is_cut_off(endpoint, monkeypatch):
    monkeypatch.setattr(endpoint_module._Handler, 'timeout', 0.3)
    with socket.create_connection(endpoint.sock.getsockname()[:2], timeout=5) as sock:
        sock.sendall(b'GET /metr')
        started = time.monotonic()
        assert sock.recv(100) == b''
        assert time.monotonic() - started < 4


def test_after_stop_the_port_refuses(endpoint):
    address = endpoint.sock.getsockname()[:2]
    endpoint.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=2).close()


def test_a_client_dripping_its_request_is_cut_off_at_the_deadline_of_the_whole_exchange(endpoint, monkeypatch):
    monkeypatch.setattr(endpoint_module._Handler, 'timeout', 0.5)
    with socket.create_connection(endpoint.sock.getsockname()[:2], timeout=5) as sock:
        started = time.monotonic()
        sent = 0
        try:
            # One byte every 0.2 s: each read is within the socket timeout, the whole is not.
            for byte in b'GET /metrics HTTP/1.0\r\nX-Slow: ' + b'a' * 40:
                sock.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sock.recv(100) == b''
        assert sent < 20, 'the client kept the connection past the deadline'
        assert time.monotonic() - started < 5


def test_a_forked_worker_closes_its_copies_of_the_connections_being_answered(endpoint):
    with socket.create_connection(endpoint.sock.getsockname()[:2], timeout=5) as sock:
        deadline = time.monotonic() + 5
        while not endpoint.server.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        [connection] = endpoint.server.connections
        endpoint.close_in_child()  # as a worker does after fork: here, in this process
        assert connection.fileno() == -1
        sock.sendall(b'GET /metrics HTTP/1.0\r\n\r\n')
    assert endpoint.server.connections == set() or all(c.fileno() == -1 for c in endpoint.server.connections)


def test_the_server_header_names_no_python_version(endpoint):
    connection = http.client.HTTPConnection(*endpoint.sock.getsockname()[:2], timeout=5)
    connection.request('GET', '/metrics')
    assert connection.getresponse().getheader('Server') == 'zato-daemon'
    connection.close()
