"""The master's side: the report pipes read whole, every frame of a read applied."""

import os

import pytest

from zato_daemon.config import load_config
from zato_daemon.metrics.counting import WorkerCounts
from zato_daemon.metrics.master import MasterMetrics
from zato_daemon.metrics.report import encode_report


@pytest.fixture
def metrics(tmp_path):
    (tmp_path / 'server.conf').write_text('[metrics]\nport = 1\n')
    return MasterMetrics(load_config(tmp_path), tmp_path / 'metrics.json')


def worker_pipe(metrics, pid):
    """The write end of a worker `pid`'s report pipe, as the master made it."""
    read_fd, write_fd = metrics.pipe(True)
    metrics.spawned(pid, read_fd)
    return write_fd


def test_every_report_of_one_read_counts_even_when_the_last_leaves_a_service_out(metrics):
    write_fd = worker_pipe(metrics, 4242)
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


def test_a_worker_gone_with_frames_still_in_its_pipe_has_them_counted(metrics):
    write_fd = worker_pipe(metrics, 4243)
    counts = WorkerCounts()
    counts.service('a').finished(500, 0.01)
    os.write(write_fd, encode_report(counts.report()))
    os.close(write_fd)
    metrics.gone(4243)
    assert metrics.aggregate.view().totals.services['a'].outcomes == [0, 0, 1]


def test_a_worker_of_a_configuration_with_metrics_off_gets_no_pipe(metrics):
    assert metrics.pipe(False) == (None, None)
    metrics.spawned(1, None)
    assert metrics.fds() == {}
