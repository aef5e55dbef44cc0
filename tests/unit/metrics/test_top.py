"""What `zato-daemon top` shows, case by case, without a terminal: metrics/top.screen() and
the answer of zato.server.metrics turned into a view or an error (cli.view_or_error)."""

import pytest

from zato_daemon.cli import ViewPending, view_or_error
from zato_daemon.errors import EXIT_CONFIG, EXIT_UNAVAILABLE, AdminCallError, ConfigError
from zato_daemon.metrics.top import ELLIPSIS, cells, fit, fit_tail, problem_screen, screen

DIR = '/srv/crm'


def service(name, calls_per_second=0.0, error_rate=0.0, p50=0.002, p99=0.01, in_flight=0, calls_total=10):
    return {'service': name, 'calls_per_second': calls_per_second, 'errors_per_second': 0.0,
            'error_rate': error_rate, 'p50_seconds': p50, 'p99_seconds': p99, 'in_flight': in_flight,
            'calls_total': calls_total, 'errors_total': 0}


def worker(number, pid=4000, rss=50 << 20, cpu=1.25, fds=20, requests=7, in_flight=0, state='ready'):
    return {'number': number, 'generation': 1, 'pid': pid + number, 'state': state, 'rss_bytes': rss,
            'cpu_seconds': cpu, 'open_fds': fds, 'requests': requests, 'in_flight': in_flight}


def snapshot(services=(), workers=(), age=0.4, calls_per_second=0.0, in_flight=0, restarts=None):
    return {'version': 1, 'time': 1.0e9, 'interval_seconds': 1.0, 'age_seconds': age,
            'services': list(services), 'workers': list(workers),
            'totals': {'calls_per_second': calls_per_second, 'in_flight': in_flight,
                       'workers_alive': len(workers), 'restarts': restarts or {}}}


def assert_fits(lines, width, height=None):
    assert all(cells(line) <= width for line in lines), [line for line in lines if cells(line) > width]
    if height is not None:
        assert len(lines) <= height


# ---- the whole screen, exactly

def test_a_busy_server_at_100_columns():
    view = snapshot([service('crm.customer.get', 12.5, 0.0125, 0.0034, 0.25, 2, 12345),
                     service('crm.address.get', 3.0, None, None, None, 0, 40)],
                    [worker(1), worker(2, rss=None, cpu=None, fds=None)], calls_per_second=15.5, in_flight=2)
    assert screen(view, 100, 40, DIR) == [
        '/srv/crm  workers 2  calls/s 15.5  in flight 2  age 0.4 s',
        '',
        'SERVICE             CALLS/S   ERR %    P50 MS    P99 MS  IN FLIGHT  TOTAL CALLS',
        'crm.customer.get       12.5     1.2      3.40     250.0          2        12345',
        'crm.address.get         3.0       -         -         -          0           40',
        '',
        'WORKER       PID   GEN  STATE       RSS MIB     CPU S     FDS   REQUESTS  IN FLIGHT',
        '     1      4001     1  ready          50.0       1.2      20          7          0',
        '     2      4002     1  ready             -         -       -          7          0',
    ]


def test_an_empty_server_says_no_service_was_called():
    lines = screen(snapshot(workers=[worker(1)]), 100, 40, DIR)
    assert lines[:4] == ['/srv/crm  workers 1  calls/s 0.0  in flight 0  age 0.4 s', '',
                         'SERVICE     CALLS/S   ERR %    P50 MS    P99 MS  IN FLIGHT  TOTAL CALLS',
                         '  (no service has been called yet)']
    assert lines[-2:] == ['WORKER       PID   GEN  STATE       RSS MIB     CPU S     FDS   REQUESTS  IN FLIGHT',
                          '     1      4001     1  ready          50.0       1.2      20          7          0']


def test_no_worker_at_all_is_said_too():
    assert screen(snapshot(), 100, 40, DIR)[-1] == '  (no worker)'


@pytest.mark.parametrize('ms, shown', [(0.0004, '0.40'), (0.0125, '12.5'), (2.5, '2500'), (None, '-')])
def test_latencies_in_milliseconds_with_the_digits_that_matter(ms, shown):
    row = screen(snapshot([service('a.b', p50=ms)]), 100, 40, DIR)[3]
    assert row.split()[3] == shown


# ---- the height

def test_many_services_are_cut_to_the_height_with_how_many_more():
    services = [service(f'svc.{number:02d}', calls_per_second=100 - number) for number in range(30)]
    lines = screen(snapshot(services, [worker(1), worker(2)]), 100, 15, DIR)
    assert len(lines) == 15
    # Header, blank, heading; 7 services and the line for the other 23; blank, heading, 2 workers.
    assert [line.split()[0] for line in lines[3:10]] == [f'svc.{number:02d}' for number in range(7)]
    assert lines[10] == f'{ELLIPSIS} 23 more services'
    assert lines[11] == ''
    assert lines[12].startswith('WORKER')
    assert [line.split()[0] for line in lines[13:]] == ['1', '2']


def test_all_rows_show_when_they_fit_exactly():
    services = [service(f'svc.{number}') for number in range(5)]
    lines = screen(snapshot(services, [worker(1)]), 100, 3 + 5 + 3, DIR)
    assert len(lines) == 11
    assert not any(ELLIPSIS in line for line in lines)


def test_services_keep_three_lines_and_the_workers_are_cut_after_them():
    services = [service(f'svc.{number}') for number in range(10)]
    workers = [worker(number) for number in range(1, 9)]
    lines = screen(snapshot(services, workers), 100, 12, DIR)
    assert len(lines) == 12
    assert lines[3:6] == [lines[3], lines[4], f'{ELLIPSIS} 8 more services']
    assert lines[7].startswith('WORKER')
    assert lines[8:] == [lines[8], lines[9], lines[10], f'{ELLIPSIS} 5 more workers']


def test_a_terminal_too_short_for_any_worker_row_shows_only_services():
    services = [service(f'svc.{number}') for number in range(10)]
    lines = screen(snapshot(services, [worker(1), worker(2)]), 100, 8, DIR)
    assert len(lines) == 8
    assert not any(line.startswith('WORKER') for line in lines)
    assert lines[-1] == f'{ELLIPSIS} 6 more services'


def test_few_services_leave_their_room_to_the_workers():
    workers = [worker(number) for number in range(1, 11)]
    lines = screen(snapshot([service('a.b')], workers), 100, 10, DIR)
    assert lines[3].startswith('a.b')
    assert lines[5].startswith('WORKER')
    assert lines[-1] == f'{ELLIPSIS} 7 more workers'


def test_without_a_height_every_row_shows():
    services = [service(f'svc.{number}') for number in range(50)]
    lines = screen(snapshot(services, [worker(1)]), 100, None, DIR)
    assert len(lines) == 3 + 50 + 3


# ---- the width

def test_a_long_service_name_is_cut_to_fit_the_width():
    name = 'crm.' + 'customer.' * 20 + 'get'
    lines = screen(snapshot([service(name, 1.0)]), 100, 40, DIR)
    assert_fits(lines, 100)
    row = lines[3]
    assert cells(row) == 100
    assert row.startswith('crm.customer.') and ELLIPSIS in row.split()[0]
    assert row.split()[1:] == ['1.0', '0.0', '2.00', '10.0', '0', '10']


def test_a_narrow_terminal_leaves_out_columns_from_the_right():
    lines = screen(snapshot([service('crm.customer.get', 12.5, calls_total=99)], [worker(1)]), 60, 40, DIR)
    assert_fits(lines, 60)
    assert lines[2].split() == ['SERVICE', 'CALLS/S', 'ERR', '%', 'P50', 'MS', 'P99', 'MS']
    assert lines[3].split() == ['crm.customer.get', '12.5', '0.0', '2.00', '10.0']
    assert lines[5].split()[-2:] == ['CPU', 'S']


def test_a_narrow_terminal_keeps_the_figures_of_the_header_before_the_directory():
    view = snapshot(workers=[worker(1)], calls_per_second=3.0)
    assert screen(view, 60, 40, '/var/lib/zato-daemon/instances/crm')[0] == (
        f'{ELLIPSIS}stances/crm  workers 1  calls/s 3.0  in flight 0  age 0.4 s')
    assert screen(view, 50, 40, '/var/lib/zato-daemon/instances/crm')[0] == (
        'workers 1  calls/s 3.0  in flight 0  age 0.4 s')


@pytest.mark.parametrize('width', [1, 2, 5, 10, 20, 33, 47, 64, 79, 80, 99, 120, 200])
@pytest.mark.parametrize('height', [0, 1, 2, 4, 7, 11, 24])
def test_no_line_is_ever_wider_or_the_screen_taller_than_the_terminal(width, height):
    services = [service('svc.' + 'x' * number, calls_total=10 ** number) for number in range(15)]
    view = snapshot(services, [worker(number, pid=10 ** 9) for number in range(1, 6)], age=99.0,
                    calls_per_second=123456.7, restarts={'crashed': 2})
    assert_fits(screen(view, width, height, '/srv/' + 'deep/' * 20), width, height)
    assert_fits(problem_screen('the server does not answer on /run/zato-daemon/admin.sock: [Errno 111] '
                               'Connection refused', width, height), width, height)


def test_wide_characters_count_as_two_cells():
    lines = screen(snapshot([service('crm.客户.' + '查询' * 30)]), 80, 40, DIR)
    assert_fits(lines, 80)
    assert lines[3].startswith('crm.客户.查询')


def test_control_characters_in_a_name_cannot_drive_the_terminal():
    row = screen(snapshot([service('evil\x1b[2J\nname')]), 100, 40, DIR)[3]
    assert row.split()[0] == 'evil?[2J?name'


# ---- the header

def test_a_view_older_than_5_seconds_is_marked_stale():
    assert screen(snapshot(age=5.0), 100, 40, DIR)[0] == '/srv/crm  workers 0  calls/s 0.0  in flight 0  age 5.0 s'
    assert screen(snapshot(age=5.2), 100, 40, DIR)[0] == (
        'STALE  /srv/crm  workers 0  calls/s 0.0  in flight 0  age 5.2 s')


def test_the_stale_marker_stays_when_the_directory_goes():
    assert screen(snapshot(age=12.0), 60, 40, '/a/long/directory')[0] == (
        'STALE  workers 0  calls/s 0.0  in flight 0  age 12.0 s')


def test_restarts_show_when_there_were_some():
    header = screen(snapshot(restarts={'crashed': 2, 'over memory': 1}), 100, 40, DIR)[0]
    assert header == '/srv/crm  workers 0  calls/s 0.0  in flight 0  restarts 3  age 0.4 s'


# ---- no view

def test_a_problem_is_its_message_and_that_top_keeps_trying():
    message = 'the server does not answer on /srv/crm/run/admin.sock: [Errno 2] No such file or directory'
    assert problem_screen(message, 120, 40) == [message, '', 'retrying every 1 s; q quits']


def test_a_problem_wider_than_the_terminal_wraps_instead_of_losing_its_end():
    message = 'the server does not answer on /srv/crm/run/admin.sock: [Errno 111] Connection refused'
    lines = problem_screen(message, 40, 40)
    assert_fits(lines, 40)
    assert lines[-3].endswith('Connection refused')
    assert ' '.join(lines[:-2]) == message


@pytest.mark.parametrize('text, width, expected', [
    ('demo.echo', 9, 'demo.echo'), ('demo.echo', 8, f'demo.ec{ELLIPSIS}'), ('demo', 1, ELLIPSIS), ('demo', 0, ''),
    ('查询', 3, f'查{ELLIPSIS}'),
])
def test_fit(text, width, expected):
    assert fit(text, width) == expected


def test_fit_tail_keeps_the_end():
    assert fit_tail('/srv/instances/crm', 8) == f'{ELLIPSIS}ces/crm'


# ---- the answer of zato.server.metrics

SOCKET = '/srv/crm/run/admin.sock'


def test_a_view_of_version_1_is_the_view():
    view = snapshot()
    assert view_or_error(200, view, SOCKET, DIR) is view


@pytest.mark.parametrize('status, answer, kind, exit_status, message', [
    (404, {'error': 'metrics are off on this server'}, ConfigError, EXIT_CONFIG,
     'the server of /srv/crm counts nothing: [metrics] enabled is false in server.conf; set it to true and '
     'reload to use top'),
    (503, {'error': 'the master has not published its first view yet'}, ViewPending, EXIT_UNAVAILABLE,
     f'no view yet from the server on {SOCKET}: the master has not published its first view yet'),
    (500, {'error': 'Internal error', 'cid': 'abc'}, AdminCallError, EXIT_UNAVAILABLE,
     f'the server on {SOCKET} answered 500 to zato.server.metrics: Internal error'),
    (200, 'not json', AdminCallError, EXIT_UNAVAILABLE,
     f'the server on {SOCKET} answered 200 to zato.server.metrics: not json'),
    (200, {'version': 2}, AdminCallError, EXIT_UNAVAILABLE,
     f'the server on {SOCKET} sent a view of version 2; this zato-daemon reads version 1'),
])
def test_what_is_not_a_view_is_an_error_with_its_exit_status(status, answer, kind, exit_status, message):
    error = view_or_error(status, answer, SOCKET, DIR)
    assert type(error) is kind
    assert (error.exit_status, str(error)) == (exit_status, message)
