"""What one worker counts, on the request path: plain attribute and list increments.

Importable by the master (no gevent): the master decodes what `WorkerCounts.report()` builds.

Rule: the counts only grow while the worker lives. A cache deleted and created again keeps
its counts (CacheRegistry holds them by name), so the master can trust that a smaller
number from a live worker never happens.
"""

from bisect import bisect_left

# The buckets of zato_service_duration_seconds unless [metrics] buckets says otherwise:
# prometheus_client's default, from 5 ms to 10 s.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

OUTCOMES = ('ok', 'client_error', 'server_error')
# Requests for no deployed service (no route, or a service that is not deployed) count under
# this name, so that a scanner of random paths cannot add a label value per path. Service
# names are dotted names by convention; a service that calls itself this shares its series.
UNKNOWN_SERVICE = '(unknown)'
# Indices of ResponseCounts.by_class: status // 100.
STATUS_CLASSES = ('1xx', '2xx', '3xx', '4xx', '5xx')


class ServiceCounts:
    """One service's calls in this worker: by outcome, their durations, and those running."""

    __slots__ = ('ok', 'client_error', 'server_error', 'in_flight', 'seconds', 'buckets', 'bounds')

    def __init__(self, bounds):
        self.ok = self.client_error = self.server_error = self.in_flight = 0
        self.seconds = 0.0
        self.bounds = bounds
        # Per bucket, not cumulative: buckets[i] counts durations in (bounds[i-1], bounds[i]],
        # and the last one those over every bound (+Inf).
        self.buckets = [0] * (len(bounds) + 1)

    def finished(self, status, seconds):
        """One call ended with HTTP `status` after `seconds`."""
        if status < 400:
            self.ok += 1
        elif status < 500:
            self.client_error += 1
        else:
            self.server_error += 1
        self.buckets[bisect_left(self.bounds, seconds)] += 1
        self.seconds += seconds

    @property
    def calls(self):
        return self.ok + self.client_error + self.server_error

    def as_list(self):
        return [self.ok, self.client_error, self.server_error, self.in_flight, self.seconds, list(self.buckets)]


class CacheCounts:
    """One cache's uses in this worker."""

    __slots__ = ('hits', 'misses', 'evictions')

    def __init__(self):
        self.hits = self.misses = self.evictions = 0

    def as_list(self):
        return [self.hits, self.misses, self.evictions]


class WorkerCounts:
    """Everything one worker counts; `report()` is what it sends to the master."""

    def __init__(self, bounds=DEFAULT_BUCKETS):
        self.bounds = tuple(bounds)
        self.services = {}
        # Responses sent, by status // 100 (the router's and the protocol errors').
        self.responses = [0] * 6
        self.caches = {}
        # Read from their owners when a report is built: (name, callable) pairs.
        self.sources = []
        # Parts of this worker's dumps that failed (dump/sink.py); only the dump thread adds.
        self.dump_failures = 0
        self._reported_calls = {}

    def service(self, name):
        """The counts of service `name`, created on its first call."""
        counts = self.services.get(name)
        if counts is None:
            counts = self.services[name] = ServiceCounts(self.bounds)
        return counts

    def cache(self, name):
        counts = self.caches.get(name)
        if counts is None:
            counts = self.caches[name] = CacheCounts()
        return counts

    def dump_failed(self):
        """One part of a dump failed: install_dump's count_failure, called in the dump thread
        (a plain increment: no lock, no gevent)."""
        self.dump_failures += 1

    def add_source(self, name, read):
        """`read()` gives a number the report carries under `name` (a count another part keeps)."""
        self.sources.append((name, read))

    @property
    def in_flight(self):
        return sum(counts.in_flight for counts in self.services.values())

    def report(self, full=False):
        """The cumulative counts as a JSON-ready dict. Services whose calls did not change since
        the last report, and have none running, are left out unless `full`: the master keeps
        the last counts it heard of each."""
        services = {}
        for name, counts in self.services.items():
            calls = counts.calls
            if full or self._reported_calls.get(name) != (calls, counts.in_flight):
                services[name] = counts.as_list()
                self._reported_calls[name] = (calls, counts.in_flight)
        report = {
            'bounds': list(self.bounds),
            'services': services,
            'responses': {STATUS_CLASSES[index - 1]: count for index, count in enumerate(self.responses)
                          if count and index},
            'caches': {name: counts.as_list() for name, counts in self.caches.items()},
            'dump_failures': self.dump_failures,
        }
        for name, read in self.sources:
            try:
                report[name] = read()
            except Exception:  # a figure is worth less than the report
                pass
        return report
