"""Cache get/set latency: a local cache against a cluster cache in Redis, in-process.

    /usr/bin/python3 bench/cache_latency.py                 # 20000 calls each, gevent-patched
    /usr/bin/python3 bench/cache_latency.py --count 5000 --plain

Starts its own redis-server (Debian's, nothing saved) on a free port in a temporary
directory, then times, one call at a time, get and set of a 100-byte JSON value on:
- local: a no-sync cache (lru.Cache in memory, what a worker's per-process cache costs);
- local synced: an in-background cache, whose set also writes the SQLite change log;
- cluster tcp / cluster unix: a cache of scope cluster through RedisLink, as a worker makes
  it (cluster/cache.py, [cluster] cache_timeout 0.5), over 127.0.0.1 and the Unix socket.
Prints the median and the 99th percentile in µs per call. By default the process is
monkey-patched by gevent first, as a worker is (the Redis client then waits cooperatively);
--plain measures without it. One client, one call in flight: latency, not throughput.
"""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--count', type=int, default=20000, help='calls per operation and cache')
    parser.add_argument('--plain', action='store_true', help='no gevent patching')
    args = parser.parse_args()
    if not args.plain:
        from gevent import monkey
        monkey.patch_all()
    sys.path.insert(0, str(REPO))
    run(args.count, 'plain' if args.plain else 'gevent')


def run(count, mode):
    import shutil
    import socket
    import statistics
    import subprocess
    import tempfile
    import time

    from zato_daemon.cache import CacheDefinition, CacheRegistry
    from zato_daemon.cluster.cache import RedisLink
    from zato_daemon.config.load import load_config

    redis_server = shutil.which('redis-server')
    if redis_server is None:
        sys.exit('redis-server is not installed (apt-get install redis-server)')
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        with socket.socket() as probe:
            probe.bind(('127.0.0.1', 0))
            port = probe.getsockname()[1]
        unix = directory / 'redis.sock'
        process = subprocess.Popen([redis_server, '--port', str(port), '--bind', '127.0.0.1', '--save', '',
                                    '--appendonly', 'no', '--dir', str(directory), '--unixsocket', str(unix)],
                                   stdout=subprocess.DEVNULL)
        try:
            caches = {}
            registry = CacheRegistry(directory / 'state', boot_id='bench')
            caches['local'] = registry.create(CacheDefinition(name='local', sync_method='no-sync'))
            caches['local synced'] = registry.create(CacheDefinition(name='synced'))
            for label, url in (('cluster tcp', f'redis://127.0.0.1:{port}/0'), ('cluster unix', f'unix://{unix}')):
                server_dir = directory / label.replace(' ', '-')
                server_dir.mkdir()
                (server_dir / 'server.conf').write_text(f'[cluster]\nredis_url = {url}\nname = bench\n')
                caches[label] = RedisLink(load_config(server_dir)).cache(CacheDefinition(name='c', scope='cluster'))
            _wait_for_redis(caches['cluster tcp'], time)
            value = {'id': 12345, 'name': 'x' * 60, 'tags': ['a', 'b']}
            print(f'{count} calls each, {mode}, Python {sys.version.split()[0]}; µs per call, median / p99')
            for label, cache in caches.items():
                figures = []
                for operation in ('set', 'get'):
                    timings = []
                    for number in range(count):
                        key = f'key-{number % 1000}'
                        started = time.perf_counter()
                        if operation == 'set':
                            cache.set(key, value)
                        else:
                            cache.get(key)
                        timings.append(time.perf_counter() - started)
                    timings.sort()
                    figures.append(f'{operation} {statistics.median(timings) * 1e6:7.1f} / '
                                   f'{timings[int(len(timings) * 0.99)] * 1e6:7.1f}')
                print(f'  {label:<13} ' + '    '.join(figures))
            registry.close()
        finally:
            process.kill()
            process.wait()


def _wait_for_redis(cache, time):
    from zato_daemon.cache import CacheError
    deadline = time.monotonic() + 10
    while True:
        try:
            cache.keys()
            return
        except CacheError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


if __name__ == '__main__':
    main()
