"""The object services know as `self.server`: runs services by name in one worker.

Runs in a worker process, after fork; it holds no sockets, so it is easy to test alone.
"""

import json
from json.encoder import c_make_encoder, encode_basestring, encode_basestring_ascii
import logging
import os
import time
from time import time as wall_clock  # one lookup less on every call than time.time

from zato_daemon.cache.definition import check_configured_scopes
from zato_daemon.cache.registry import CacheRegistry
from zato_daemon.cluster.cache import RedisLink
from zato_daemon.dump import calls
from zato_daemon.errors import EXIT_SOFTWARE, ServiceDeployError
from zato_daemon.forks import in_forked_child
from zato_daemon.logs.context import CURRENT_CALL
from zato_daemon.services.base import Request, Response
from zato_daemon.services.cid import CidGenerator
from zato_daemon.services.registry import ServiceStore

logger = logging.getLogger('zato_daemon.services')


def _end_forked_child(name):
    # See forks.py: the child of a fork made during a call must never answer it.
    logger.error('Service %s forked, and the child process %d came back from handle(); it exits '
                 'without answering, the parent answers the call', name, os.getpid())
    logging.shutdown()
    os._exit(EXIT_SOFTWARE)


class ServiceHost:
    """Deployed services plus what they may ask of the server: config, invoke, identity.

    `invoke()` is what startup callables and services use; `call()` is what channels
    use, since they need the whole response (status, headers) and not only the payload.
    """

    def __init__(self, config, server_dir, worker_number=0, boot_id=None, generation=0):
        self.config = config
        self.server_dir = server_dir
        self.worker_number = worker_number
        self.pid = os.getpid()
        self.started_at = time.time()
        self.store = ServiceStore()
        # boot_id tells a restart of the server (caches without persistence start empty)
        # from a new worker of the same server (they are kept); see cache/registry.py.
        self.caches = CacheRegistry(server_dir.state, boot_id=boot_id, generation=generation,
                                    cluster=cluster_link(config))
        self.new_cid = CidGenerator()
        self.dumps_json = _json_dumper(config.sio_config)

    @property
    def cluster_id(self):
        return self.config.server_config.main.cluster_id

    @property
    def server_config(self):
        return self.config.server_config

    def call(self, name, payload=None, cid=None, request=None):
        """Runs a service and returns its Response; exceptions from the service propagate."""
        return self.run(self.store.get(name), name, cid or self.new_cid(),
                        request if request is not None else Request(payload))

    @calls.register
    def run(self, service_class, name, cid, request):
        """Runs `service_class`, deployed as `name`, for one call; returns its Response.

        The one place a service runs: channels call it with the class they looked up.
        """
        service = service_class()
        service.cid = cid
        service.request = request
        service.response = Response()
        service.server = self
        # Every record logged while the service runs carries its cid and name.
        token = CURRENT_CALL.set((cid, name))
        # Every dump shows this frame's cid, name and `started` as the call its greenlet serves
        # (dump/calls.py): keep those three locals.
        started = wall_clock()  # noqa: F841 (read by dumps, see above)
        try:
            service.handle()
        finally:
            CURRENT_CALL.reset(token)
            if in_forked_child():
                _end_forked_child(name)
        return service.response

    def invoke(self, name, payload=None, cid=None):
        """Runs a service and returns its response payload."""
        return self.call(name, payload, cid).payload


def cluster_link(config):
    """What makes this worker's cluster caches: a RedisLink (its client made, and redis-py
    imported, on the first call on one), or None on a single host. Raises ServiceDeployError,
    which fails the worker's boot with exit 78, for a [caches] line asking for a cluster cache
    on a server without a cluster."""
    has_cluster = bool(config.server_config.cluster.redis_url)
    problem = check_configured_scopes(config.server_config.caches, has_cluster)
    if problem is not None:
        raise ServiceDeployError(f'[caches] {problem[0]}: {problem[1]}')
    return RedisLink(config) if has_cluster else None


def _json_dumper(sio_config):
    options = sio_config.json
    indent = options.indent or None
    separators = None if indent else (',', ':')
    encoder = json.JSONEncoder(sort_keys=options.sort_keys, indent=indent,
                               ensure_ascii=options.ensure_ascii, separators=separators,
                               allow_nan=False, default=_fallback)
    if indent is not None or c_make_encoder is None:
        return encoder.encode
    # JSONEncoder.encode spends most of its time in Python around the C encoder: it
    # builds a new C encoder (and a closure) on every call anyway. Building only that is
    # the same work in C; a new markers dict per call keeps the detection of circular
    # references exact, whichever thread or greenlet encodes at the same time.
    string_encoder = encode_basestring_ascii if options.ensure_ascii else encode_basestring
    sort_keys = options.sort_keys
    key_separator, item_separator = encoder.key_separator, encoder.item_separator

    def dumps(value):
        if value.__class__ is str:
            return string_encoder(value)
        return ''.join(c_make_encoder({}, _fallback, string_encoder, None, key_separator, item_separator,
                                      sort_keys, False, False)(value, 0))
    return dumps


def _fallback(value):
    # A service returning a set, a datetime, a Decimal or bytes still gets an answer, not a
    # 500. NaN and infinities are refused instead (allow_nan=False): they are not JSON.
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    return str(value)
