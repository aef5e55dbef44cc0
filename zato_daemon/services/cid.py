"""Correlation ids: unique per call across workers and restarts, and cheap to make.

A random per-process prefix plus a counter costs one string format per call; uuid4
would cost a urandom read each time.
"""

import itertools
import os


class CidGenerator:
    """Makes cids like 'zd5f0c2a91b7e3000000002a'. Create one per process, after fork."""

    def __init__(self):
        self._prefix = 'zd' + os.urandom(6).hex()
        self._counter = itertools.count(1)

    def __call__(self):
        return f'{self._prefix}{next(self._counter):010x}'
