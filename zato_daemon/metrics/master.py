"""The master's side of the metrics: the workers' report pipes, the totals, /metrics, the view for top.

The arbiter calls it from its loop: `pipe()` before a fork, `spawned()` after it,
`read()` when a report pipe is readable, `gone()` when the worker is reaped, `tick()` once
a loop. Aggregation happens here, off the workers' request path.
"""

import logging
import os
import time

from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from zato_daemon.metrics.aggregate import Aggregate, BadReport
from zato_daemon.metrics.endpoint import METRICS_PATH, MetricsEndpoint
from zato_daemon.metrics.exposition import MetricsCollector
from zato_daemon.metrics.live import snapshot
from zato_daemon.metrics.processes import newest_by_number, read_figures
from zato_daemon.metrics.report import BrokenStream, FrameReader
from zato_daemon.sockets import address_of
from zato_daemon.status import write_status

logger = logging.getLogger('zato_daemon.metrics')

# How often the master reads its workers' /proc figures and writes the view for top.
PUBLISH_INTERVAL = 1.0


class MasterMetrics:
    def __init__(self, config, snapshot_path):
        self.aggregate = Aggregate()
        self.settings = config.server_config.metrics
        self.snapshot_path = snapshot_path
        self.readers = {}  # pid -> (fd, FrameReader)
        self.processes = {}  # pid -> ProcessFigures
        self.alive = 0
        self.endpoint = None
        # auto_describe: the names a collector yields are learnt once, so that `?name[]=` filters work.
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(MetricsCollector(self.exposed))
        # The master's own process_* figures, from prometheus_client.
        ProcessCollector(registry=self.registry)
        self.next_publish = 0.0
        self.last_view = None
        self.last_view_at = None
        self.report_failures = set()

    @property
    def enabled(self):
        return self.settings.enabled

    @property
    def url(self):
        """Where /metrics is served now, or None."""
        if self.endpoint is None:
            return None
        return f'http://{address_of(self.endpoint.sock)}{METRICS_PATH}'

    # ---- configuration and the endpoint

    def serve(self, listener):
        """Starts /metrics on `listener` (None: metrics off); the one before stops."""
        if self.endpoint is not None:
            if listener is self.endpoint.sock:
                return
            self.endpoint.stop()
            self.endpoint = None
        if listener is not None:
            self.endpoint = MetricsEndpoint(listener, self.registry).start()

    def reconfigure(self, config):
        self.settings = config.server_config.metrics
        if not self.enabled:
            self._remove_snapshot()

    def stop(self):
        self.serve(None)
        self._remove_snapshot()

    def _remove_snapshot(self):
        # top must not show a view that no longer changes.
        try:
            os.unlink(self.snapshot_path)
        except OSError:
            pass

    def exposed(self):
        """What the collector exposes at a scrape (in the scrape's thread)."""
        # list() copies in one step: the loop replaces self.processes, never changes it in place.
        return (self.aggregate.view(), self.settings.buckets, newest_by_number(list(self.processes.values())),
                self.alive)

    # ---- the workers' pipes

    def pipe(self, enabled):
        """(read end, write end) for a worker about to be forked, or (None, None) when its
        configuration has metrics off."""
        if not enabled:
            return None, None
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        return read_fd, write_fd

    def spawned(self, pid, read_fd):
        if read_fd is not None:
            self.readers[pid] = (read_fd, FrameReader())

    def fds(self):
        """fd -> pid of the report pipes to watch."""
        return {fd: pid for pid, (fd, _) in self.readers.items()}

    def read(self, pid):
        """Reads what the worker sent; at end of file, closes its pipe."""
        fd, reader = self.readers[pid]
        while True:
            try:
                data = os.read(fd, 1 << 20)
            except BlockingIOError:
                return
            except OSError:
                data = b''
            if not data:
                os.close(fd)
                del self.readers[pid]
                return
            try:
                reports = reader.feed(data)
            except BrokenStream as exc:
                logger.error('Cannot read the counts of worker pid %d: %s; its counts from now on are lost', pid, exc)
                continue
            # Every one, in order: a report leaves out the services that did not change since the
            # one before, so the last alone may lack calls only an earlier one carries.
            for report in reports:
                self._heard(pid, report)

    def _heard(self, pid, report):
        try:
            self.aggregate.heard(pid, report)
        except BadReport as exc:
            if pid not in self.report_failures:
                self.report_failures.add(pid)
                logger.error('Worker pid %d sent counts the master cannot use: %s', pid, exc)

    def gone(self, pid):
        """The worker was reaped: what is left on its pipe is read, then its counts are kept."""
        if pid in self.readers:
            self.read(pid)
        if pid in self.readers:  # a child of the worker holds the write end: what is there is all
            os.close(self.readers.pop(pid)[0])
        self.processes = {other: figures for other, figures in self.processes.items() if other != pid}
        self.report_failures.discard(pid)
        self.aggregate.gone(pid)

    def close_in_child(self):
        """In a new worker: the master's read ends and the scrapes being answered are not its business."""
        for fd, _ in self.readers.values():
            os.close(fd)
        if self.endpoint is not None:
            self.endpoint.close_in_child()

    # ---- once a second

    def tick(self, workers):
        """`workers`: the lifecycle's Worker objects. Reads /proc, writes the view for top."""
        now = time.monotonic()
        self.alive = len(workers)
        if not self.enabled or now < self.next_publish:
            return
        self.next_publish = now + PUBLISH_INTERVAL
        processes = {}
        for worker in workers:
            figures = read_figures(worker.pid, worker.number, worker.generation, worker.state.value)
            processes[worker.pid] = figures
            if figures.cpu_seconds is not None:
                self.aggregate.cpu_read(worker.pid, worker.number, figures.cpu_seconds)
        self.processes = processes
        view = self.aggregate.view()
        seconds = now - self.last_view_at if self.last_view_at is not None else 0.0
        rows = [(worker.number, worker.generation, worker.pid, worker.state.value) for worker in workers]
        published = snapshot(self.last_view, view, self.settings.buckets, seconds, rows, processes, time.time())
        self.last_view, self.last_view_at = view, now
        try:
            write_status(self.snapshot_path, published)
        except OSError as exc:
            logger.debug('Cannot write %s: %s', self.snapshot_path, exc)
