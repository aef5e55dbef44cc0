"""Metrics: what every worker counts, and how the master keeps the truth across workers.

Theory of operation. A worker counts on the request path with plain increments
(counting.py) and, off it, sends its cumulative counts to the master once a second on a pipe
of its own (report.py). The master keeps, per live worker, the last counts it heard, and
folds them into the totals of the workers gone once the worker exits (aggregate.py); a
total is therefore the gone workers' counts plus the live ones', and never goes backwards
while the master runs, whichever way a worker ends. A worker killed with SIGKILL loses what
it counted since its last report: at most REPORT_INTERVAL seconds. The master serves the
totals in the Prometheus format from a listener of its own (endpoint.py, exposition.py) and
publishes a per-second view for `zato-daemon top` (live.py) that the admin socket serves.
"""
