"""HttpServer's choices that do not need a client: how listeners are shared between workers."""

import logging
import socket

import pytest
from gevent.server import StreamServer

from tests.conftest import REPO_ROOT
from zato_daemon.config import load_config
from zato_daemon.http.server import HttpServer


@pytest.mark.parametrize(('workers', 'max_accept'), [(1, StreamServer.max_accept), (2, 1), (8, 1)])
def test_workers_sharing_a_listener_take_one_connection_per_wake_up(workers, max_accept):
    main = load_config(REPO_ROOT / 'etc' / 'zato-daemon').server_config.main
    main.workers = workers
    http = HttpServer(main, dumps_json=None, logger=logging.getLogger(__name__))
    with socket.create_server(('127.0.0.1', 0)) as listener:
        http.add_listener(listener, router=None)
        [stream_server] = http.stream_servers
        assert stream_server.max_accept == max_accept
