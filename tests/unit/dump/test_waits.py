"""What suspended greenlets wait on and hold (dump/waits.py), found in real greenlets' frames."""

import json
import subprocess
import sys
import textwrap
import threading
import time

import gevent
import gevent.event
import gevent.lock
import gevent.queue
import gevent.socket
import pytest

from tests.conftest import REPO_ROOT
from zato_daemon.dump import waits
from zato_daemon.dump.collect import collect, os_thread_ident
from zato_daemon.dump.record import to_record


def record_now():
    return to_record(collect(os_thread_ident(), 'worker-1', '/srv/test'))


def greenlet_of(record, greenlet):
    return next(item for item in record['greenlets'] if item['address'] == id(greenlet))


def object_of(record, obj):
    return next(item for item in record['objects'] if item['id'] == f'{id(obj):#x}')


@pytest.fixture
def spawned():
    greenlets = []

    def spawn(function, *args):
        greenlets.append(gevent.spawn(function, *args))
        return greenlets[-1]
    yield spawn
    gevent.killall(greenlets, timeout=5)


# ---- real greenlets

class Account:
    def __init__(self):
        self._lock = gevent.lock.Semaphore()


def take_both(first, second, both_in):
    with first._lock:
        both_in.wait()
        with second._lock:
            pass


def test_two_greenlets_deadlocked_on_two_semaphores_wait_on_each_others_and_hold_their_own(spawned):
    one, two = Account(), Account()
    both_in = gevent.event.Event()
    left = spawned(take_both, one, two, both_in)
    right = spawned(take_both, two, one, both_in)
    gevent.sleep(0.01)
    both_in.set()
    gevent.sleep(0.01)

    record = record_now()
    lock_one, lock_two = f'{id(one._lock):#x}', f'{id(two._lock):#x}'
    assert greenlet_of(record, left)['waits_on'] == {'object': lock_two, 'operation': 'acquire',
                                                     'expression': 'second._lock'}
    assert greenlet_of(record, right)['waits_on'] == {'object': lock_one, 'operation': 'acquire',
                                                      'expression': 'second._lock'}
    assert greenlet_of(record, left)['holds'] == [{'object': lock_one, 'exact': False}]
    assert greenlet_of(record, right)['holds'] == [{'object': lock_two, 'exact': False}]
    first = object_of(record, one._lock)
    assert first['kind'] == 'gevent._gevent_c_semaphore.Semaphore'
    assert first['state'] == {'locked': True, 'counter': 0, 'is_set': None, 'size': None}
    assert (first['owner'], first['owner_exact'], first['waiters']) == (id(left), False, [id(right)])
    assert sorted(first['names']) == ['first._lock', 'second._lock']
    # The same stack in both: one stack in the table.
    assert greenlet_of(record, left)['stack'] == greenlet_of(record, right)['stack']


def hold_rlock(lock, entered):
    with lock:
        entered.set()
        gevent.sleep(30)


def take_rlock(lock):
    lock.acquire()


def test_an_rlock_names_its_owner_exactly_and_its_waiter(spawned):
    lock, entered = gevent.lock.RLock(), gevent.event.Event()
    holder = spawned(hold_rlock, lock, entered)
    entered.wait(5)
    waiter = spawned(take_rlock, lock)
    gevent.sleep(0.01)

    record = record_now()
    assert greenlet_of(record, holder)['holds'] == [{'object': f'{id(lock):#x}', 'exact': True}]
    assert greenlet_of(record, waiter)['waits_on']['operation'] == 'acquire'
    assert greenlet_of(record, waiter)['holds'] == []
    entry = object_of(record, lock)
    assert (entry['owner'], entry['owner_exact'], entry['waiters']) == (id(holder), True, [id(waiter)])
    assert entry['state']['locked'] is True and entry['state']['counter'] == 1


def wait_for_event(event):
    event.wait()


def get_from(queue):
    item = queue.get()
    return item


def test_event_wait_and_queue_get_are_waits_on_those_objects(spawned):
    event, queue = gevent.event.Event(), gevent.queue.Queue()
    queue_waiter = spawned(get_from, queue)
    event_waiter = spawned(wait_for_event, event)
    gevent.sleep(0.01)

    record = record_now()
    assert greenlet_of(record, event_waiter)['waits_on'] == {'object': f'{id(event):#x}', 'operation': 'wait',
                                                             'expression': 'event'}
    assert greenlet_of(record, queue_waiter)['waits_on'] == {'object': f'{id(queue):#x}', 'operation': 'get',
                                                             'expression': 'queue'}
    assert object_of(record, queue)['state']['size'] == 0
    assert object_of(record, queue)['waiters'] == [id(queue_waiter)]
    assert object_of(record, event)['owner'] is None


class Connection:
    def __init__(self, sock):
        self.sock = sock

    def read_header(self):
        return self.sock.recv(10)


def test_a_socket_read_is_a_recv_wait_without_an_object_entry(spawned):
    ours, theirs = gevent.socket.socketpair()
    try:
        reader = spawned(Connection(ours).read_header)
        gevent.sleep(0.01)
        record = record_now()
    finally:
        ours.close()
        theirs.close()
    assert greenlet_of(record, reader)['waits_on'] == {'object': f'{id(ours):#x}', 'operation': 'recv',
                                                       'expression': 'self.sock'}
    assert all(item['id'] != f'{id(ours):#x}' for item in record['objects'])


class Guarded:
    """A lock behind a property: the dump must not run it to find the lock."""

    ran = []

    def __init__(self):
        self.real = gevent.lock.Semaphore(0)

    @property
    def lock(self):
        Guarded.ran.append('property')
        return self.real


def wait_on_property(guarded):
    guarded.lock.acquire()


def test_an_object_behind_a_property_is_not_resolved_and_the_property_does_not_run(spawned):
    guarded = Guarded()
    waiter = spawned(wait_on_property, guarded)
    gevent.sleep(0.01)
    Guarded.ran.clear()
    record = record_now()
    assert Guarded.ran == []
    assert greenlet_of(record, waiter)['waits_on'] == {'object': None, 'operation': 'acquire',
                                                       'expression': 'guarded.lock'}


def test_a_sleeping_greenlet_waits_on_nothing(spawned):
    sleeper = spawned(gevent.sleep, 30)
    gevent.sleep(0.01)
    record = record_now()
    assert greenlet_of(record, sleeper)['waits_on'] is None
    assert greenlet_of(record, sleeper)['holds'] == []


PATCHED_DEADLOCK = textwrap.dedent('''
    from gevent import monkey
    monkey.patch_all()
    import json, queue, threading, gevent
    from zato_daemon.dump.collect import collect, os_thread_ident
    from zato_daemon.dump.record import to_record

    lock_a, lock_b, rlock = threading.Lock(), threading.Lock(), threading.RLock()
    event, jobs = threading.Event(), queue.Queue()

    def one():
        with lock_a:
            gevent.sleep(0.01)
            lock_b.acquire()

    def two():
        lock_b.acquire()
        gevent.sleep(0.01)
        with lock_a:
            pass

    def hold():
        with rlock:
            gevent.sleep(30)

    def wait_for_event():
        event.wait()

    def take_job():
        jobs.get()

    greenlets = [gevent.spawn(f) for f in (one, two, hold, wait_for_event, take_job)]
    gevent.sleep(0.1)
    record = to_record(collect(os_thread_ident(), 'worker-1', '/srv/test'))
    print(json.dumps({'record': record, 'greenlets': [id(g) for g in greenlets],
                      'locks': [f'{id(lock):#x}' for lock in (lock_a, lock_b, rlock, event, jobs)]}))
''')


def test_monkey_patched_threading_locks_rlocks_events_and_queues_are_recognised():
    # threading.Lock is gevent.thread.LockType (a BoundedSemaphore), threading.RLock is
    # threading._RLock whose _owner is gevent's get_ident(): id() of the greenlet.
    result = subprocess.run([sys.executable, '-c', PATCHED_DEADLOCK], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=60, check=True)
    found = json.loads(result.stdout)
    record, (one, two, hold, event_waiter, job_taker) = found['record'], found['greenlets']
    lock_a, lock_b, rlock, event, jobs = found['locks']
    by_address = {item['address']: item for item in record['greenlets']}
    objects = {item['id']: item for item in record['objects']}
    assert by_address[one]['waits_on']['object'] == lock_b and by_address[one]['holds'] == [
        {'object': lock_a, 'exact': False}]
    assert by_address[two]['waits_on']['object'] == lock_a and by_address[two]['holds'] == [
        {'object': lock_b, 'exact': False}]
    assert objects[lock_a]['kind'] == 'gevent.thread.LockType'
    assert (objects[lock_a]['owner'], objects[lock_b]['owner']) == (one, two)
    assert by_address[hold]['holds'] == [{'object': rlock, 'exact': True}]
    assert (objects[rlock]['kind'], objects[rlock]['owner'], objects[rlock]['owner_exact']) == (
        'threading._RLock', hold, True)
    # patch_all makes threading.Event gevent's, whose flag no plain read reaches. The queue
    # module's Queue: its Python frames are skipped, the caller's line names it.
    assert by_address[event_waiter]['waits_on'] == {'object': event, 'operation': 'wait', 'expression': 'event'}
    assert (objects[event]['kind'], objects[event]['state']['is_set']) == ('gevent._gevent_cevent.Event', None)
    assert by_address[job_taker]['waits_on'] == {'object': jobs, 'operation': 'get', 'expression': 'jobs'}
    # gevent 22.10 leaves the queue module alone; later ones patch its Queue into gevent's.
    assert objects[jobs]['kind'] in ('queue.Queue', 'gevent._gevent_cqueue.Queue')
    assert objects[jobs]['state']['size'] == 0 and objects[jobs]['waiters'] == [job_taker]


# ---- the bytecode analysis, case by case (pure functions)

def offset_of_call(function, method):
    """The offset of the CALL (or BEFORE_WITH for 'with') of `method` in `function`."""
    instructions = list(waits.dis.get_instructions(function.__code__))
    for number, instruction in enumerate(instructions):
        if method == 'with' and instruction.opname == 'BEFORE_WITH':
            return instruction.offset
        if instruction.opname in ('LOAD_METHOD', 'LOAD_ATTR') and instruction.argval == method:
            return next(later.offset for later in instructions[number:] if later.opname == 'CALL')
    raise AssertionError(f'no call of {method}')


def keyword_get(self):
    value = self.inbox.get(timeout=5)
    return value


def chained_with(self):
    with self.state.lock:
        try:
            self.other.acquire()
        finally:
            pass
    self.after.wait()


def acquire_release(a, b):
    a.acquire()
    b.acquire()
    b.release()
    a.wait()


def plain_call(items):
    return items.pop()


def test_site_of_a_call_with_keywords_and_an_attribute_chain():
    site = waits.site_at(keyword_get.__code__, offset_of_call(keyword_get, 'get'))
    assert site == waits.Site('get', waits.Path('local', 'self', ('inbox',)), 'self.inbox')


def test_site_of_a_with_statement_and_the_with_block_around_a_call_in_a_try():
    code = chained_with.__code__
    assert waits.site_at(code, offset_of_call(chained_with, 'with')).expression == 'self.state.lock'
    inside = offset_of_call(chained_with, 'acquire')
    assert [path.expression for path in waits.enclosing_withs(code, inside)] == ['self.state.lock']
    after = offset_of_call(chained_with, 'wait')
    assert waits.enclosing_withs(code, after) == ()


def test_acquired_before_forgets_what_was_released():
    code = acquire_release.__code__
    held = waits.acquired_before(code, offset_of_call(acquire_release, 'wait'))
    assert [path.expression for path in held] == ['a']


def test_a_call_that_is_no_wait_has_no_site():
    assert waits.site_at(plain_call.__code__, offset_of_call(plain_call, 'pop')) is None


def test_the_plan_of_a_frame_waiting_on_what_it_holds_does_not_say_it_holds_it():
    code = acquire_release.__code__
    plan = waits.plan(code, offset_of_call(acquire_release, 'acquire'), True)
    assert plan.site.expression == 'a' and plan.held == ()


@pytest.mark.parametrize('line, expected', [
    ('with self._lock:', ('acquire', 'self._lock')),
    ('with lock_b as held:', ('acquire', 'lock_b')),
    ('data = sock.recv(10)', ('recv', 'sock')),
    ('item = self.jobs.get(timeout=1)', ('get', 'self.jobs')),
    ('total = sum(values)', None),
    ('x = d.pop("a")', None),
])
def test_site_from_source_as_a_fallback(line, expected):
    site = waits.site_from_source(line)
    assert (None if site is None else (site.operation, site.expression)) == expected


def test_resolve_reads_dicts_and_instance_dicts_only():
    account = Account()
    path = waits.Path('local', 'self', ('_lock',))
    assert waits.resolve(path, {'self': account}, {}) is account._lock
    assert waits.resolve(waits.Path('global', 'self', ('_lock',)), {'self': account}, {}) is waits._MISSING
    assert waits.resolve(waits.Path('global', 'acct', ('_lock',)), {}, {'acct': account}) is account._lock
    assert waits.resolve(waits.Path('local', 'guarded', ('lock',)), {'guarded': Guarded()}, {}) is waits._MISSING


def test_the_greenlet_running_in_the_main_thread_holds_what_it_entered_and_waits_on_nothing(spawned):
    # A hung worker: the main thread's greenlet spins inside `with lock:`; another greenlet
    # waits for the lock; the dump comes from another OS thread, as the dump thread's does.
    lock, dumped, stop = gevent.lock.Semaphore(), {}, []
    main_ident = os_thread_ident()

    def spin_holding():
        with lock:
            gevent.sleep(0.05)  # the waiter starts waiting meanwhile
            deadline = time.monotonic() + 30
            while not stop and time.monotonic() < deadline:
                pass

    def dump_later():
        time.sleep(0.3)
        dumped['record'] = to_record(collect(main_ident, 'worker-1', '/srv/test'))
        stop.append(True)

    gevent.get_hub()
    spinner = spawned(spin_holding)
    waiter = spawned(take_rlock, lock)
    dumper = threading.Thread(target=dump_later)
    dumper.start()
    spinner.join(30)
    dumper.join(30)
    record = dumped['record']
    main = next(thread for thread in record['threads'] if thread['is_main'])
    assert main['running_greenlet'] == id(spinner)
    assert greenlet_of(record, spinner)['waits_on'] is None
    assert greenlet_of(record, spinner)['holds'] == [{'object': f'{id(lock):#x}', 'exact': False}]
    assert object_of(record, lock)['owner'] == id(spinner)
    assert greenlet_of(record, waiter)['waits_on']['object'] == f'{id(lock):#x}'


def put_pair(queue, a, b):
    queue.put((a, b), block=True)


def test_site_of_a_call_whose_argument_is_built_on_the_stack():
    site = waits.site_at(put_pair.__code__, offset_of_call(put_pair, 'put'))
    assert (site.operation, site.expression) == ('put', 'queue')


def test_object_state_is_none_where_no_plain_data_says():
    class RLock:  # a class named like threading's, without its data
        pass
    RLock.__module__, RLock.__qualname__ = 'threading', '_RLock'
    assert waits.family(RLock) == waits.RLOCK
    state, owner = waits.object_state(RLock(), waits.RLOCK)
    assert (state['locked'], state['counter'], owner) == (None, None, None)
    assert waits.family(dict) is None
    semaphore = gevent.lock.Semaphore(2)
    assert waits.object_state(semaphore, waits.family(type(semaphore)))[0] == {
        'locked': False, 'counter': 2, 'is_set': None, 'size': None}


class DictProperty:
    """A class whose __dict__ is a property: reading the instance dict the usual way runs it."""

    ran = []

    def __init__(self, lock):
        self.lock = lock

    @property
    def __dict__(self):
        DictProperty.ran.append('__dict__')
        return {'lock': gevent.lock.Semaphore(0)}


def test_an_object_whose_dict_is_a_property_is_not_looked_into():
    DictProperty.ran.clear()
    lock = gevent.lock.Semaphore(0)
    assert waits.resolve(waits.Path('local', 'holder', ('lock',)), {'holder': DictProperty(lock)}, {}) is waits._MISSING
    assert DictProperty.ran == []
    assert waits.resolve(waits.Path('local', 'holder', ('_lock',)), {'holder': Account()}, {}) is not waits._MISSING
