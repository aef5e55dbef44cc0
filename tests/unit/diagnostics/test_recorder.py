"""What the recorder keeps of a finished call: slow by which threshold, sampled when."""

import types

from zato_daemon.diagnostics.recorder import CallRecorder
from zato_daemon.http.router import Outcome
from zato_daemon.services.base import Response
from zato_daemon.services.registry import ServiceStore

SERVICE = 'from zato_daemon import Service\nclass S(Service):\n    name = "s"\n    slow_threshold = {ms}\n'


class Store:
    def __init__(self):
        self.slow, self.samples = [], []

    def record_slow(self, call):
        self.slow.append(call)

    def record_sample(self, call):
        self.samples.append(call)


def recorder(services, overrides=None, interval=0):
    settings = types.SimpleNamespace(sample_interval=interval, slow_threshold=2000)
    return CallRecorder(Store(), settings, overrides or {}, services, 1)


def test_threshold_follows_a_redeploy_and_the_config_wins(tmp_path):
    services = ServiceStore()
    path = tmp_path / 's.py'
    path.write_text(SERVICE.format(ms=100))
    services.deploy_file(path)
    subject = recorder(services)
    assert subject.threshold_of('s') == 100
    path.write_text(SERVICE.format(ms=700))
    services.deploy_file(path)
    assert subject.threshold_of('s') == 700
    assert subject.threshold_of('unknown') == 2000
    assert recorder(services, {'s': 50}).threshold_of('s') == 50


def test_a_slow_call_is_stored_with_its_payloads_unrendered_until_written(tmp_path):
    services = ServiceStore()
    (tmp_path / 's.py').write_text(SERVICE.format(ms=100))
    services.deploy_file(tmp_path / 's.py')
    subject = recorder(services, interval=60_000)  # ms: the second call falls within it
    response = Response()
    response.payload = {'token': 'secret'}
    subject.after_call('s', 'cid1', 10.0, 10.05, {'a': 1}, Outcome(200, b'', response=response))
    assert subject.store.slow == [] and len(subject.store.samples) == 1
    subject.after_call('s', 'cid2', 20.0, 20.2, {'a': 2}, Outcome(200, b'', response=response))
    assert [call.cid for call in subject.store.slow] == ['cid2']
    assert subject.store.slow[0].duration_ms == 200.0
    assert subject.store.slow[0].request.value == {'a': 2}
    assert len(subject.store.samples) == 1  # within the interval of the first sample
