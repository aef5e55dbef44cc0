"""The per-second view `zato-daemon top` shows: rates and percentiles over the last interval.

Pure: two aggregate.View taken `interval` seconds apart in, one JSON-ready dict out. The
percentiles are estimated from the histogram's buckets as Prometheus' histogram_quantile
does: linear within the bucket the rank falls in, and the highest finite bound when it
falls in the +Inf bucket.
"""

from collections import Counter

from zato_daemon.metrics.aggregate import INF, rebucket

SNAPSHOT_VERSION = 1


def quantile(q, cumulative):
    """The q-quantile (0 < q < 1) from [(le, cumulative count)...] ending with +Inf; None without data."""
    total = cumulative[-1][1] if cumulative else 0
    if not total:
        return None
    rank = q * total
    lower, below = 0.0, 0
    for le, count in cumulative:
        if count >= rank and count > below:
            if le == INF:
                return lower
            return lower + (le - lower) * (rank - below) / (count - below)
        if le != INF:
            lower = le
        below = count
    return lower


def _rate(now, before, seconds):
    return round((now - before) / seconds, 3) if seconds > 0 else 0.0


def service_rows(previous, current, bounds, seconds):
    """One row per service, busiest first: calls and errors per second, the error rate, p50 and
    p99 of the calls that ended in the interval, in flight now, and the totals."""
    rows = []
    for name, total in current.services.items():
        before = previous.services.get(name) if previous is not None else None
        calls_before = before.calls if before is not None else 0
        errors_before = sum(before.outcomes[1:]) if before is not None else 0
        buckets = Counter(total.buckets)
        if before is not None:
            buckets.subtract(before.buckets)
        cumulative = rebucket(+buckets, bounds)
        calls, errors = total.calls - calls_before, sum(total.outcomes[1:]) - errors_before
        p50, p99 = quantile(0.5, cumulative), quantile(0.99, cumulative)
        rows.append({
            'service': name,
            'calls_per_second': _rate(total.calls, calls_before, seconds),
            'errors_per_second': _rate(sum(total.outcomes[1:]), errors_before, seconds),
            'error_rate': round(errors / calls, 4) if calls > 0 else None,
            'p50_seconds': None if p50 is None else round(p50, 6),
            'p99_seconds': None if p99 is None else round(p99, 6),
            'in_flight': total.in_flight,
            'calls_total': total.calls,
            'errors_total': sum(total.outcomes[1:]),
        })
    rows.sort(key=lambda row: (-row['calls_per_second'], -row['in_flight'], row['service']))
    return rows


def worker_rows(workers, processes, per_worker):
    """One row per worker process: `workers` are (number, generation, pid, state) of the
    lifecycle, `processes` pid -> processes.ProcessFigures, `per_worker` pid -> (requests, in flight)."""
    rows = []
    for number, generation, pid, state in sorted(workers):
        figures = processes.get(pid)
        requests, in_flight = per_worker.get(pid, (0, 0))
        rows.append({'number': number, 'generation': generation, 'pid': pid, 'state': state,
                     'rss_bytes': figures.rss if figures else None,
                     'cpu_seconds': figures.cpu_seconds if figures else None,
                     'open_fds': figures.fds if figures else None,
                     'requests': requests, 'in_flight': in_flight})
    return rows


def snapshot(previous, current, bounds, seconds, workers, processes, taken_at):
    """What `top` shows, for the interval of `seconds` that ended at `taken_at` (wall clock)."""
    services = service_rows(previous.totals if previous is not None else None, current.totals, bounds, seconds)
    return {
        'version': SNAPSHOT_VERSION,
        'time': taken_at,
        'interval_seconds': round(seconds, 3),
        'services': services,
        'workers': worker_rows(workers, processes, current.per_worker),
        'totals': {
            'calls_per_second': round(sum(row['calls_per_second'] for row in services), 3),
            'in_flight': current.totals.in_flight,
            'workers_alive': len(workers),
            'restarts': dict(current.master.restarts),
        },
    }
