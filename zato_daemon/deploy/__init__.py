"""Getting services into the workers: configured modules (sources.py) and pickup files
(pickup.py in the master, follower.py in each worker, manifest.py between them), every
module imported first in a disposable process (probe.py) and judged by one rule (verdict.py)."""
