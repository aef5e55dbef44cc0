"""diagnose's rounds against real processes: a child with the real SIGURG trigger, collector and
record writer stands for the master; no server. Three rounds one second apart give three dumps,
and a listed process that writes nothing is named in a 69."""

import argparse
import json
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from zato_daemon.dump import diagnose
from zato_daemon.errors import EXIT_UNAVAILABLE
from zato_daemon.paths import ServerDir, ServerPaths
from zato_daemon.status import write_status

# Dumps itself on SIGURG as a master does (trigger.py, collect.py, record.py), then idles.
CHILD = '''\
import sys
import threading
import time

from zato_daemon.dump.collect import collect, os_thread_ident
from zato_daemon.dump.record import write_record
from zato_daemon.dump.trigger import DumpTrigger

directory = sys.argv[1]
main_thread = os_thread_ident()


def on_dump():
    write_record(collect(main_thread, 'master', directory), directory)


trigger = DumpTrigger(on_dump, lambda function: threading.Thread(target=function, daemon=True).start())
trigger.install()
print('ready', flush=True)
while True:
    time.sleep(3600)  # the child idles here
'''


def child_line():
    return next(number for number, line in enumerate(CHILD.splitlines(), 1) if 'the child idles here' in line)


@pytest.fixture
def children():
    started = []

    def start(script, *args):
        process = subprocess.Popen([sys.executable, '-c', script, *map(str, args)], stdout=subprocess.PIPE, text=True,
                                   cwd=REPO_ROOT)
        started.append(process)
        if script is CHILD:
            assert process.stdout.readline() == 'ready\n'
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def server_paths(tmp_path):
    server_dir = ServerDir(tmp_path / 'server')
    server_dir.runtime.mkdir(parents=True)
    paths = ServerPaths(base=server_dir.base, state=server_dir.state, logs=server_dir.logs, runtime=server_dir.runtime,
                        server_log=server_dir.logs / 'server.log', diagnostics_database=server_dir.state / 'd.sqlite',
                        pickup_dir=server_dir.state / 'pickup', extlib=(), service_paths=())
    return server_dir, paths


def test_rounds_a_second_apart_each_get_a_dump_of_their_own(tmp_path, children, capsys):
    server_dir, paths = server_paths(tmp_path)
    master = children(CHILD, paths.dump_records)
    args = argparse.Namespace(dumps=3, interval=1.0, json=True)
    status = diagnose.run(args, server_dir, master.pid, paths, lambda: os.kill(master.pid, signal.SIGURG))
    report = json.loads(capsys.readouterr().out)
    # Each round its own dump (next_round_at keeps a request out of the previous dump's quiet
    # period; test_diagnose.py has its cases).
    assert [(process['pid'], process['dumps']) for process in report['processes']] == [(master.pid, 3)]
    # Not a master: its main thread sleeps where no master does, the same line in every dump.
    assert status == 1, report
    stuck, = report['findings']
    assert (stuck['kind'], stuck['subject'], stuck['line']) == ('stuck', 'thread', child_line())


def test_a_listed_worker_that_writes_nothing_is_named(tmp_path, children):
    server_dir, paths = server_paths(tmp_path)
    master = children(CHILD, paths.dump_records)
    silent = children('import time\ntime.sleep(3600)\n')
    write_status(server_dir.status_file, {'master_proc_pid': master.pid, 'workers': [
        {'number': 2, 'pid': silent.pid, 'state': 'ready'}]})
    with pytest.raises(diagnose.DumpsMissing) as error:
        diagnose.take_round(server_dir, master.pid, paths.dump_records, lambda: os.kill(master.pid, signal.SIGURG),
                            timeout=1.0)
    assert error.value.exit_status == EXIT_UNAVAILABLE
    assert str(error.value).startswith(f'no dump record from worker-2 pid {silent.pid} within 1 s in ')
    assert 'master' not in str(error.value).split(' within ')[0]
