"""The master's side: the report pipes read whole, every frame of a read applied."""

import os

from zato_daemon.config import load_config
from zato_daemon.metrics.counting import WorkerCounts
from zato_daemon.metrics.master import MasterMetrics
from zato_daemon.metrics.report import encode_report


def test_every_report_of_one_read_counts_even_when_the_last_leaves_a_service_out(tmp_path):
    (tmp_path / 'server.conf').write_text('[metrics]\nport = 1\n')
    metrics = MasterMetrics(load_config(tmp_path), tmp_path / 'metrics.json')
    read_fd, write_fd = metrics.pipe(True)
    metrics.spawned(4242, read_fd)
    counts = WorkerCounts()
    counts.service('a').finished(200, 0.01)
    first = counts.report()
    counts.service('b').finished(200, 0.01)
    second = counts.report()  # carries b only: a did not change
    os.write(write_fd, encode_report(first) + encode_report(second))
    metrics.read(4242)
    services = metrics.aggregate.view().totals.services
    assert (services['a'].calls, services['b'].calls) == (1, 1)
    os.close(write_fd)
    metrics.gone(4242)
    assert metrics.readers == {}
    services = metrics.aggregate.view().totals.services
    assert (services['a'].calls, services['b'].calls) == (1, 1)


def test_a_worker_gone_with_frames_still_in_its_pipe_has_them_counted(tmp_path):
    (tmp_path / 'server.conf').write_text('[metrics]\nport = 1\n')
    metrics = MasterMetrics(load_config(tmp_path), tmp_path / 'metrics.json')
    read_fd, write_fd = metrics.pipe(True)
    metrics.spawned(4243, read_fd)
    counts = WorkerCounts()
    counts.service('a').finished(500, 0.01)
    os.write(write_fd, encode_report(counts.report()))
    os.close(write_fd)
    metrics.gone(4243)
    assert metrics.aggregate.view().totals.services['a'].outcomes == [0, 0, 1]


def test_with_metrics_off_a_worker_gets_no_pipe(tmp_path):
    (tmp_path / 'server.conf').write_text('[metrics]\nenabled = false\n')
    metrics = MasterMetrics(load_config(tmp_path), tmp_path / 'metrics.json')
    assert metrics.pipe(False) == (None, None)
    metrics.spawned(1, None)
    assert metrics.fds() == {}
