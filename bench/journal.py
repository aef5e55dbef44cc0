"""Records per second into the journal: our JournalHandler against python-systemd's stock one.

Needs a running journald. Run it where one runs, as a transient unit so that journald's
rate limit (10,000 records / 30 s per unit by default) does not drop records:

    systemd-run --wait --pipe -p LogRateLimitIntervalSec=0 python3 bench/journal.py

or, on a machine whose PID 1 is not systemd, in the system tests' booted container:

    python3 bench/in_container.py bench/journal.py

Each round logs RECORDS INFO records with one argument through a logger with only the
handler under test, alternating handlers; the table gives the median of the rounds.
"""

import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from systemd.journal import JournalHandler as StockJournalHandler  # noqa: E402

from zato_daemon.logs.context import ContextFilter  # noqa: E402
from zato_daemon.logs.journal import JournalHandler  # noqa: E402

RECORDS = 20000
ROUNDS = 5


def handlers():
    ours = JournalHandler('/etc/zato-daemon', 'worker-1', 1)
    ours.addFilter(ContextFilter('worker-1'))
    return {'zato-daemon JournalHandler': ours, 'python-systemd JournalHandler': StockJournalHandler()}


def one_round(handler):
    logger = logging.getLogger(f'bench.{id(handler)}')
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    started = time.perf_counter()
    for number in range(RECORDS):
        logger.info('request %d served', number)
    return RECORDS / (time.perf_counter() - started)


def main():
    rates = {name: [] for name in handlers()}
    for _ in range(ROUNDS):
        for name, handler in handlers().items():
            rates[name].append(one_round(handler))
    ours, stock = (statistics.median(rates[name]) for name in rates)
    print(f'{RECORDS} records x {ROUNDS} rounds, median records/s')
    print('| handler | records/s |\n| --- | --- |')
    for name in rates:
        print(f'| {name} | {statistics.median(rates[name]):,.0f} |')
    print(f'ratio (ours / stock): {ours / stock:.2f}')


if __name__ == '__main__':
    main()
