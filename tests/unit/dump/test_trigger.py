"""SIGURG -> one dump from a dedicated thread: while a greenlet spins, while logging is locked, in a storm."""

import _thread
import logging
import os
import signal
import threading
import time

import gevent
import pytest

from zato_daemon.dump.collect import collect, os_thread_ident
from zato_daemon.dump.render import render_text
from zato_daemon.dump.sink import write_text_to_fd
from zato_daemon.dump.trigger import DEFAULT_QUIET_PERIOD, DumpTrigger
from zato_daemon.redaction import REDACTED


def start_with_threading(function):
    threading.Thread(target=function, name='zato-dump', daemon=True).start()


def start_raw(function):
    # What a worker passes: gevent's original start_new_thread, i.e. _thread's.
    _thread.start_new_thread(function, ())


def wait_for(predicate, timeout=10.0):
    """Polls until `predicate()` is true; False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class Recorder:
    """An on_dump that collects and renders a real dump, and tracks how many run at once."""

    def __init__(self, tmp_path, on_text=None, gate=None):
        self.tmp_path = tmp_path
        self.on_text = on_text
        self.gate = gate
        self.entered = 0
        self.texts = []
        self.main_thread_ident = os_thread_ident()  # made in the main thread, as install_dump does
        self._running = 0
        self.max_running = 0
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            self._running += 1
            self.max_running = max(self.max_running, self._running)
        self.entered += 1
        try:
            if self.gate is not None:
                assert self.gate.wait(10)
            text = render_text(collect(self.main_thread_ident, 'worker', self.tmp_path))
            # on_text first: tests wait for `texts` and then read what on_text wrote.
            if self.on_text:
                self.on_text(text)
            self.texts.append(text)
        finally:
            with self._lock:
                self._running -= 1


@pytest.fixture
def make_trigger(tmp_path):
    """Builds installed triggers around a Recorder; uninstalls them after the test."""
    triggers = []

    def make(start_thread=start_with_threading, on_text=None, gate=None, **options):
        recorder = Recorder(tmp_path, on_text, gate)
        trigger = DumpTrigger(recorder, start_thread, **options)
        trigger.install()
        triggers.append(trigger)
        return trigger, recorder

    previous = signal.getsignal(signal.SIGURG)
    yield make
    for trigger in triggers:
        assert trigger.uninstall()
    assert signal.getsignal(signal.SIGURG) == previous


class SpinState:
    stop = False


def spin(state):
    counter = 0
    password = 's3cret'
    os.kill(os.getpid(), signal.SIGURG)
    deadline = time.monotonic() + 10
    while not state.stop:
        counter += 1
        if counter % 100_000 == 0 and time.monotonic() > deadline:
            break
    return counter, password


@pytest.mark.parametrize('start_thread', [start_with_threading, start_raw])
def test_a_spinning_greenlet_is_dumped_with_its_frame_line_and_locals(make_trigger, start_thread):
    state = SpinState()
    trigger, recorder = make_trigger(start_thread, on_text=lambda text: setattr(state, 'stop', True))
    spinner = gevent.spawn(spin, state)
    spinner.join(20)
    assert spinner.dead and spinner.successful()
    assert len(recorder.texts) == 1, 'the dump thread did not dump while the greenlet spun'
    text = recorder.texts[0]
    main = text[text.index('--- Thread MainThread'):text.index('--- Thread', text.index('--- Thread MainThread') + 1)]
    assert '", line ' in main and ', in spin\n' in main
    spin_frame = main[main.index(', in spin\n'):]
    assert 'counter=' in spin_frame and f'password={REDACTED}' in spin_frame
    assert spin_frame.split('\n')[1].strip() in ('while not state.stop:', 'counter += 1',
                                                 'if counter % 100_000 == 0 and time.monotonic() > deadline:',
                                                 'os.kill(os.getpid(), signal.SIGURG)')
    assert 's3cret' not in text


def spin_for(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def test_the_interrupted_code_not_the_signal_handler_is_the_main_threads_innermost_frame(tmp_path):
    # Without the wait for the handler, about half of these dumps caught the main thread in
    # the handler's os.write: what a hung worker's blocking summary then named.
    main_thread_ident, innermost = os_thread_ident(), []

    def on_dump():
        main, = [thread for thread in collect(main_thread_ident, 'worker', tmp_path).threads if thread.is_main]
        innermost.append(main.frames[-1].function)

    trigger = DumpTrigger(on_dump, start_raw, quiet_period=0)
    trigger.install()
    try:
        for count in range(1, 21):
            os.kill(os.getpid(), signal.SIGURG)
            while len(innermost) < count:
                spin_for(0.01)
    finally:
        assert trigger.uninstall()
    assert innermost == ['spin_for'] * 20


def hold_logging_locks(held, release):
    locks = [logging._lock, *(handler.lock for handler in logging.getLogger().handlers if handler.lock)]
    for lock in locks:
        lock.acquire()
    held.set()
    release.wait(30)
    for lock in reversed(locks):
        lock.release()


def test_a_dump_completes_while_another_thread_holds_the_logging_locks(make_trigger, tmp_path):
    held, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_logging_locks, args=(held, release), daemon=True)
    holder.start()
    assert held.wait(10)
    try:
        log_fd = os.open(tmp_path / 'server.log', os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        trigger, recorder = make_trigger(on_text=lambda text: write_text_to_fd(log_fd, text))
        trigger.request()
        assert wait_for(lambda: recorder.texts), 'no dump while logging was locked'
        assert holder.is_alive() and not release.is_set()
    finally:
        release.set()
        holder.join(10)
        os.close(log_fd)
    assert 'in hold_logging_locks' in (tmp_path / 'server.log').read_text()


def test_a_storm_of_signals_gives_one_dump(make_trigger):
    trigger, recorder = make_trigger(quiet_period=DEFAULT_QUIET_PERIOD)
    for _ in range(100):
        os.kill(os.getpid(), signal.SIGURG)
    assert wait_for(lambda: recorder.texts)
    assert trigger.uninstall()  # finishes the requests still pending
    assert len(recorder.texts) == 1 and trigger.dumps == 1


def test_signals_pending_at_a_wake_up_make_one_dump_never_nested(make_trigger):
    # Without a quiet period, a free-running storm gives about one dump in six: each handler's
    # os.write releases the GIL and lets the dump thread in. Held inside the first dump, the
    # other 99 signals wait in the pipe and make exactly one more.
    gate = threading.Event()
    trigger, recorder = make_trigger(quiet_period=0, gate=gate)
    os.kill(os.getpid(), signal.SIGURG)
    assert wait_for(lambda: recorder.entered == 1)
    for _ in range(99):
        os.kill(os.getpid(), signal.SIGURG)
    gate.set()
    assert trigger.uninstall()
    assert len(recorder.texts) == 2 and recorder.max_running == 1


def test_requests_within_the_quiet_period_are_folded_into_the_dump(make_trigger):
    trigger, recorder = make_trigger(quiet_period=60)
    trigger.request()
    assert wait_for(lambda: recorder.texts)
    trigger.request()
    assert trigger.uninstall()
    assert len(recorder.texts) == 1


def test_without_a_quiet_period_each_later_request_dumps(make_trigger):
    trigger, recorder = make_trigger(quiet_period=0)
    for expected in (1, 2, 3):
        trigger.request()
        assert wait_for(lambda: len(recorder.texts) == expected)


def test_faulthandler_adds_its_traceback_and_the_dump_still_happens(make_trigger, tmp_path):
    path = tmp_path / 'faulthandler.log'
    with open(path, 'wb') as file:
        trigger, recorder = make_trigger(faulthandler_file=file, quiet_period=0)
        os.kill(os.getpid(), signal.SIGURG)
        assert wait_for(lambda: recorder.texts)
        assert trigger.uninstall()
        written = path.stat().st_size
        os.kill(os.getpid(), signal.SIGURG)  # after uninstall: ignored by both
    assert 'most recent call first' in path.read_text()
    assert path.stat().st_size == written and len(recorder.texts) == 1


def test_an_error_in_on_dump_goes_to_on_error_and_the_thread_goes_on():
    calls, errors = [], []

    def on_dump():
        calls.append(1)
        raise ValueError(f'sink failed {len(calls)}')

    trigger = DumpTrigger(on_dump, start_with_threading, quiet_period=0, on_error=errors.append)
    trigger.install()
    try:
        trigger.request()
        assert wait_for(lambda: len(errors) == 1)
        trigger.request()
        assert wait_for(lambda: len(errors) == 2)
    finally:
        assert trigger.uninstall()
    assert [str(error) for error in errors] == ['sink failed 1', 'sink failed 2'] and len(calls) == 2


def test_without_on_error_an_error_is_one_line_on_stderr_and_a_failing_on_error_is_survived(capfd):
    def on_dump():
        raise ValueError('no on_error')

    def on_error(error):
        raise RuntimeError('on_error is broken too')

    for handler in (None, on_error):
        trigger = DumpTrigger(on_dump, start_with_threading, quiet_period=0, on_error=handler)
        trigger.install()
        try:
            for dumps in (1, 2):
                trigger.request()
                assert wait_for(lambda: trigger.dumps == dumps), 'the dump thread died with the error'
        finally:
            assert trigger.uninstall()
    assert capfd.readouterr().err == 'zato-daemon: a dump failed: ValueError: no on_error\n' * 2


def open_fds():
    return set(os.listdir('/proc/self/fd'))


def test_install_twice_or_off_the_main_thread_fails_and_leaks_nothing(make_trigger):
    trigger, _ = make_trigger()
    with pytest.raises(RuntimeError):
        trigger.install()
    before, errors = open_fds(), []

    def install_here():
        try:
            DumpTrigger(lambda: None, start_with_threading).install()
        except ValueError as error:
            errors.append(error)

    thread = threading.Thread(target=install_here)
    thread.start()
    thread.join()
    assert errors and open_fds() == before


def test_discard_after_fork_closes_the_inherited_pipe():
    before = open_fds()
    trigger = DumpTrigger(lambda: None, start_thread=lambda function: None)  # as in a child: no dump thread
    trigger.install()
    try:
        assert len(open_fds() - before) == 2
        trigger.discard_after_fork()
        trigger.handle_signal(signal.SIGURG, None)  # the inherited handler is now a no-op
        assert open_fds() == before and not trigger.is_installed
    finally:
        signal.signal(signal.SIGURG, signal.SIG_DFL)
