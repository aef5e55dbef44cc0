"""A cluster of servers sharing one Redis (issue 18), one module per concern:

- `urls.py`: what a `[cluster] redis_url` may be, and how it is shown (redacted); pure.
- `settings.py`: `[cluster]` of a loaded configuration, the password file read; no Redis.
- `connection.py`: the only module that imports redis-py; the client and the back-off.
- `membership.py`: this member's record and the master's heartbeat thread.
- `view.py`: what `zato-daemon cluster DIR` reads and decides (same services, same hashes?).

A server whose redis_url is empty never imports connection.py, hence never redis.
Later parts (cluster deploy, the cluster cache, cluster diagnostics) add modules here.
"""
