"""The master's truth: every worker's counts, kept across their deaths, reloads and recycling.

total = what the workers gone had counted (`retired`) + the last report of each live worker.
A worker's reports are cumulative, so when it exits its last report moves from the second
term to the first and no total goes down. A worker killed before it reported a count
loses that count (report.REPORT_INTERVAL bounds how many).

The sum is kept up to date as reports arrive, service by service (only the services a report
carries changed), so a scrape or the per-second view copies one Counts, whatever the number
of workers. Durations are summed in integer nanoseconds: adding and taking back a worker's
previous figure is then exact, and a histogram's _sum can never shrink by a rounding error
(Prometheus would take that for a reset).

Histograms merge bucket by bucket. Workers of two generations may have different
[metrics] buckets (a reload changed them): a count of bucket `le` goes to the smallest
bound of the layout served that is at least `le` (`rebucket`), which keeps every cumulative
count of a bound both layouts share as it was.

Pure apart from the lock: the master's loop writes, the scrape thread reads `view()`.
"""

import math
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from zato_daemon.metrics.counting import STATUS_CLASSES

INF = math.inf
# Figures a worker reports beside its services, all counters; anything else is ignored.
WORKER_FIGURES = ('requests', 'slow_stored', 'samples_stored', 'diagnostics_dropped', 'dump_failures')
RESTART_REASONS = ('died', 'hung', 'recycled', 'boot_failed')
RELOAD_RESULTS = ('applied', 'refused', 'failed')
DEPLOY_RESULTS = ('deployed', 'undeployed', 'refused')
CACHE_EVENTS = ('hits', 'misses', 'evictions')


class BadReport(ValueError):
    """A report that does not have the shape counting.WorkerCounts.report() gives."""


@dataclass
class ServiceTotal:
    """Calls of one service: by outcome, the sum of their durations (integer nanoseconds), and by
    duration bucket (le -> count, not cumulative; math.inf for the last)."""

    outcomes: list = field(default_factory=lambda: [0, 0, 0])
    nanoseconds: int = 0
    buckets: Counter = field(default_factory=Counter)
    in_flight: int = 0

    def add(self, other, sign=1):
        for index, count in enumerate(other.outcomes):
            self.outcomes[index] += sign * count
        self.nanoseconds += sign * other.nanoseconds
        for bound, count in other.buckets.items():
            self.buckets[bound] += sign * count
        self.in_flight += sign * other.in_flight

    def copy(self):
        return ServiceTotal(list(self.outcomes), self.nanoseconds, Counter(self.buckets), self.in_flight)

    @property
    def calls(self):
        return sum(self.outcomes)

    @property
    def seconds(self):
        return self.nanoseconds / 1e9


@dataclass
class Counts:
    """What one worker reported last, or the sum of several workers'."""

    services: dict = field(default_factory=lambda: defaultdict(ServiceTotal))
    responses: Counter = field(default_factory=Counter)
    caches: dict = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    figures: Counter = field(default_factory=Counter)

    def add_all_but_services(self, other, sign=1):
        """Adds (or takes back, `sign` -1) another Counts' responses, caches and figures."""
        for counter, others in ((self.responses, other.responses), (self.figures, other.figures)):
            for key, count in others.items():
                counter[key] += sign * count
        for name, events in other.caches.items():
            mine = self.caches[name]
            for index, count in enumerate(events):
                mine[index] += sign * count

    def copy(self):
        copied = Counts()
        copied.services.update((name, total.copy()) for name, total in self.services.items())
        copied.add_all_but_services(self)
        return copied

    @property
    def in_flight(self):
        return sum(total.in_flight for total in self.services.values())


def _number(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise BadReport(f'{what}: {value!r} is not a count')
    return value


def parse_report(report, previous=None):
    """The Counts of a worker after `report`, given its `previous` Counts (None: its first).

    Services left out of a report keep their last counts (counting.WorkerCounts.report).
    Raises BadReport for anything else than what a worker sends."""
    try:
        bounds = [_number(bound, 'bound') for bound in report['bounds']] + [INF]
        counts = Counts()
        if previous is not None:
            counts.services.update(previous.services)
        for name, values in report['services'].items():
            ok, client_error, server_error, in_flight, seconds, buckets = values
            if len(buckets) != len(bounds):
                raise BadReport(f'service {name!r}: {len(buckets)} buckets for {len(bounds)} bounds')
            counts.services[str(name)] = ServiceTotal(
                [_number(ok, 'ok'), _number(client_error, 'client_error'), _number(server_error, 'server_error')],
                round(_number(seconds, 'seconds') * 1e9),
                Counter({bound: _number(count, 'bucket') for bound, count in zip(bounds, buckets) if count}),
                _number(in_flight, 'in_flight'))
        for status_class, count in report['responses'].items():
            if status_class in STATUS_CLASSES:
                counts.responses[status_class] = _number(count, 'responses')
        for name, events in report['caches'].items():
            if len(events) != len(CACHE_EVENTS):
                raise BadReport(f'cache {name!r}: {len(events)} counts')
            counts.caches[str(name)] = [_number(count, 'cache') for count in events]
        for name in WORKER_FIGURES:
            if name in report:
                counts.figures[name] = _number(report[name], name)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, BadReport):
            raise
        raise BadReport(f'{type(exc).__name__}: {exc}') from None
    return counts


def rebucket(buckets, bounds):
    """Cumulative counts for each of `bounds` and +Inf from `buckets` (le -> count, of any
    layout): each count goes to the smallest bound at least its le."""
    layout = sorted(bounds) + [INF]
    per_bound = [0] * len(layout)
    for le, count in buckets.items():
        index = next(index for index, bound in enumerate(layout) if bound >= le)
        per_bound[index] += count
    cumulative, running = [], 0
    for count in per_bound:
        running += count
        cumulative.append(running)
    return list(zip(layout, cumulative))


@dataclass
class MasterCounts:
    """What the master counts itself."""

    restarts: Counter = field(default_factory=Counter)
    reloads: Counter = field(default_factory=Counter)
    deploys: Counter = field(default_factory=Counter)
    dumps: int = 0
    bad_reports: int = 0
    dump_failures: int = 0


@dataclass
class View:
    """A consistent copy for one scrape or one snapshot."""

    totals: Counts
    per_worker: dict
    master: MasterCounts
    cpu_seconds: dict


class Aggregate:
    """The totals the master serves; see the module docstring."""

    def __init__(self):
        self.lock = threading.Lock()
        # The gone workers' counts plus the last of each live worker's, kept up to date.
        self.total = Counts()
        self.live = {}
        self.master = MasterCounts()
        # Worker number -> CPU seconds of the processes of that number gone, and pid -> the
        # last reading of each live one: zato_worker_cpu_seconds_total{worker} never goes
        # down when a worker is replaced.
        self.retired_cpu = Counter()
        self.live_cpu = {}

    def heard(self, pid, report):
        """A worker's report; raises BadReport (and keeps what it had) for a broken one."""
        with self.lock:
            previous = self.live.get(pid)
            try:
                current = parse_report(report, previous)
            except BadReport:
                self.master.bad_reports += 1
                raise
            total = self.total
            for name in report['services']:
                name = str(name)
                if previous is not None and name in previous.services:
                    total.services[name].add(previous.services[name], sign=-1)
                total.services[name].add(current.services[name])
            if previous is not None:
                total.add_all_but_services(previous, sign=-1)
            total.add_all_but_services(current)
            self.live[pid] = current

    def gone(self, pid):
        """The worker exited: its last counts join the retired ones (its calls in flight end)."""
        with self.lock:
            counts = self.live.pop(pid, None)
            if counts is not None:
                for name, service in counts.services.items():
                    self.total.services[name].in_flight -= service.in_flight
            reading = self.live_cpu.pop(pid, None)
            if reading is not None:
                number, seconds = reading
                self.retired_cpu[number] += seconds

    def cpu_read(self, pid, number, seconds):
        """The master read a live worker's CPU seconds; a reading lower than the last is ignored."""
        with self.lock:
            last = self.live_cpu.get(pid)
            if last is None or seconds >= last[1]:
                self.live_cpu[pid] = (number, seconds)

    def count(self, what, label=None):
        """One more of the master's own counts: restarts, reloads, deploys (with a label), dumps,
        dump_failures (from the master's dump thread: the lock is held for an addition only)."""
        with self.lock:
            if label is None:
                setattr(self.master, what, getattr(self.master, what) + 1)
            else:
                getattr(self.master, what)[label] += 1

    def view(self):
        with self.lock:
            totals = self.total.copy()
            cpu = Counter(self.retired_cpu)
            for number, seconds in self.live_cpu.values():
                cpu[number] += seconds
            per_worker = {pid: (counts.figures.get('requests', 0), counts.in_flight)
                          for pid, counts in self.live.items()}
            master = MasterCounts(Counter(self.master.restarts), Counter(self.master.reloads),
                                  Counter(self.master.deploys), self.master.dumps, self.master.bad_reports,
                                  self.master.dump_failures)
            return View(totals, per_worker, master, dict(cpu))

