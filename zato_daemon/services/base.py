"""What a service author subclasses, and what a service sees while it runs.

One instance per call: a service may keep per-call state on `self` without locks.
"""

import logging


class Request:
    """The input of one call: `payload` is the parsed JSON body (None when empty)."""

    __slots__ = ('payload', 'headers', 'method', 'path')

    def __init__(self, payload=None, headers=None, method='POST', path=''):
        self.payload = payload
        self.headers = headers if headers is not None else {}
        self.method = method
        self.path = path


class Response:
    """The output of one call: `payload` is serialized to JSON, `status_code` is the HTTP status."""

    __slots__ = ('payload', 'status_code', 'headers')

    def __init__(self):
        self.payload = None
        self.status_code = 200
        self.headers = {}


class Service:
    """Base class of every service.

    Subclasses set `name` (unique in the server) and implement `handle()`, reading
    `self.request.payload` and setting `self.response.payload`. Available while
    `handle()` runs: `self.cid` (this call's correlation id, also returned to HTTP
    clients in X-Zato-CID), `self.logger`, `self.server` and `self.invoke()`.
    """

    name = None

    # Set by the server before handle(): assigning on the instance is cheaper than
    # passing through __init__, and keeps subclasses free to define their own.
    cid = None
    request = None
    response = None
    server = None

    @classmethod
    def get_logger(cls):
        """The logger of this service class, named after the service."""
        logger = cls.__dict__.get('_logger')
        if logger is None:
            logger = logging.getLogger(f'zato_daemon.service.{cls.name}')
            cls._logger = logger
        return logger

    @property
    def logger(self):
        return self.get_logger()

    @property
    def cache(self):
        """The server's default cache (see zato.cache.builtin.create's is_default)."""
        return self.server.caches.default

    @property
    def caches(self):
        """Every cache by name: `self.caches['my.cache']`."""
        return self.server.caches

    def handle(self):
        """Does the work of one call. Subclasses must implement it."""
        raise NotImplementedError(f'service {self.name!r} does not implement handle()')

    def invoke(self, name, payload=None):
        """Calls another service in this process with the same cid; returns its response payload."""
        return self.server.invoke(name, payload, cid=self.cid)
