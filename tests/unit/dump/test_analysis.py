"""analysis.py, case by case, on hand-made records: what is a finding and what is not."""

import pytest

from tests.unit.dump.test_diagnose_records import (ACQUIRE, APP, HUB, HUB_RUN, RECV, SITE, SLEEP, STDLIB, app, call,
                                                   frame, greenlet, idle_master_threads, idle_worker_greenlets,
                                                   idle_worker_threads, lock, record, serving, thread, zd)
from zato_daemon.dump import analysis
from zato_daemon.dump.analysis import (DEADLOCK, GROWTH, HUB_BLOCKED, IN_FLIGHT, LOCK_WAIT, STUCK, analyse,
                                       find_cycles, is_idle, is_library, where)

WORKER = 2001
MASTER = 2000
T0 = 1764770000.0


def worker_dumps(extra_per_dump, times=(T0, T0 + 3, T0 + 6), heartbeats=(0.2, 0.5, 0.1), running=None, stacks=None,
                 objects=None):
    """A worker's records: the idle worker plus extra_per_dump[i] greenlets in dump i."""
    records = []
    for index, at in enumerate(times):
        running_now = running[index] if running else HUB
        stack = stacks[index] if stacks else None
        records.append(record(WORKER, 'worker-1', at, [*idle_worker_greenlets(), *extra_per_dump[index]],
                              idle_worker_threads(running_now, stack), objects[index] if objects else (),
                              heartbeat_age=heartbeats[index]))
    return records


def master_dumps(extra_threads=(), times=(T0, T0 + 3, T0 + 6)):
    return [record(MASTER, 'master', at, threads=[*idle_master_threads(), *extra_threads]) for at in times]


def kinds(report):
    return [finding['kind'] for finding in report['findings']]


# ---- the helpers' cases

@pytest.mark.parametrize('file, expected', [
    (f'{STDLIB}/threading.py', True),
    ('/usr/lib/python3/dist-packages/gevent/hub.py', True),
    ('/srv/venv/lib/python3.11/site-packages/gevent/hub.py', True),
    ('/srv/venv/lib/python3.11/site-packages/redis/connection.py', True),
    ('<frozen runpy>', True),
    ('/usr/lib/python3/dist-packages/zato_daemon/http/server.py', False),
    ('/srv/venv/lib/python3.11/site-packages/requests/sessions.py', False),
    ('/srv/crm/client.py', False),
])
def test_library_frames_are_the_stdlib_gevent_greenlet_and_redis(file, expected):
    assert is_library(file) is expected


@pytest.mark.parametrize('frames, expected', [
    (HUB_RUN, True),
    ([zd('worker/process.py', 217, 'Worker.send_heartbeats'), *SLEEP], True),
    ([zd('http/server.py', 252, 'HttpServer._exchange'), *RECV], True),
    # The same housekeeping function, but it called into the application: not idle.
    ([zd('worker/process.py', 217, 'Worker.send_heartbeats'), app(3, 'hook'), *SLEEP], False),
    # A service sleeping or reading is never idle, whatever the server frames outside it.
    (serving(app(88, 'Client.get'), *RECV), False),
    ([zd('http/server.py', 252, 'HttpServer._exchange'), zd('http/server.py', 248, 'HttpServer._answer'),
      app(5, 'handle'), *SLEEP], False),
    ([frame(f'{STDLIB}/threading.py', 995, 'Thread._bootstrap'),
      frame(f'{STDLIB}/threading.py', 324, 'Condition.wait')], False),
    # A thread pool's thread: waiting for a task is idle, running one is not.
    ([frame(f'{SITE}/gevent/threadpool.py', 216, '_WorkerGreenlet.run'),
      frame(f'{SITE}/gevent/_threading.py', 1, 'get')], True),
    ([frame(f'{SITE}/gevent/threadpool.py', 122, '_WorkerGreenlet._begin')], True),
    ([frame(f'{SITE}/gevent/threadpool.py', 232, '_WorkerGreenlet.run'),
      frame(f'{SITE}/gevent/threadpool.py', 190, '_WorkerGreenlet.__run_task')], False),
    ([], False),
])
def test_idle_is_decided_by_the_innermost_own_frame(frames, expected):
    assert is_idle(frames) is expected


def test_where_names_the_callee_and_the_own_line():
    assert where(serving(app(88, 'Client.get'), *RECV)) == 'in socket.recv at client.py:88'
    assert where([*serving(app(12, 'Spin.handle', 'spin.py'))]) == 'at spin.py:12 in Spin.handle'
    assert where(HUB_RUN) == 'at hub.py:647 in Hub.run'
    assert where([]) == ''


def test_cycles_are_found_once_from_their_smallest_node():
    assert find_cycles({3: [1], 1: [2], 2: [3], 4: [5], 5: [], 6: [6]}) == [(1, 2, 3), (6,)]
    assert find_cycles({1: [2], 2: [1, 3], 3: [2]}) == [(1, 2), (2, 3)]
    assert find_cycles({1: [2], 2: [3]}) == []


# ---- an idle server

def test_an_idle_server_reports_nothing():
    report = analyse(master_dumps() + worker_dumps([[], [], []]))
    assert report['findings'] == []
    assert report['problems'] == 0
    assert [(process['pid'], process['role'], process['dumps']) for process in report['processes']] == [
        (MASTER, 'master', 3), (WORKER, 'worker-1', 3)]


def test_one_dump_of_an_idle_server_reports_nothing_either():
    assert analyse(worker_dumps([[]], times=(T0,), heartbeats=(0.1,)))['findings'] == []


# ---- stuck

STUCK_CALL = call('crm.customer.get', 'c0ffee', 35.0)


def stuck_reader(age_offset=0.0):
    # As the record has it: a wait on a socket, which is not among the objects.
    return greenlet(0x8000, serving(app(88, 'Client.get'), *RECV),
                    call=call('crm.customer.get', 'c0ffee', 35.0 + age_offset), spawn_site='listener.py:80 in do_read',
                    waits_on={'object': '0x7f01', 'operation': 'recv', 'expression': 'self.sock'})


def test_a_greenlet_on_the_same_stack_in_every_dump_is_stuck_with_its_call():
    report = analyse(worker_dumps([[stuck_reader()], [stuck_reader(3)], [stuck_reader(6)]]))
    assert kinds(report) == [STUCK, IN_FLIGHT]
    stuck = report['findings'][0]
    assert stuck['summary'] == ('greenlet 0x8000 serving crm.customer.get, cid c0ffee, in socket.recv at '
                                'client.py:88 for at least 6 s, started 41 s ago')
    assert (stuck['pid'], stuck['service'], stuck['cid'], stuck['file'], stuck['line']) == (
        WORKER, 'crm.customer.get', 'c0ffee', f'{APP}/client.py', 88)
    assert stuck['stuck_for'] == 6.0 and stuck['call_age'] == 41.0
    assert report['problems'] == 1


def test_alike_stuck_greenlets_are_one_finding_with_every_cid():
    readers = [greenlet(0x8000 + index, serving(app(88, 'Client.get'), *RECV),
                        call=call('crm.customer.get', f'c{index}', 10.0 * (index + 1))) for index in range(7)]
    report = analyse(worker_dumps([readers] * 3))
    stuck = report['findings'][0]
    assert kinds(report) == [STUCK] + [IN_FLIGHT] * 7
    assert stuck['summary'] == ('7 greenlets serving crm.customer.get, cids c6, c5, c4, c3, c2 and 2 more, in '
                                'socket.recv at client.py:88 for at least 6 s, started 10 s to 70 s ago')
    assert stuck['count'] == 7 and stuck['cids'] == [f'c{index}' for index in range(6, -1, -1)]
    assert (stuck['greenlet'], stuck['cid'], stuck['call_age']) == (0x8006, 'c6', 70.0)


def test_a_greenlet_waiting_on_the_same_line_is_stuck_whatever_the_library_frames_inside():
    # gevent.sleep() in a loop: now and then caught on the line of its `with loop.timer()`.
    def sleeper(line):
        return greenlet(0x8000, serving(app(30, 'Hold.handle', 'probe.py'),
                                        frame(f'{SITE}/gevent/hub.py', line, 'sleep')),
                        call=call('probe.hold', 'h0ld', 20.0))
    report = analyse(worker_dumps([[sleeper(166)], [sleeper(161)], [sleeper(166)]]))
    assert kinds(report) == [STUCK, IN_FLIGHT]
    assert report['findings'][0]['line'] == 30


def test_a_greenlet_whose_stack_moved_is_not_stuck():
    moved = greenlet(0x8000, serving(app(90, 'Client.get'), *RECV), call=STUCK_CALL)
    report = analyse(worker_dumps([[stuck_reader()], [moved], [stuck_reader()]]))
    assert kinds(report) == [IN_FLIGHT]


def test_a_greenlet_missing_from_a_dump_is_not_stuck():
    # Two calls on the same line, one after the other: two greenlets, neither in every dump.
    other = {**stuck_reader(), 'address': 0x8001}
    report = analyse(worker_dumps([[stuck_reader()], [stuck_reader()], [other]]))
    assert kinds(report) == [IN_FLIGHT]


def test_dead_and_not_started_greenlets_are_not_stuck():
    dead = greenlet(0x8000, serving(app(88, 'Client.get')), state='dead')
    waiting = greenlet(0x8001, [], state='not started', runs='app.job')
    assert analyse(worker_dumps([[dead, waiting]] * 3))['findings'] == []


def test_a_stuck_thread_is_named_and_idle_threads_are_not():
    busy = thread(14, [frame(f'{STDLIB}/threading.py', 995, 'Thread._bootstrap'), app(40, 'Exporter.run', 'export.py'),
                       frame(f'{STDLIB}/time.py', 1, 'sleep')], name='exporter')
    report = analyse(master_dumps([busy]))
    assert kinds(report) == [STUCK]
    assert report['findings'][0]['summary'] == ('thread exporter (native id 14) in sleep at export.py:40 '
                                                'for at least 6 s')
    assert report['findings'][0]['subject'] == 'thread'


def test_the_dump_thread_is_never_stuck():
    # is_current: the thread writing the dump; it has no frames and differs in each dump anyway.
    assert analyse(master_dumps())['findings'] == []


# ---- hub blocked

def spinner():
    return greenlet(0x8100, [], state='running', call=call('probe.spin', 'sp1n', 12.0))


SPIN_STACK = [frame(f'{SITE}/gevent/greenlet.py', 908, 'Greenlet.run'), app(20, 'Spin.handle', 'probe.py')]


def test_the_same_greenlet_running_in_every_dump_blocks_the_hub():
    report = analyse(worker_dumps([[spinner()]] * 3, running=[0x8100] * 3, stacks=[SPIN_STACK] * 3))
    assert kinds(report) == [HUB_BLOCKED, IN_FLIGHT]
    blocked = report['findings'][0]
    assert blocked['summary'] == ('greenlet 0x8100 serving probe.spin, cid sp1n keeps the CPU at probe.py:20 in '
                                  'Spin.handle: running in all 3 dumps over 6 s')
    assert (blocked['greenlet'], blocked['file'], blocked['line']) == (0x8100, f'{APP}/probe.py', 20)


def test_the_dump_signal_handler_on_top_of_the_spinning_frame_is_left_out():
    handler = [zd('dump/trigger.py', 121, 'DumpTrigger.handle_signal'),
               zd('dump/trigger.py', 134, 'DumpTrigger.request')]
    report = analyse(worker_dumps([[spinner()]] * 3, running=[0x8100] * 3,
                                  stacks=[SPIN_STACK, SPIN_STACK + handler, SPIN_STACK + handler[:1]]))
    blocked = report['findings'][0]
    assert (blocked['kind'], blocked['line'], blocked['where']) == (HUB_BLOCKED, 20, 'at probe.py:20 in Spin.handle')


def test_a_late_heartbeat_alone_blocks_the_hub():
    report = analyse(worker_dumps([[spinner()], [], []], heartbeats=(4.5, 0.2, 0.3), running=[0x8100, HUB, HUB],
                                  stacks=[SPIN_STACK, None, None]))
    assert kinds(report) == [HUB_BLOCKED]
    assert report['findings'][0]['summary'].endswith(': no heartbeat for 4.5 s')
    assert report['findings'][0]['service'] == 'probe.spin'


def test_a_late_heartbeat_while_the_hub_itself_runs_names_the_hubs_frame():
    # A callback of the hub's loop blocking in C: no greenlet of the application runs.
    in_callback = [*HUB_RUN, zd('http/listener.py', 70, 'Listener.do_read'), app(5, 'on_accept', 'hook.py')]
    report = analyse(worker_dumps([[], [], []], heartbeats=(0.2, 2.0, 5.0), stacks=[None, None, in_callback]))
    blocked, = report['findings']
    assert blocked['summary'] == 'the hub itself keeps the CPU at hook.py:5 in on_accept: no heartbeat for 5 s'
    assert blocked['greenlet'] is None and blocked['heartbeat_age'] == 5.0


def test_different_greenlets_running_with_fresh_heartbeats_are_a_busy_hub_not_a_blocked_one():
    report = analyse(worker_dumps([[spinner()], [{**spinner(), 'address': 0x8101}], []],
                                  running=[0x8100, 0x8101, HUB], stacks=[SPIN_STACK, SPIN_STACK, None]))
    assert HUB_BLOCKED not in kinds(report)


def test_a_heartbeat_just_under_the_limit_is_not_a_finding():
    heartbeat = analysis.HEARTBEAT_LIMIT
    assert analyse(worker_dumps([[], [], []], heartbeats=(heartbeat, heartbeat, heartbeat)))['findings'] == []


# ---- lock waits and deadlocks

SEMAPHORE = '0x7fa0'


def holder(age=20.0):
    return greenlet(0x8200, serving(app(30, 'Hold.handle', 'probe.py'), *SLEEP), call=call('probe.hold', 'h0ld', age),
                    holds=[{'object': SEMAPHORE, 'exact': True}])


def waiter(address, age):
    return greenlet(address, serving(app(40, 'Wait.handle', 'probe.py'), *ACQUIRE),
                    call=call('probe.wait', f'w{address:x}', age),
                    waits_on={'object': SEMAPHORE, 'operation': 'acquire', 'expression': 'self.server.gate'})


def semaphore(owner=0x8200, exact=True):
    return lock(SEMAPHORE, ['gate'], owner=owner, exact=exact, waiters=[0x8201, 0x8202])


def test_waiters_on_a_held_semaphore_are_one_lock_wait_naming_the_holder():
    dumps = [[holder(), waiter(0x8201, 5.0), waiter(0x8202, 9.0)]] * 3
    report = analyse(worker_dumps(dumps, objects=[[semaphore()]] * 3))
    assert kinds(report) == [STUCK, LOCK_WAIT, IN_FLIGHT, IN_FLIGHT, IN_FLIGHT]
    stuck, waits = report['findings'][:2]
    assert stuck['greenlet'] == 0x8200 and stuck['summary'].startswith(
        'greenlet 0x8200 serving probe.hold, cid h0ld, in sleep at probe.py:30')
    assert waits['summary'] == (
        '2 waiting on gate (gevent.lock.Semaphore at 0x7fa0) in acquire() for at least 6 s, held by greenlet 0x8200 '
        'serving probe.hold, cid h0ld in sleep at probe.py:30: probe.wait cid w8202 (9 s), probe.wait cid w8201 (5 s)')
    assert waits['holder']['greenlet'] == 0x8200 and waits['holder']['exact'] is True
    assert [item['greenlet'] for item in waits['waiters']] == [0x8202, 0x8201]
    assert waits['object'] == SEMAPHORE and waits['object_names'] == ['gate']


def test_a_holder_known_from_frames_only_is_probably_the_holder():
    guessed = {**holder(), 'holds': [{'object': SEMAPHORE, 'exact': False}]}
    dumps = [[guessed, waiter(0x8201, 5.0)]] * 3
    report = analyse(worker_dumps(dumps, objects=[[semaphore(owner=None)]] * 3))
    waits = next(finding for finding in report['findings'] if finding['kind'] == LOCK_WAIT)
    assert 'held probably by greenlet 0x8200' in waits['summary']
    assert waits['holder']['exact'] is False


def test_a_lock_without_a_known_holder_says_so():
    report = analyse(worker_dumps([[waiter(0x8201, 5.0)]] * 3, objects=[[semaphore(owner=None)]] * 3))
    waits = next(finding for finding in report['findings'] if finding['kind'] == LOCK_WAIT)
    assert 'holder unknown' in waits['summary'] and waits['holder'] is None


def test_a_wait_seen_in_one_dump_only_is_not_a_finding():
    report = analyse(worker_dumps([[holder()], [holder()], [holder(), waiter(0x8201, 0.1)]],
                                  objects=[[], [], [semaphore()]]))
    assert LOCK_WAIT not in kinds(report)


def crossed(address, waits_for, holds, line):
    return greenlet(address, serving(app(line, 'Deadlock.handle', 'probe.py'), *ACQUIRE),
                    call=call('probe.deadlock', f'd{address:x}', 30.0),
                    waits_on={'object': waits_for, 'operation': 'acquire', 'expression': 'lock'},
                    holds=[{'object': holds, 'exact': True}])


def test_two_greenlets_waiting_on_each_others_lock_are_a_deadlock_reported_once():
    greenlets = [crossed(0x8300, '0xa', '0xb', 14), crossed(0x8301, '0xb', '0xa', 22)]
    objects = [lock('0xa', ['lock_a'], owner=0x8301), lock('0xb', ['lock_b'], owner=0x8300)]
    report = analyse(worker_dumps([greenlets] * 3, objects=[objects] * 3))
    assert kinds(report) == [DEADLOCK, IN_FLIGHT, IN_FLIGHT]
    deadlock = report['findings'][0]
    assert deadlock['summary'] == (
        'greenlet 0x8300 serving probe.deadlock, cid d8300 in Semaphore.acquire at probe.py:14 waits on lock_a '
        '(gevent.lock.Semaphore at 0xa), held by greenlet 0x8301; greenlet 0x8301 serving probe.deadlock, cid d8301 '
        'in Semaphore.acquire at probe.py:22 waits on lock_b (gevent.lock.Semaphore at 0xb), held by greenlet 0x8300')
    assert [(step['greenlet'], step['waits_on'], step['held_by']) for step in deadlock['cycle']] == [
        (0x8300, '0xa', 0x8301), (0x8301, '0xb', 0x8300)]
    assert report['problems'] == 1


# ---- growth

def leaked(address, site='probe.py:12 in Leak.handle'):
    return greenlet(address, [GREENLET_RUN_FRAME, app(15, 'forever', 'probe.py'), *SLEEP], spawn_site=site,
                    runs='probe.forever')


GREENLET_RUN_FRAME = frame(f'{SITE}/gevent/greenlet.py', 908, 'Greenlet.run')


def test_greenlets_rising_at_one_spawn_site_in_every_dump_are_growth_with_the_numbers():
    dumps = [[leaked(0x9000 + index) for index in range(count)] for count in (12, 40, 71)]
    report = analyse(worker_dumps(dumps))
    growth = [finding for finding in report['findings'] if finding['kind'] == GROWTH]
    assert len(growth) == 1
    assert growth[0]['counts'] == [12, 40, 71]
    assert growth[0]['summary'] == ('greenlets spawned at probe.py:12 in Leak.handle running probe.forever rose in '
                                    'every dump: 12 → 40 → 71 in 6 s')
    # The first twelve sleep on the same line in every dump: stuck too, as one finding.
    stuck = [finding for finding in report['findings'] if finding['kind'] == STUCK]
    assert [(finding['count'], finding['summary']) for finding in stuck] == [
        (12, '12 greenlets (runs probe.forever), in sleep at probe.py:15 for at least 6 s')]


@pytest.mark.parametrize('counts', [(12, 40, 40), (40, 12, 71), (5, 5, 5)])
def test_counts_that_did_not_rise_every_time_are_not_growth(counts):
    dumps = [[leaked(0x9000 + 100 * dump + index) for index in range(count)] for dump, count in enumerate(counts)]
    assert GROWTH not in kinds(analyse(worker_dumps(dumps)))


def test_idle_connections_piling_up_are_not_growth():
    connection = idle_worker_greenlets()[-1]
    dumps = [[{**connection, 'address': 0x9000 + index} for index in range(count)] for count in (2, 5, 9)]
    assert analyse(worker_dumps(dumps))['findings'] == []


# ---- in flight and the order

def test_calls_in_flight_are_listed_oldest_first_and_are_not_a_problem():
    # Two calls that move on (a new line in each dump): in flight, nothing else.
    dumps = [[greenlet(0x8400 + index, serving(app(50 + dump, 'Step.handle', 'probe.py'), *SLEEP),
                       call=call('probe.step', f's{index}', age + dump * 3)) for index, age in enumerate((1.0, 7.0))]
             for dump in range(3)]
    report = analyse(worker_dumps(dumps))
    assert kinds(report) == [IN_FLIGHT, IN_FLIGHT]
    assert [finding['cid'] for finding in report['findings']] == ['s1', 's0']
    assert report['findings'][0]['summary'] == 'probe.step, cid s1, running for 13 s'
    assert report['problems'] == 0


def test_findings_come_most_important_first_across_processes():
    greenlets = [crossed(0x8300, '0xa', '0xb', 14), crossed(0x8301, '0xb', '0xa', 22), spinner(),
                 stuck_reader()]
    objects = [lock('0xa', ['lock_a'], owner=0x8301), lock('0xb', ['lock_b'], owner=0x8300)]
    busy = thread(14, [app(40, 'Exporter.run', 'export.py'), frame(f'{STDLIB}/time.py', 1, 'sleep')], name='exporter')
    report = analyse(master_dumps([busy]) + worker_dumps([greenlets] * 3, objects=[objects] * 3,
                                                          running=[0x8100] * 3, stacks=[SPIN_STACK] * 3))
    # Within a kind, the oldest call first (a thread serves none).
    assert [(finding['kind'], finding['role']) for finding in report['findings'] if finding['kind'] != IN_FLIGHT] == [
        (DEADLOCK, 'worker-1'), (HUB_BLOCKED, 'worker-1'), (STUCK, 'worker-1'), (STUCK, 'master')]
    assert kinds(report)[-1] == IN_FLIGHT and report['problems'] == 4


def test_a_worker_replaced_between_dumps_is_analysed_on_the_dumps_it_has():
    new_worker = [record(WORKER + 1, 'worker-1', T0 + 6, [*idle_worker_greenlets(), stuck_reader()],
                         idle_worker_threads())]
    report = analyse(worker_dumps([[], [], []])[:2] + new_worker)
    # One dump: nothing can be seen not to move; the call is in flight.
    assert kinds(report) == [IN_FLIGHT]
    assert [(process['pid'], process['dumps']) for process in report['processes']] == [(WORKER, 2), (WORKER + 1, 1)]
