"""Logging against a real server: context on every record, redaction, levels, rotation."""

import signal

from tests.integration.helpers import call, wait_until

LOGGING_SERVICES = '''\
import logging
from zato_daemon import Service

class Chatty(Service):
    name = 'log.chatty'

    def handle(self):
        self.logger.info('service line for %s', self.request.payload['who'])
        logging.getLogger('some.library').warning('library line')
        self.response.payload = self.invoke('log.inner', {})

class Inner(Service):
    name = 'log.inner'

    def handle(self):
        self.logger.info('inner line')
        return None
'''


def deploy(server, name, text):
    pickup = server.server_dir / 'pickup'
    pickup.mkdir(exist_ok=True)
    temporary = server.server_dir / f'.{name}'
    temporary.write_text(text)
    temporary.rename(pickup / name)


def lines_with(server, text):
    return [line for line in server.log().splitlines() if text in line]


def test_every_record_of_a_call_carries_its_cid_and_service(server):
    deploy(server, 'chatty.py', LOGGING_SERVICES)
    wait_until(lambda: call(server.port, 'log.chatty', {'who': 'x'})[0] == 200, message='log.chatty')
    status, headers, _ = call(server.port, 'log.chatty', {'who': 'alice'})
    cid = headers['x-zato-cid']
    mine = lines_with(server, cid)
    assert any(f'[{cid} log.chatty] zato_daemon.service.log.chatty:' in line and 'service line for alice' in line
               for line in mine)
    assert any(f'[{cid} log.chatty] some.library:' in line and 'library line' in line for line in mine)
    # A nested call shares the cid and names the inner service.
    assert any(f'[{cid} log.inner]' in line and 'inner line' in line for line in mine)
    # Lines about other calls do not carry this cid.
    assert all(cid not in line for line in lines_with(server, 'service line for x'))


def test_failure_is_one_error_with_redacted_input_and_traceback(server):
    payload = {'user': 'alice', 'password': 'hunter2', 'nested': {'api_key': 'k-123', 'amount': 5}}
    status, headers, _ = call(server.port, 'demo.fail', payload)
    cid = headers['x-zato-cid']
    assert status == 500
    wait_until(lambda: lines_with(server, cid), message='the failure line')
    log = server.log()
    errors = [line for line in lines_with(server, cid) if ' ERROR ' in line]
    assert len(errors) == 1
    assert f'[{cid} demo.fail]' in errors[0]
    assert '"user": "alice"' in errors[0] and '"amount": 5' in errors[0]
    assert 'hunter2' not in log and 'k-123' not in log
    after = log.split(errors[0], 1)[1]
    assert after.lstrip('\n').startswith('Traceback (most recent call last):')
    assert 'ValueError: demo.fail always fails' in after


def test_debug_logs_request_and_response_redacted(server_factory):
    server = server_factory(sections='[loggers]\nzato_daemon.http = DEBUG\n')
    _, headers, _ = call(server.port, 'demo.echo', {'token': 'tok-secret', 'q': 1})
    cid = headers['x-zato-cid']
    mine = lines_with(server, cid)
    assert any(' DEBUG ' in line and 'Request POST /services/demo.echo' in line for line in mine)
    assert any(' DEBUG ' in line and 'Response 200' in line for line in mine)
    assert 'tok-secret' not in server.log()


def test_info_level_hides_debug_and_reload_applies_a_new_level(server):
    _, headers, _ = call(server.port, 'demo.echo', {'q': 1})
    assert not [line for line in lines_with(server, headers['x-zato-cid']) if ' DEBUG ' in line]
    conf = server.server_dir / 'server.conf'
    conf.write_text(conf.read_text() + '\n[loggers]\nzato_daemon.http = DEBUG\n')
    server.signal(signal.SIGHUP)
    wait_until(lambda: 'Reload complete' in server.log(), message='the reload')
    _, headers, _ = call(server.port, 'demo.echo', {'q': 2})
    assert [line for line in lines_with(server, headers['x-zato-cid']) if ' DEBUG ' in line]


def test_foreground_stdout_gets_the_lines_without_colour(server):
    _, headers, _ = call(server.port, 'demo.sleep', {'seconds': 0.01})
    cid = headers['x-zato-cid']
    wait_until(lambda: cid in server.output(), message='the line on stdout')
    assert '\033[' not in server.output()
    assert 'Server ready' in server.output()


def test_server_log_is_reopened_after_logrotate_moves_it(server):
    log_path = server.server_dir / 'logs' / 'server.log'
    log_path.rename(log_path.with_name('server.log.1'))
    _, headers, _ = call(server.port, 'demo.sleep', {'seconds': 0.01})
    wait_until(lambda: log_path.exists() and headers['x-zato-cid'] in log_path.read_text(),
               message='the new server.log to get the line')
    assert headers['x-zato-cid'] not in log_path.with_name('server.log.1').read_text()


def test_reload_drops_a_removed_logger_level(server_factory):
    server = server_factory(sections='[loggers]\nzato_daemon.http = DEBUG\n')
    _, headers, _ = call(server.port, 'demo.echo', {'q': 1})
    assert [line for line in lines_with(server, headers['x-zato-cid']) if ' DEBUG ' in line]
    conf = server.server_dir / 'server.conf'
    conf.write_text(conf.read_text().replace('zato_daemon.http = DEBUG\n', ''))
    server.signal(signal.SIGHUP)
    wait_until(lambda: 'Reload complete' in server.log(), message='the reload')
    wait_until(lambda: 'drained and exited' in server.log(), message='the old worker to go')
    _, headers, _ = call(server.port, 'demo.echo', {'q': 2})
    assert not [line for line in lines_with(server, headers['x-zato-cid']) if ' DEBUG ' in line]
