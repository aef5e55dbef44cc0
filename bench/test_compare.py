"""bench/compare.py: its decisions case by case, and its process handling with real processes.

Not part of the test suite (setup.cfg's testpaths is tests/); run by hand:
    .venv/bin/pytest -q bench/test_compare.py
    /usr/bin/python3 -m pytest -q -p no:cacheprovider bench/test_compare.py
"""

import asyncio
import http.server
import json
import os
import shutil
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare  # noqa: E402
import echo_apps  # noqa: E402
import throughput  # noqa: E402


def wrk_summary(**overrides):
    summary = {'requests': 1000, 'duration_us': 2_000_000, 'bytes': 90_000, 'p50_us': 1500, 'p99_us': 9000,
               'max_us': 20000, 'connect': 0, 'read': 0, 'write': 0, 'status': 0, 'timeout': 0}
    return {**summary, **overrides}


def run(**overrides):
    figures = compare.run_figures(wrk_summary(), 0.03, 0.01, 4, 2, False)
    return {**figures, **overrides}


# --- parse_stat, cpu_delta ----------------------------------------------------------------------------------------

STAT = ('1234 (gran ian) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 {utime} {stime} 0 0 20 0 {threads} 0 '
        '500 1000000 200 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0')


def test_parse_stat_reads_times_and_threads_after_a_command_name_with_spaces_and_parentheses():
    assert compare.parse_stat(STAT.format(utime=731, stime=42, threads=9)) == (731, 42, 9)


def test_parse_stat_of_this_process_is_what_os_times_says():
    utime, stime, threads = compare.parse_stat(Path(f'/proc/{os.getpid()}/stat').read_text())
    tick = os.sysconf('SC_CLK_TCK')
    assert abs(utime / tick - os.times().user) < 0.05
    assert abs(stime / tick - os.times().system) < 0.05
    assert threads == len(os.listdir('/proc/self/task'))


def test_cpu_delta_sums_every_process_of_the_tree():
    before = {1: (100, 10, 2), 2: (50, 5, 1)}
    after = {1: (130, 12, 2), 2: (80, 9, 3)}
    assert compare.cpu_delta(before, after) == (60, 6, 5, False)


def test_cpu_delta_counts_a_new_process_from_zero_and_flags_the_change():
    assert compare.cpu_delta({1: (100, 10, 1)}, {1: (110, 10, 1), 7: (3, 1, 1)}) == (13, 1, 2, True)


def test_cpu_delta_flags_a_vanished_process():
    assert compare.cpu_delta({1: (100, 10, 1), 2: (5, 5, 1)}, {1: (110, 10, 1)}) == (10, 0, 1, True)


def test_process_tree_finds_children_and_grandchildren(tmp_path):
    script = textwrap.dedent('''\
        import subprocess, sys, time
        if sys.argv[1:] == ['leaf']:
            time.sleep(60)
        else:
            child = subprocess.Popen([sys.executable, __file__, 'leaf' if sys.argv[1:] else 'mid'])
            print(child.pid, flush=True)
            time.sleep(60)
        ''')
    (tmp_path / 'tree.py').write_text(script)
    root = compare.subprocess.Popen([sys.executable, str(tmp_path / 'tree.py')], stdout=compare.subprocess.PIPE,
                                    text=True, start_new_session=True)
    try:
        middle = int(root.stdout.readline())
        deadline = time.monotonic() + 10
        while len(compare.process_tree(root.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = compare.process_tree(root.pid)
        assert pids[0] == root.pid and middle in pids and len(pids) == 3
    finally:
        os.killpg(root.pid, 9)
        root.wait(10)


# --- echo_problem, parse_wrk, describe_errors -----------------------------------------------------------------------

SENT = '{"a": [1, 2.5, "x"]}'


@pytest.mark.parametrize('status, content_type, answer, problem', [
    (200, 'application/json', b'{"a":[1,2.5,"x"]}', None),
    (200, 'application/json; charset=utf-8', b'{"a": [1, 2.5, "x"]}', None),
    (404, 'application/json', b'{"error": "no"}', 'status 404'),
    (200, 'text/plain', b'{"a":[1,2.5,"x"]}', "Content-Type 'text/plain'"),
    (200, None, b'{"a":[1,2.5,"x"]}', 'Content-Type None'),
    (200, 'application/json', b'<html>', 'not JSON'),
    (200, 'application/json', b'{"a":[1,2.5]}', 'not the body sent'),
])
def test_echo_problem(status, content_type, answer, problem):
    found = compare.echo_problem(status, content_type, answer, SENT)
    assert found == problem if problem is None else problem in found


def test_parse_wrk_finds_the_summary_among_wrk_s_own_report():
    stdout = f'Running 2s test\n  Latency ...\n{compare.SUMMARY_MARK}{json.dumps(wrk_summary())}\nRequests/sec: 500\n'
    assert compare.parse_wrk(stdout) == wrk_summary()
    assert compare.parse_wrk('Running 2s test\n') is None


@pytest.mark.parametrize('errors, words', [
    ({'status': 0, 'connect': 0, 'read': 0, 'write': 0, 'timeout': 0}, ''),
    ({'status': 1200, 'connect': 0, 'read': 0, 'write': 0, 'timeout': 0}, '1,200 non-2xx'),
    ({'status': 0, 'connect': 3, 'read': 0, 'write': 0, 'timeout': 7}, 'socket errors: connect 3, timeout 7'),
    ({'status': 2, 'connect': 0, 'read': 1, 'write': 0, 'timeout': 0}, '2 non-2xx; socket errors: read 1'),
])
def test_describe_errors(errors, words):
    assert compare.describe_errors(errors) == words


# --- summarize, render_cell -----------------------------------------------------------------------------------------

def test_summarize_takes_medians_of_the_rounds_and_cpu_over_all_requests():
    runs = [run(rate=100.0, p50_ms=1.0, p99_ms=9.0, requests=1000, seconds=10.0, cpu_user_s=0.02, cpu_system_s=0.01),
            run(rate=300.0, p50_ms=3.0, p99_ms=1.0, requests=3000, seconds=10.0, cpu_user_s=0.06, cpu_system_s=0.01),
            run(rate=200.0, p50_ms=2.0, p99_ms=5.0, requests=2000, seconds=10.0, cpu_user_s=0.04, cpu_system_s=0.04)]
    summary = compare.summarize(runs)
    assert (summary['rate'], summary['p50_ms'], summary['p99_ms']) == (200.0, 2.0, 5.0)
    assert summary['cpu_user_us'] == pytest.approx(20.0)  # 0.12 s over 6,000 requests
    assert summary['cpu_system_us'] == pytest.approx(10.0)
    assert summary['cores'] == pytest.approx(0.18 / 30)
    assert summary['processes_changed'] is False


def test_summarize_adds_up_the_errors_of_all_rounds():
    errors = {'status': 1, 'connect': 0, 'read': 2, 'write': 0, 'timeout': 0}
    summary = compare.summarize([run(errors=errors), run(errors=errors), run()])
    assert summary['errors'] == {'status': 2, 'connect': 0, 'read': 4, 'write': 0, 'timeout': 0}


def table_rows(text):
    return [line for line in text.splitlines() if line.startswith('| ') and not line.startswith(('| server', '| ---'))]


def test_render_cell_gives_ratios_to_the_first_server():
    base = compare.summarize([run(rate=20000.0, p99_ms=10.0)])
    other = compare.summarize([run(rate=30000.0, p99_ms=5.0)])
    text = compare.render_cell('1 worker', {'zato-daemon': base, 'uvicorn': other})
    assert '| req/s vs zato-daemon | p99 vs zato-daemon |' in text
    assert 'ERRORS' not in text
    zato, uvicorn = table_rows(text)
    assert zato.startswith('| zato-daemon | 20,000 |') and '| 1.00x | 1.00x | - |' in zato
    assert uvicorn.startswith('| uvicorn | 30,000 |') and '| 1.50x | 0.50x | - |' in uvicorn
    assert '| 40 (30 + 10) |' in uvicorn  # 0.03 + 0.01 s of CPU over 1,000 requests


def test_render_cell_says_loudly_which_server_had_errors():
    errors = {'status': 0, 'connect': 0, 'read': 0, 'write': 0, 'timeout': 12}
    text = compare.render_cell('x', {'zato-daemon': compare.summarize([run()]),
                                     'granian (WSGI)': compare.summarize([run(errors=errors)])})
    assert '**ERRORS in this cell, its figures are not comparable: granian (WSGI): socket errors: timeout 12**' in text
    assert table_rows(text)[1].endswith('| socket errors: timeout 12 |')


def test_render_cell_flags_a_process_tree_that_changed():
    text = compare.render_cell('x', {'zato-daemon': compare.summarize([run(processes_changed=True)])})
    assert 'A process started or ended during a run of: zato-daemon' in text


def test_cell_title():
    assert compare.cell_title(1, 50, 'small', 50, 1, 2) == '1 worker, wrk -t1 -c50, 50-byte body, 1 round of 2 s'
    assert (compare.cell_title(2, 500, 'large', 10231, 3, 5) ==
            '2 workers, wrk -t1 -c500, 10,231-byte body (records), 3 rounds of 5 s')


# --- server_specs, server_env, bodies -------------------------------------------------------------------------------

def specs(keys=('zato', 'against', 'uvicorn', 'granian-rsgi', 'granian-wsgi', 'gunicorn'), workers=2):
    ports = {key: 20000 + number for number, key in enumerate(keys)}
    dirs = {'zato': ('/tree', '/w/zato'), 'against': ('/old', '/w/old')}
    return compare.server_specs(keys, workers, ports, '/usr/bin/python3', '/venv', '/w', dirs)


def test_every_server_gets_the_same_number_of_workers_and_listens_on_loopback_only():
    for spec in specs(workers=3):
        argv = ' '.join(spec.argv)
        if spec.key in ('zato', 'against'):
            continue  # the worker count is in its server.conf, written by throughput.zato_server_dir
        assert '--workers 3' in argv or '-w 3' in argv, argv
        assert '127.0.0.1' in argv and str(spec.port) in argv, argv


def test_zato_daemon_runs_on_the_given_interpreter_from_its_own_tree():
    zato, against = specs()[:2]
    assert zato.argv == ('/usr/bin/python3', '-m', 'zato_daemon', 'start', '/w/zato', '--fg')
    assert (zato.pythonpath, str(zato.cwd), zato.path) == ('/tree', '/tree', '/echo')
    assert against.argv[4] == '/w/old' and against.pythonpath == '/old'


def test_the_pypi_servers_run_from_the_venv_with_the_options_that_make_them_fast():
    by_key = {spec.key: spec for spec in specs()}
    uvicorn = by_key['uvicorn'].argv
    assert uvicorn[0] == '/venv/bin/uvicorn' and uvicorn[1] == 'echo_apps:asgi'
    assert ' --loop uvloop --http httptools ' in ' '.join(uvicorn) + ' '
    assert by_key['granian-rsgi'].argv[:3] == ('/venv/bin/granian', '--interface', 'rsgi')
    assert by_key['granian-rsgi'].argv[-1] == 'echo_apps:rsgi'
    assert by_key['granian-wsgi'].argv[-1] == 'wsgi_app:app'
    assert by_key['gunicorn'].argv[:3] == ('/venv/bin/gunicorn', '-k', 'gevent')
    assert all(by_key[key].pythonpath == f'{compare.BENCH}:/w' for key in ('uvicorn', 'gunicorn', 'granian-wsgi'))


def test_server_specs_refuses_an_unknown_server():
    with pytest.raises(ValueError, match='no such server: nginx'):
        specs(keys=('nginx',))


def test_server_env_keeps_only_the_server_s_own_python_path():
    env = compare.server_env({'PATH': '/bin', 'PYTHONPATH': '/elsewhere', 'VIRTUAL_ENV': '/v', 'HOME': '/root'}, '/t')
    assert env == {'PATH': '/bin', 'HOME': '/root', 'PYTHONPATH': '/t', 'PYTHONNOUSERSITE': '1',
                   'PYTHONDONTWRITEBYTECODE': '1'}


def test_the_bodies():
    assert compare.BODIES['small'] == throughput.BODY and len(compare.BODIES['small']) == 50
    large = json.loads(compare.BODIES['large'])
    assert len(compare.BODIES['large']) == 10231 and len(large['records']) == compare.LARGE_RECORDS
    assert compare.large_body() == compare.BODIES['large']


# --- the ASGI app ---------------------------------------------------------------------------------------------------

def asgi_echo(chunks):
    messages = [{'type': 'http.request', 'body': chunk, 'more_body': number < len(chunks) - 1}
                for number, chunk in enumerate(chunks)]
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(echo_apps.asgi({'type': 'http'}, receive, send))
    return sent


def test_the_asgi_app_echoes_a_body_that_arrives_in_pieces():
    start, body = asgi_echo([b'{"a": [1, ', b'2.5]}'])
    assert start['status'] == 200
    assert dict(start['headers']) == {b'content-type': b'application/json', b'content-length': b'15'}
    assert body == {'type': 'http.response.body', 'body': b'{"a": [1, 2.5]}'}


def test_the_asgi_app_answers_null_to_no_body():
    assert asgi_echo([b''])[1]['body'] == b'null'


# --- wrk and the servers' processes, for real ---------------------------------------------------------------------

class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def do_POST(self):
        body = self.rfile.read(int(self.headers['Content-Length']))
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.skipif(not shutil.which('wrk'), reason='wrk is missing: apt-get install wrk')
def test_the_wrk_script_reports_what_wrk_did(tmp_path):
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = tmp_path / 'post.lua'
    script.write_text(compare.WRK_SCRIPT.format(body=compare.BODIES['large'], mark=compare.SUMMARY_MARK))
    try:
        summary = compare.run_wrk('echo', server.server_address[1], '/', 2, 1, script)
    finally:
        server.shutdown()
    assert summary['requests'] > 0 and summary['status'] == 0
    assert 0 < summary['p50_us'] <= summary['p99_us'] <= summary['max_us']
    # Every answer carries the whole large body back.
    assert summary['bytes'] > summary['requests'] * len(compare.BODIES['large'])


def contender(tmp_path, code, name='test server'):
    spec = compare.Spec('zato', (sys.executable, '-c', textwrap.dedent(code)), tmp_path, '', throughput.free_port(),
                        '/')
    return compare.Contender(spec, name, tmp_path / 'server.log')


def test_a_server_that_dies_at_start_is_named_with_its_status_and_output(tmp_path):
    with contender(tmp_path, 'import sys; print("cannot import app", flush=True); sys.exit(3)') as server:
        with pytest.raises(compare.BenchError) as error:
            server.wait_ready({'small': compare.BODIES['small']}, timeout=20)
    assert str(error.value).startswith('test server exited with status 3')
    assert 'cannot import app' in str(error.value)


def test_a_wrong_echo_answer_stops_the_run_with_the_server_s_name(tmp_path):
    code = '''
        import http.server
        class Wrong(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers['Content-Length']))
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', '2')
                self.end_headers()
                self.wfile.write(b'{}')
        http.server.HTTPServer(('127.0.0.1', PORT), Wrong).serve_forever()
    '''
    server = contender(tmp_path, 'pass', name='wrong server')
    server.command[-1] = textwrap.dedent(code).replace('PORT', str(server.port))
    with server:
        with pytest.raises(compare.BenchError, match='^wrong server answered the echo of the small body wrongly: '
                                                     'an answer that is not the body sent'):
            server.wait_ready({'small': compare.BODIES['small']}, timeout=20)


def test_nothing_of_a_server_s_process_group_outlives_it(tmp_path):
    # The leader dies of SIGTERM; its child ignores SIGTERM, as a worker busy shutting down might.
    code = '''
        import signal, subprocess, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen(['sleep', '300'])
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        print(child.pid, flush=True)
        time.sleep(300)
    '''
    with contender(tmp_path, code) as server:
        deadline = time.monotonic() + 10
        while not server.log_path.read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(server.log_path.read_text())
        assert Path(f'/proc/{child}').exists()
    deadline = time.monotonic() + 10
    while Path(f'/proc/{child}').exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f'/proc/{child}').exists()
