"""After each call through a channel: is it slow, is it a sample? If so, store it.

Runs in a worker, on the request path: the decisions are O(1), and payloads are queued as
they are (Unrendered) and rendered, redacted, only for the calls the store really writes,
in the background (store.py).
"""

import logging
import time

from zato_daemon.diagnostics.store import Call, DiagnosticsStore, Sampler, Unrendered, describe_error
from zato_daemon.logs.levels import SLOW_RESPONSE

logger = logging.getLogger('zato_daemon.diagnostics')

class CallRecorder:
    """Decides what to keep of a finished call and hands it to the store."""

    def __init__(self, store, diagnostics_config, slow_thresholds, services, worker_number,
                 samples_on=True, slow_on=True):
        self.store = store
        self.samples_on = samples_on
        self.slow_on = slow_on
        # The router's perf_counter readings serve the sampler too: one clock call less.
        self.sampler = Sampler(diagnostics_config.sample_interval / 1000, clock=None)
        self.default_threshold = diagnostics_config.slow_threshold
        self.thresholds = dict(slow_thresholds)
        self._thresholds = {}
        self.services = services
        self.worker_number = worker_number

    def threshold_of(self, name):
        """[slow_thresholds] first, then the service class's slow_threshold, then the default.

        Cached per deployed service: a hot-deploy replaces the DeployedService object, which
        makes the cached value stale and recomputed.
        """
        deployed = self.services.services.get(name)
        cached = self._thresholds.get(name)
        if cached is not None and cached[0] is deployed:
            return cached[1]
        threshold = self.thresholds.get(name)
        if threshold is None and deployed is not None:
            threshold = getattr(deployed.service_class, 'slow_threshold', None)
        threshold = threshold or self.default_threshold
        self._thresholds[name] = (deployed, threshold)
        return threshold

    def after_call(self, name, cid, started, ended, payload, outcome):
        """Stores the call if it was slow or is due as a sample.

        `started` and `ended` are time.perf_counter() readings around the call; the wall-clock
        start is worked out only for a call that is stored. `outcome` is the router's: its
        status, the service's Response (or None) and the exception that failed the call (or None).
        """
        status, response, failure = outcome.status, outcome.response, outcome.failure
        duration_ms = (ended - started) * 1000
        is_slow = self.slow_on and duration_ms > self.threshold_of(name)
        is_sample = self.samples_on and self.sampler.is_due(name, failure is not None or status >= 500, ended)
        if not (is_slow or is_sample):
            return
        started_at = time.time() - (time.perf_counter() - started)
        call = Call(cid, name, self.worker_number, started_at, round(duration_ms, 3), status, Unrendered(payload),
                    Unrendered(response.payload) if response is not None else None,
                    describe_error(failure) if failure is not None else None)
        if is_slow:
            self.store.record_slow(call)
            logger.warning('Service %s took %.0f ms, over its slow threshold of %d ms; stored',
                           name, duration_ms, self.threshold_of(name),
                           extra=dict(SLOW_RESPONSE.extra, cid=cid, service=name))
        if is_sample:
            self.store.record_sample(call)


def make_recorder(config, server_dir, services, worker_number):
    """The worker's CallRecorder, or None when samples and slow responses are both off."""
    enabled = config.server_config.component_enabled
    if not (enabled.samples or enabled.slow_responses):
        return None
    settings = config.server_config.diagnostics
    store = DiagnosticsStore(server_dir.diagnostics_database, settings.slow_keep, settings.samples_keep,
                             max_db_bytes=settings.max_size)
    return CallRecorder(store, settings, config.server_config.slow_thresholds, services, worker_number,
                        samples_on=enabled.samples, slow_on=enabled.slow_responses)
