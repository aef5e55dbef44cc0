"""diagnose.py: who must answer a round, the messages, the report's text and JSON, the bounds."""

import json

import pytest

from tests.unit.dump.test_analysis import T0, WORKER, master_dumps, stuck_reader, worker_dumps
from tests.unit.dump.test_diagnose_records import ACQUIRE, SLEEP, app, call, greenlet, lock, serving
from zato_daemon import cli
from zato_daemon.dump import diagnose
from zato_daemon.dump.analysis import analyse

CONTEXT = {'server_dir': '/srv/crm', 'master_pid': 2000, 'dumps': 3, 'interval': 2.0, 'started': T0,
           'server_log': '/srv/crm/logs/server.log',
           'journal': 'journalctl -o cat MESSAGE_ID=x --since "2025-12-03 13:53:20"'}


# ---- who answers a round

def status(master_pid, *workers):
    return {'master_proc_pid': master_pid,
            'workers': [{'number': number, 'pid': pid, 'state': state} for number, pid, state in workers]}


@pytest.mark.parametrize('content, expected', [
    (status(10, (1, 11, 'ready'), (2, 12, 'ready')), {10: 'master', 11: 'worker-1', 12: 'worker-2'}),
    # Booting: its trigger may not be installed yet; draining: it may exit before it writes.
    (status(10, (1, 11, 'booting'), (2, 12, 'recycling'), (1, 13, 'draining')), {10: 'master', 12: 'worker-2'}),
    # Another master's file (the pid was reused), or none: the master alone.
    (status(99, (1, 11, 'ready')), {10: 'master'}),
    (None, {10: 'master'}),
])
def test_the_master_and_its_serving_workers_answer_a_round(content, expected):
    assert diagnose.expected_pids(content, 10) == expected


def test_the_processes_that_wrote_nothing_are_named():
    message = diagnose.missing_message({12: 'worker-2', 10: 'master'}, 10.0, '/run/zato-daemon/dumps')
    assert message.startswith('no dump record from master pid 10, worker-2 pid 12 within 10 s in '
                              '/run/zato-daemon/dumps; ')
    assert '\n' not in message


# ---- when a round is sent

@pytest.mark.parametrize('number, interval, previous_times, expected', [
    (1, 2.0, [T0 + 0.01, T0 + 0.02], T0 + 2.0),           # the interval, well after the last dumps
    (2, 2.0, [T0 + 2.01], T0 + 4.0),
    # A dump that began late would fold a request sent at the interval: the quiet period after it.
    (1, 1.0, [T0 + 0.01, T0 + 0.4], T0 + 0.4 + 1.0 + diagnose.FOLD_MARGIN),
    (1, 1.0, [T0 + 0.005], T0 + 0.005 + 1.0 + diagnose.FOLD_MARGIN),
])
def test_a_round_is_sent_at_the_interval_but_never_into_the_previous_dumps_quiet_period(number, interval,
                                                                                    previous_times, expected):
    previous = [{'time': moment} for moment in previous_times]
    assert diagnose.next_round_at(T0, number, interval, previous) == pytest.approx(expected)


# ---- the command line

@pytest.mark.parametrize('option, value, message', [
    ('--dumps', '1', "'1' is not a whole number from 2 to 20 (one dump cannot show what does not move)"),
    ('--dumps', '21', "'21' is not a whole number from 2 to 20"),
    ('--dumps', 'many', "'many' is not a whole number from 2 to 20"),
    ('--interval', '0.5', "'0.5' is not a number of seconds from 1 to 600"),
    ('--interval', 'nan', "'nan' is not a number of seconds from 1 to 600"),
])
def test_out_of_bounds_options_are_a_usage_error(option, value, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(['diagnose', '/srv/crm', option, value])
    assert exit_info.value.code == 64
    assert capsys.readouterr().err.splitlines()[-1].endswith(message)


def test_the_defaults_are_three_dumps_two_seconds_apart():
    args = cli.build_parser().parse_args(['diagnose', '/srv/crm'])
    assert (args.dumps, args.interval, args.json) == (3, 2.0, False)
    args = cli.build_parser().parse_args(['diagnose', '/srv/crm', '--dumps', '20', '--interval', '1', '--json'])
    assert (args.dumps, args.interval, args.json) == (20, 1.0, True)


# ---- the report

def semaphore_scene():
    holder = greenlet(0x8200, serving(app(30, 'Hold.handle', 'probe.py'), *SLEEP),
                      call=call('probe.hold', 'h0ld', 20.0), holds=[{'object': '0x7fa0', 'exact': False}])
    waiter = greenlet(0x8201, serving(app(40, 'Queue.handle', 'probe.py'), *ACQUIRE),
                      call=call('probe.queue', 'q1', 5.0),
                      waits_on={'object': '0x7fa0', 'operation': 'acquire', 'expression': 'gate'})
    objects = [lock('0x7fa0', ['gate'], owner=None)]
    return master_dumps() + worker_dumps([[holder, waiter, stuck_reader()]] * 3, objects=[objects] * 3)


def test_the_text_has_a_headline_one_line_per_finding_then_details_then_where_the_dumps_are():
    text = diagnose.format_text(analyse(semaphore_scene()), CONTEXT)
    lines = text.splitlines()
    assert lines[0] == 'zato-daemon: 3 problems, 3 calls in flight; 2 processes of /srv/crm, 3 dumps 2 s apart'
    assert [line[:9] for line in lines[1:7]] == ['STUCK    ', 'STUCK    ', 'LOCK WAIT', 'IN FLIGHT',
                                                           'IN FLIGHT', 'IN FLIGHT']
    assert lines[1] == ('STUCK      worker-1 pid 2001: greenlet 0x8000 serving crm.customer.get, cid c0ffee, in '
                        'socket.recv at client.py:88 for at least 6 s, started 35 s ago')
    assert lines[4].startswith('IN FLIGHT  worker-1 pid 2001: crm.customer.get, cid c0ffee, running for 35 s')
    assert lines[7] == ''
    assert lines[8].startswith('master, pid 2000: 3 dumps from ') and lines[8].endswith('; nothing found')
    assert lines[10].startswith('worker-1, pid 2001: 3 dumps from ')
    assert '    holder: greenlet 0x8200 (probe.hold, cid h0ld, 20 s old) at /srv/crm/probe.py:30 in Hold.handle ' \
           '(probably: the dump saw it in its frames)' in lines
    assert '    waiter: greenlet 0x8201 (probe.queue, cid q1, 5 s old) acquire at /srv/crm/probe.py:40 in ' \
           'Queue.handle' in lines
    assert '    File "/srv/crm/client.py", line 88, in Client.get' in lines
    assert lines[-2:] == ['The full dumps (variables included) are in /srv/crm/logs/server.log, and in the journal:',
                          f'  {CONTEXT["journal"]}']


def test_the_text_of_nothing_found():
    text = diagnose.format_text(analyse(master_dumps() + worker_dumps([[], [], []])), CONTEXT)
    lines = text.splitlines()
    assert lines[0] == 'zato-daemon: nothing found, 0 calls in flight; 2 processes of /srv/crm, 3 dumps 2 s apart'
    assert lines[2].endswith('; nothing found') and lines[4].endswith('; nothing found')


def test_the_json_has_stable_sorted_keys_and_every_finding():
    report = analyse(semaphore_scene())
    text = diagnose.format_json(report, CONTEXT)
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert sorted(data) == ['dumps', 'findings', 'interval', 'journal', 'master_pid', 'problems', 'processes',
                            'server_dir', 'server_log', 'started']
    assert data['problems'] == 3
    assert [finding['kind'] for finding in data['findings']] == ['stuck', 'stuck', 'lock_wait', 'in_flight',
                                                                 'in_flight', 'in_flight']
    assert data['findings'][2]['holder']['greenlet'] == 0x8200
    assert text == diagnose.format_json(analyse(semaphore_scene()), CONTEXT)  # the same dumps, the same text
    assert data['processes'][1]['pid'] == WORKER


def test_the_journal_command_names_the_dump_entries_since_the_start():
    command = diagnose.journal_command(T0)
    assert command.startswith('journalctl -o cat MESSAGE_ID=') and command.endswith('"')
    assert '--since "20' in command


def test_a_lock_wait_with_many_waiters_names_a_few_and_counts_the_rest():
    waiters = [greenlet(0x8300 + index, serving(app(40, 'Queue.handle', 'probe.py'), *ACQUIRE),
                        call=call('probe.queue', f'q{index:02}', 5.0),
                        waits_on={'object': '0x7fa0', 'operation': 'acquire', 'expression': 'gate'})
               for index in range(30)]
    report = analyse(worker_dumps([waiters] * 3, objects=[[lock('0x7fa0', ['gate'], owner=None)]] * 3))
    text = diagnose.format_text(report, CONTEXT)
    line = next(line for line in text.splitlines() if line.startswith('LOCK WAIT'))
    assert line.endswith('probe.queue cid q04 (5 s) and 25 more')
    assert sum(line.startswith('    waiter: ') for line in text.splitlines()) == diagnose.DETAIL_WAITERS
    assert '    and 10 more waiters (--json lists them all)' in text.splitlines()
