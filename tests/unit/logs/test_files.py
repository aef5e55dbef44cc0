"""server.log and stdout lines."""

import logging
import os

from zato_daemon.logs.context import CURRENT_CALL, ContextFilter
from zato_daemon.logs.files import ColourFormatter, LineFormatter, server_log_handler


def record(message='done'):
    rec = logging.LogRecord('zato_daemon.http', logging.WARNING, '/src/x.py', 7, message, (), None)
    ContextFilter('worker-1').filter(rec)
    return rec


def test_line_has_time_level_role_pid_logger_line_and_message():
    line = LineFormatter().format(record())
    assert f'WARNING worker-1:{os.getpid()} zato_daemon.http:7 - done' in line
    assert '\033' not in line


def test_line_inside_a_call_names_cid_and_service():
    token = CURRENT_CALL.set(('zd42', 'demo.echo'))
    try:
        line = LineFormatter().format(record())
    finally:
        CURRENT_CALL.reset(token)
    assert f'worker-1:{os.getpid()} [zd42 demo.echo] zato_daemon.http:7 - done' in line


def test_colour_only_from_the_colour_formatter():
    assert ColourFormatter().format(record()).startswith('\033[33m')


def test_server_log_is_reopened_after_rotation(tmp_path):
    path = tmp_path / 'server.log'
    handler = server_log_handler(path)
    handler.addFilter(ContextFilter('master'))
    handler.handle(record('before'))
    path.rename(tmp_path / 'server.log.1')
    handler.handle(record('after'))
    handler.close()
    assert 'before' in (tmp_path / 'server.log.1').read_text()
    assert 'after' in path.read_text() and 'before' not in path.read_text()
