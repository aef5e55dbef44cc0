"""Threads, greenlets and values read into plain data without running any of their code."""

import collections
import contextlib
import gc
import json
import os
import subprocess
import sys
import threading
import time

import gevent
import greenlet
import pytest

from tests.conftest import REPO_ROOT
from zato_daemon.dump import collect as collect_module
from zato_daemon.dump.collect import (CLASS_BODY_NOTE, DEAD, NOT_STARTED, RUNNING, SUSPENDED, Limits, collect,
                                      os_thread_ident, render_value)
from zato_daemon.dump.render import render_text
from zato_daemon.redaction import REDACTED


class RaisingRepr:
    def __repr__(self):
        raise RuntimeError('repr raised')


class BlockingRepr:
    """A repr that waits (for 30 s, not forever: a failing test should still end)."""

    def __init__(self):
        self.called = threading.Event()

    def __repr__(self):
        self.called.set()
        threading.Event().wait(30)
        return 'blocked'


class AttributeTrap:
    """Records any attribute lookup: isinstance() would look up __class__ here."""

    touched = []

    def __getattribute__(self, name):
        AttributeTrap.touched.append(name)
        threading.Event().wait(30)
        return object.__getattribute__(self, name)


def wait_in_thread(started, release, db_password):
    rows = [1, 2, 3]
    started.set()
    release.wait(30)
    return rows


def hold_bad_values(started, release, blocking):
    raising = RaisingRepr()
    trap = AttributeTrap()
    huge_text = 'x' * 10_000_000
    many = list(range(1_000_000))
    nested = {'password': 's3cret', 'rows': [huge_text, many], 'trap': trap}
    started.set()
    release.wait(30)
    return raising, nested, blocking


def park(label):
    """Greenlet body: two nested frames with locals, then back to the parent."""
    buffer = bytearray(16)
    return wait_here(label, buffer)


def wait_here(label, buffer):
    note = f'parked {label}'
    greenlet.getcurrent().parent.switch()
    return note


@contextlib.contextmanager
def thread_waiting_in(target, *args, **options):
    """A thread running target(*args, started, release) until the block ends; yields it."""
    started, release = threading.Event(), threading.Event()
    thread = threading.Thread(target=target, args=(*args, started, release), daemon=True, **options)
    thread.start()
    assert started.wait(10)
    try:
        yield thread
    finally:
        release.set()
        thread.join(10)


@pytest.fixture
def running_thread():
    """Starts a thread in wait_in_thread; yields it."""
    started, release = threading.Event(), threading.Event()
    thread = threading.Thread(target=wait_in_thread, args=(started, release, 'pw1'), name='dump-test-waiter',
                              daemon=True)
    thread.start()
    assert started.wait(10)
    yield thread
    release.set()
    thread.join(10)


@pytest.fixture
def parked():
    """Three greenlets suspended in the same two frames."""
    greenlets = [greenlet.greenlet(park) for _ in range(3)]
    for index, parked_greenlet in enumerate(greenlets):
        parked_greenlet.switch(index)
    yield greenlets
    for parked_greenlet in greenlets:
        parked_greenlet.throw(greenlet.GreenletExit)


def by_address(dump, obj):
    return next(info for info in dump.greenlets if info.address == id(obj))


def test_os_thread_ident_is_the_key_of_sys_current_frames():
    idents = {}
    thread = threading.Thread(target=lambda: idents.update(helper=(os_thread_ident(), threading.get_ident())))
    thread.start()
    thread.join()
    assert os_thread_ident() == threading.get_ident()  # unpatched here; under patch_all they differ
    assert idents['helper'][0] == idents['helper'][1]


def test_threads_have_names_ids_flags_and_stacks(running_thread, tmp_path):
    dump = collect(os_thread_ident(), 'worker', tmp_path)
    main = dump.threads[0]
    assert main.is_main and main.is_current and main.name == 'MainThread' and main.frames == ()
    waiter = next(thread for thread in dump.threads if thread.name == 'dump-test-waiter')
    assert (waiter.ident, waiter.native_id, waiter.daemon) == (running_thread.ident, running_thread.native_id, True)
    frame = next(frame for frame in waiter.frames if frame.function == 'wait_in_thread')
    assert frame.source_line == 'release.wait(30)'
    assert dict(frame.arguments)['db_password'] == REDACTED
    assert dict(frame.locals)['rows'] == '[1, 2, 3]'
    assert dump.counts['threads'] == len(dump.threads) and dump.pid and dump.role == 'worker'


def test_the_main_thread_is_the_one_named_by_the_caller(tmp_path):
    main_ident = os_thread_ident()
    dumps = []
    thread = threading.Thread(target=lambda: dumps.append(collect(main_ident, 'master', tmp_path)), name='dumper')
    thread.start()
    thread.join()
    main = next(thread for thread in dumps[0].threads if thread.ident == main_ident)
    dumper = next(thread for thread in dumps[0].threads if thread.is_current)
    assert main.is_main and main.name == 'MainThread' and not main.is_current
    assert any(frame.function == 'test_the_main_thread_is_the_one_named_by_the_caller' for frame in main.frames)
    assert dumper.name == 'dumper' and dumper.frames == ()


def test_greenlet_states_and_what_they_run(parked, tmp_path):
    not_started = greenlet.greenlet(park)
    finished = greenlet.greenlet(lambda: None)
    finished.switch()
    dump = collect(os_thread_ident(), 'worker', tmp_path)
    assert by_address(dump, not_started).state == NOT_STARTED
    assert by_address(dump, not_started).runs == f'{__name__}.park'
    assert by_address(dump, finished).state == DEAD
    suspended = by_address(dump, parked[0])
    assert suspended.state == SUSPENDED and suspended.runs == f'{__name__}.park' and suspended.spawned_at is None
    assert [frame.function for frame in suspended.frames] == ['park', 'wait_here']
    current = by_address(dump, greenlet.getcurrent())
    assert current.state == RUNNING and current.is_main and current.frames == ()


def test_a_stack_seen_before_keeps_only_the_first_greenlets_variables(parked, tmp_path):
    dump = collect(os_thread_ident(), 'worker', tmp_path)
    infos = [by_address(dump, parked_greenlet) for parked_greenlet in parked]
    with_variables = [info for info in infos if info.frames[-1].locals is not None]
    assert len(with_variables) == 1
    assert dict(with_variables[0].frames[-1].locals)['note'].startswith("'parked ")
    assert len({tuple((frame.file, frame.line) for frame in info.frames) for info in infos}) == 1


def sleep_in_gevent(argument):
    deadline = 30
    gevent.sleep(deadline)
    return argument


def test_gevent_greenlet_shows_its_function_and_spawn_site_without_repr(tmp_path):
    argument = BlockingRepr()  # gevent's Greenlet.name and repr() would format it
    spawned = gevent.spawn(sleep_in_gevent, argument)
    gevent.sleep(0)
    try:
        dump = collect(os_thread_ident(), 'worker', tmp_path)
    finally:
        spawned.kill()
    info = by_address(dump, spawned)
    assert info.state == SUSPENDED and info.runs == f'{__name__}.sleep_in_gevent'
    assert info.spawned_at[-1].function == 'test_gevent_greenlet_shows_its_function_and_spawn_site_without_repr'
    assert 'gevent.spawn(sleep_in_gevent, argument)' in info.spawned_at[-1].source_line
    assert any(frame.function == 'sleep_in_gevent' for frame in info.frames)
    assert not argument.called.is_set()


def test_greenlets_can_be_left_out(parked, tmp_path):
    assert collect(os_thread_ident(), 'worker', tmp_path, include_greenlets=False).greenlets == ()


def test_bad_values_neither_break_nor_stall_the_dump(tmp_path):
    started, release, blocking = threading.Event(), threading.Event(), BlockingRepr()
    AttributeTrap.touched.clear()
    thread = threading.Thread(target=hold_bad_values, args=(started, release, blocking), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        began = time.monotonic()
        dump = collect(os_thread_ident(), 'worker', tmp_path)
        text = render_text(dump)
        elapsed = time.monotonic() - began
    finally:
        release.set()
        thread.join(10)
    frame = next(frame for thread in dump.threads for frame in thread.frames if frame.function == 'hold_bad_values')
    variables = dict(frame.arguments + frame.locals)
    assert variables['raising'].startswith(f'<{__name__}.RaisingRepr at 0x')
    assert variables['huge_text'].endswith('... (9999800 more characters)')
    assert variables['many'].startswith('[0, 1, 2,') and variables['many'].endswith('more)]')
    assert variables['trap'].startswith(f'<{__name__}.AttributeTrap at 0x')
    assert "'password': ******" in variables['nested'] and 's3cret' not in text
    assert not blocking.called.is_set() and AttributeTrap.touched == []
    assert elapsed < 2 and len(text.encode()) < 200_000


def deep(depth, started, release):
    if depth:
        return deep(depth - 1, started, release)
    started.set()
    release.wait(30)


def test_a_deep_stack_keeps_its_innermost_frames(tmp_path):
    with thread_waiting_in(deep, 200) as thread:
        dump = collect(os_thread_ident(), 'worker', tmp_path, limits=Limits(max_frames=10))
    info = next(info for info in dump.threads if info.ident == thread.ident)
    assert len(info.frames) == 10 and info.frames[-1].function == 'Condition.wait'  # innermost: threading's
    assert info.frames_cut > 190 and info.frames[0].function == 'deep'


def many_locals(started, release):
    first, second, third = 1, 2, 3
    started.set()
    release.wait(30)
    return first + second + third


def test_variables_per_frame_are_capped(tmp_path):
    with thread_waiting_in(many_locals):
        dump = collect(os_thread_ident(), 'worker', tmp_path, limits=Limits(max_variables=3))
    frame = next(frame for info in dump.threads for frame in info.frames if frame.function == 'many_locals')
    assert frame.arguments == (('started', frame.arguments[0][1]), ('release', frame.arguments[1][1]))
    assert frame.locals == (('first', '1'),) and frame.variables_cut == 2


Point = collections.namedtuple('Point', 'x y')


class Tag(str):
    def __repr__(self):
        raise AssertionError('never called')


@pytest.mark.parametrize('value, expected', [
    (None, 'None'), (True, 'True'), (1.5, '1.5'), (-7, '-7'), ('it', "'it'"), (b'\x00a', "b'\\x00a'"),
    ((1,), '(1,)'), ([], '[]'), (set(), 'set()'), (frozenset([1]), 'frozenset({1})'), (range(3), 'range(0, 3)'),
    ([1, [2, [3, [4]]]], '[1, [2, [3, [... (1 items)]]]]'),
    ({'user': 'u', 'api_key': 'k', 'rows': {'token': 't'}},
     "{'user': 'u', 'api_key': ******, 'rows': {'token': ******}}"),
    (10 ** 100, '<int of 333 bits>'), (ValueError('bad', 2), "ValueError('bad', 2)"),
    (collections.OrderedDict(a=1), "collections.OrderedDict({'a': 1})"),
    (Point(1, 2), f'{__name__}.Point((1, 2))'), (len, '<function len>'), (park, f'<function {__name__}.park>'),
    (int, '<class int>'), (sys, "<module 'sys'>"),
])
def test_render_value_shows_builtin_types_like_repr(value, expected):
    assert render_value(value) == expected


def test_render_value_shows_other_objects_by_type_and_address():
    tag = Tag('x')
    assert render_value(tag) == f'<{__name__}.Tag at {id(tag):#x}>'
    assert render_value(RaisingRepr()).startswith(f'<{__name__}.RaisingRepr at 0x')


def test_render_value_is_bounded():
    limits = Limits(max_string=10, max_items=3, max_value=60)
    assert render_value('y' * 1000, limits) == "'yyyyyyyyyy'... (990 more characters)"
    assert render_value(list(range(10 ** 6)), limits) == '[0, 1, 2, ... (999997 more)]'
    assert len(render_value([['z' * 100] * 10] * 10, limits)) < 120


def test_importing_the_dump_package_imports_no_gevent():
    code = ('import sys\n'
            'import zato_daemon.dump.trigger, zato_daemon.dump.collect, zato_daemon.dump.render\n'
            'import zato_daemon.dump.record, zato_daemon.dump.waits, zato_daemon.dump.calls\n'
            'print(sorted(name for name in sys.modules if name.split(".")[0] in ("gevent", "greenlet")))\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert result.stdout.strip() == '[]'


# ---- frames of other threads read while those threads run (collect.py, Rule 5)

@pytest.mark.parametrize('mode', ['ended', 'reused'])
def test_a_frame_that_goes_away_while_its_variables_are_read_is_shown_as_it_was(mode):
    # In a process of its own: before the fix, 'ended' was a segfault and 'reused' showed
    # other frames' values under the victim's names (tests/unit/dump/frame_race.py).
    result = subprocess.run([sys.executable, '-X', 'faulthandler', '-m', 'tests.unit.dump.frame_race', mode],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[-1] == 'survived'
    variables = json.loads(lines[-2])
    assert variables['arguments']['count'] == '7'
    assert variables['locals'] == {'doomed': 'None', 'rows': '[1, 2, 3]', 'table': "{'name': 'value'}",
                                   'pair': '(4, 5)'}


def test_no_garbage_collection_runs_while_frames_are_read(running_thread, tmp_path):
    # On 3.11 a collection inside the C code that creates a frame object or fills f_locals
    # runs finalizers there, which may let the frame's thread pop it (a segfault).
    collections_in_dump = []

    def record(phase, info):
        # The frame that allocated: the first allocation after collect() turns the collector
        # back on is its caller's.
        if phase == 'start' and sys._getframe(1).f_code.co_filename == collect_module.__file__:
            collections_in_dump.append(info['generation'])

    main_ident, thresholds = os_thread_ident(), gc.get_threshold()
    gc.callbacks.append(record)
    gc.set_threshold(1, 1, 1)  # a collection at every allocation that counts
    try:
        dump = collect(main_ident, 'worker', tmp_path)
    finally:
        gc.set_threshold(*thresholds)
        gc.callbacks.remove(record)
    assert collections_in_dump == []
    assert any(frame.function == 'wait_in_thread' for info in dump.threads for frame in info.frames)
    assert gc.isenabled()


def test_the_collector_is_left_off_when_it_was_off(tmp_path):
    gc.disable()
    try:
        collect(os_thread_ident(), 'worker', tmp_path)
        assert not gc.isenabled()
    finally:
        gc.enable()


class OnDeath:
    def __init__(self, callback):
        self.callback = callback

    def __del__(self):
        self.callback()


def hold_a_stale_value(ready, release, callback):
    doomed = OnDeath(callback)
    snapshot = locals()  # the frame's f_locals dict now holds doomed
    doomed = None        # ... and is the only holder left: the dump's f_locals drops it
    del snapshot
    ready.set()
    release.wait(30)
    return doomed


def test_a_finalizer_run_by_the_dump_does_not_break_a_tuple_being_built(tmp_path):
    # tuple(generator) fills a tracked tuple, then resizes it, which raises SystemError if
    # anything else holds it by then. The dump holds the whole heap while it reads f_locals;
    # a finalizer it causes (here: one that lets the tuple be finished) runs only once no
    # tuple is held.
    started, resume, results, deaths = threading.Event(), threading.Event(), [], []

    def items():
        yield from range(5)
        started.set()
        resume.wait(30)
        yield from range(5, 30)

    def build():
        try:
            results.append(tuple(items()))
        except BaseException as error:
            results.append(error)

    def on_death():
        deaths.append(threading.get_ident())
        resume.set()
        builder.join(30)

    builder = threading.Thread(target=build, daemon=True)
    builder.start()
    assert started.wait(10)
    ready, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_a_stale_value, args=(ready, release, on_death), daemon=True)
    holder.start()
    assert ready.wait(10)
    try:
        collect(os_thread_ident(), 'worker', tmp_path)
    finally:
        resume.set()
        release.set()
        holder.join(10)
        builder.join(10)
    assert deaths == [threading.get_ident()]  # in the dump, which collected on this thread
    assert results == [tuple(range(30))]


def enter_class_body(started, release):
    class Example:
        rows = [1, 2]
        started.set()
        release.wait(30)

        def method(self):
            return super().method()
    return Example


def test_a_class_body_with_a_class_cell_gets_a_note_instead_of_its_namespace(tmp_path):
    with thread_waiting_in(enter_class_body):
        dump = collect(os_thread_ident(), 'worker', tmp_path)
    frame = next(frame for info in dump.threads for frame in info.frames if frame.function.endswith('Example'))
    assert frame.arguments == () and frame.locals == (CLASS_BODY_NOTE,)
    assert 'the namespace of a class body' in render_text(dump)


def test_a_process_forked_while_a_dump_has_the_collector_off_gets_it_back_on():
    # A worker the master forks during its own dump must not live with gc off.
    was_collecting = collect_module._collector_off()
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0 if gc.isenabled() else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        collect_module._collector_back(was_collecting)
    assert gc.isenabled()
    assert os.waitstatus_to_exitcode(status) == 0


DUMP_SECRET = 'S3CRET-in-a-frame'


def hold_secrets(started, release):
    creds = ('alice', DUMP_SECRET)
    conn_string = f'postgresql://alice:{DUMP_SECRET}@db.example/orders'
    received = (f'POST /services/crm.get?access_token={DUMP_SECRET} HTTP/1.1\r\nAuthorization: Bearer '
                f'{DUMP_SECRET}\r\nContent-Length: 25\r\n\r\n{{"password": "{DUMP_SECRET}"}}').encode()
    target = f'/services/crm.get?password={DUMP_SECRET}'.encode()
    headers = {'host': 'x', 'cookie': f'session={DUMP_SECRET}'}
    pairs = [{'name': 'password', 'value': DUMP_SECRET}, ('api_key', DUMP_SECRET)]
    body_fragment = f'{{"user": "alice", "token": "{DUMP_SECRET}", "pad": "'.encode() + b'x' * 5000
    started.set()
    release.wait(30)
    return creds, conn_string, received, target, headers, pairs, body_fragment


def test_a_dump_shows_no_secret_in_any_shape(tmp_path):
    with thread_waiting_in(hold_secrets):
        text = render_text(collect(os_thread_ident(), 'worker', tmp_path))
    frame = text[text.index('in hold_secrets'):]
    assert DUMP_SECRET not in text
    assert f'creds={REDACTED}' in frame
    assert 'postgresql://******@db.example/orders' in frame
    assert '<HTTP request: POST /services/crm.get (query not shown), ' in frame
    assert "b'/services/crm.get?password=******'" in frame
    assert "'cookie': ******" in frame and "'host': 'x'" in frame
    assert "'name': 'password', 'value': ******" in frame and "('api_key', ******)" in frame
    assert '"user": "alice"' in frame and 'more bytes)' in frame
