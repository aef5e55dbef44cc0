"""After each call through a channel: is it slow, is it a sample? If so, store it.

Runs in a worker, on the request path: the decisions are O(1) and nothing is rendered
unless a call is really stored; the store itself writes in the background (store.py).
"""

import logging

from zato_daemon.diagnostics.store import DATABASE_NAME, Call, DiagnosticsStore, Sampler, describe_error, render_payload
from zato_daemon.logs.levels import SLOW_RESPONSE

logger = logging.getLogger('zato_daemon.diagnostics')

# Stored request and response texts are capped at this many characters each.
PAYLOAD_LIMIT = 4096


class CallRecorder:
    """Decides what to keep of a finished call and hands it to the store."""

    def __init__(self, store, diagnostics_config, slow_thresholds, services, worker_number,
                 samples_on=True, slow_on=True):
        self.store = store
        self.samples_on = samples_on
        self.slow_on = slow_on
        self.sampler = Sampler(diagnostics_config.sample_rate)
        self.default_threshold = diagnostics_config.slow_threshold
        self.thresholds = dict(slow_thresholds)
        self.services = services
        self.worker_number = worker_number

    def threshold_of(self, name):
        """[slow_thresholds] first, then the service class's slow_threshold, then the default."""
        threshold = self.thresholds.get(name)
        if threshold is None:
            deployed = self.services.services.get(name)
            threshold = getattr(deployed.service_class, 'slow_threshold', None) if deployed else None
        return threshold or self.default_threshold

    def after_call(self, name, cid, started_at, duration_ms, status, payload, response, failure):
        """Stores the call if it was slow or is due as a sample (a failed call always is)."""
        is_slow = self.slow_on and duration_ms > self.threshold_of(name)
        is_sample = self.samples_on and (failure is not None or status >= 500 or self.sampler.is_due(name))
        if not (is_slow or is_sample):
            return
        call = Call(cid, name, self.worker_number, started_at, round(duration_ms, 3), status,
                    render_payload(payload, PAYLOAD_LIMIT),
                    render_payload(response.payload, PAYLOAD_LIMIT) if response is not None else None,
                    describe_error(failure) if failure is not None else None)
        if is_slow:
            self.store.record_slow(call)
            logger.warning('Service %s took %.0f ms, over its slow threshold of %d ms; stored',
                           name, duration_ms, self.threshold_of(name),
                           extra=dict(SLOW_RESPONSE.extra, cid=cid, service=name))
        if is_sample:
            self.store.record_sample(call)


def database_path(config, server_dir):
    """Where the diagnostics database is: [diagnostics] database, or the state directory."""
    return config.resolve_path(config.server_config.diagnostics.database) or server_dir.state / DATABASE_NAME


def make_recorder(config, server_dir, services, worker_number):
    """The worker's CallRecorder, or None when samples and slow responses are both off."""
    enabled = config.server_config.component_enabled
    if not (enabled.samples or enabled.slow_responses):
        return None
    settings = config.server_config.diagnostics
    store = DiagnosticsStore(database_path(config, server_dir), settings.slow_keep, settings.samples_keep,
                             max_db_bytes=settings.max_size)
    return CallRecorder(store, settings, config.server_config.slow_thresholds, services, worker_number,
                        samples_on=enabled.samples, slow_on=enabled.slow_responses)
