"""The service call each greenlet serves (dump/calls.py): the locals of its ServiceHost.run frame."""

import threading
import time

import gevent
import gevent.event
import pytest

from tests.conftest import REPO_ROOT
from zato_daemon.config import load_config
from zato_daemon.dump.calls import CALL_CODE_IDS, CALL_LOCALS, call_in
from zato_daemon.dump.collect import collect, os_thread_ident
from zato_daemon.dump.record import blocking_summary, to_record
from zato_daemon.paths import ServerDir
from zato_daemon.services import Service
from zato_daemon.services.host import ServiceHost

INNER_WAITS = gevent.event.Event()
OUTER_WAITS = gevent.event.Event()


class Outer(Service):
    name = 'test.outer'

    def handle(self):
        self.server.invoke('test.inner', cid='inner-cid')
        OUTER_WAITS.wait(30)


class Inner(Service):
    name = 'test.inner'

    def handle(self):
        INNER_WAITS.wait(30)


RELEASE = gevent.event.Event()


class Waiting(Service):
    name = 'test.waiting'

    def handle(self):
        RELEASE.wait(30)


SPIN = {'stop': False}


class Spinning(Service):
    name = 'test.spinning'

    def handle(self):
        deadline = time.monotonic() + 30
        while not SPIN['stop'] and time.monotonic() < deadline:
            pass


@pytest.fixture
def host(tmp_path):
    config = load_config(REPO_ROOT / 'etc' / 'zato-daemon')
    host = ServiceHost(config, ServerDir(tmp_path).resolve(config))
    host.store.deploy_classes([Outer, Inner, Waiting, Spinning], 'tests')
    return host


def call_seen(greenlet):
    dump = collect(os_thread_ident(), 'worker-1', '/srv/test')
    info = next(item for item in dump.greenlets if item.address == id(greenlet))
    return info.call[:2] if info.call else None


def test_a_nested_invoke_shows_its_own_call_then_its_callers_again(host):
    INNER_WAITS.clear()
    OUTER_WAITS.clear()
    serving = gevent.spawn(host.call, 'test.outer', cid='outer-cid')
    try:
        gevent.sleep(0.01)
        assert call_seen(serving) == ('inner-cid', 'test.inner')
        INNER_WAITS.set()
        gevent.sleep(0.01)
        assert call_seen(serving) == ('outer-cid', 'test.outer')
    finally:
        INNER_WAITS.set()
        OUTER_WAITS.set()
        serving.join(5)


def test_a_frame_of_a_call_is_read_only_when_its_locals_are_plain_values():
    assert call_in({'cid': 'c', 'name': 's', 'started': 1.0, 'request': object()}) == ('c', 's', 1.0)
    assert call_in({'cid': 'c', 'name': 's'}) is None  # before `started` is set
    assert call_in({'cid': 'c', 'name': b's', 'started': 1.0}) is None
    assert call_in(None) is None


def test_run_is_the_registered_call_frame_and_sets_the_locals_a_dump_reads():
    assert id(ServiceHost.run.__code__) in CALL_CODE_IDS
    assert set(CALL_LOCALS) <= set(ServiceHost.run.__code__.co_varnames)


def test_a_dump_shows_each_call_in_flight_in_its_greenlet(host):
    RELEASE.clear()
    before = time.time()
    serving = gevent.spawn(host.call, 'test.waiting', cid='waiting-cid')
    gevent.sleep(0.01)
    try:
        record = to_record(collect(os_thread_ident(), 'worker-1', '/srv/test'))
    finally:
        RELEASE.set()
        serving.join(5)
    greenlet = next(item for item in record['greenlets'] if item['address'] == id(serving))
    assert greenlet['call']['cid'] == 'waiting-cid' and greenlet['call']['service'] == 'test.waiting'
    assert before <= greenlet['call']['started'] <= record['time']
    assert greenlet['call']['age'] == pytest.approx(record['time'] - greenlet['call']['started'], abs=1e-6)
    assert [(call['cid'], call['greenlet']) for call in record['calls']] == [('waiting-cid', id(serving))]


def test_a_hung_worker_summary_names_the_call_its_main_thread_runs(host):
    # The main thread runs a greenlet that spins inside a service; another OS thread dumps,
    # as the dump thread of a hung worker does.
    main_ident = os_thread_ident()
    dumped = {}

    def dump_when_spinning():
        time.sleep(0.2)
        dumped['dump'] = collect(main_ident, 'worker-1', '/srv/test')
        SPIN['stop'] = True

    SPIN['stop'] = False
    gevent.get_hub()  # the main thread's hub, as in a worker
    dumper = threading.Thread(target=dump_when_spinning)
    dumper.start()
    spinner = gevent.spawn(host.call, 'test.spinning', cid='spin-cid')
    spinner.join(30)
    dumper.join(30)
    dump = dumped['dump']
    main = next(thread for thread in dump.threads if thread.is_main)
    assert main.running_greenlet == id(spinner)
    summary = blocking_summary(dump)
    assert summary.startswith('service test.spinning cid spin-cid at ')
    assert summary.endswith(' in Spinning.handle')
    assert __file__ in summary


def test_a_worker_whose_main_thread_runs_the_hub_has_no_blocking_summary(host):
    main_ident = os_thread_ident()
    dumped = {}

    def dump_while_idle():
        time.sleep(0.1)
        dumped['dump'] = collect(main_ident, 'worker-1', '/srv/test')

    dumper = threading.Thread(target=dump_while_idle)
    dumper.start()
    gevent.sleep(0.5)  # the hub runs meanwhile, waiting in its loop
    dumper.join(30)
    dump = dumped['dump']
    main = next(thread for thread in dump.threads if thread.is_main)
    hub = next(greenlet for greenlet in dump.greenlets if greenlet.is_hub)
    assert main.running_greenlet == hub.address
    assert blocking_summary(dump) is None
