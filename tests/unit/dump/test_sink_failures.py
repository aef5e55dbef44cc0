"""What a failed part of a dump is told with (dump/failures.py): pure, case by case."""

import logging

from zato_daemon.dump.failures import LOGGER_NAME, MAX_ERROR_CHARS, describe_error, failure_message, log_line
from zato_daemon.logs.context import ContextFilter
from zato_daemon.logs.files import LineFormatter
from zato_daemon.logs.throttle import Throttles


def test_the_line_is_what_the_logging_modules_formatter_writes_for_the_same_record():
    record = logging.LogRecord(LOGGER_NAME, logging.WARNING, '/x/sink.py', 123, 'worker-1 (pid 42) could not ...', (),
                               None)
    record.created, record.msecs, record.process = 1_764_770_000.0457, 45.0, 42
    ContextFilter('worker-1').filter(record)
    expected = LineFormatter().format(record) + '\n'
    assert log_line(1_764_770_000.0457, 'worker-1', 42, 123, 'worker-1 (pid 42) could not ...') == expected


def test_the_message_names_the_process_the_dump_the_part_and_the_error():
    assert failure_message('master', 7, 'journal', 'OSError: [Errno 111] Connection refused', 1, 'feedc0de') == (
        'master (pid 7) could not send the dump feedc0de to the journal: OSError: [Errno 111] Connection refused')
    assert failure_message('worker-2', 8, 'collect', 'MemoryError: ', 3) == (
        'worker-2 (pid 8) could not collect the dump: MemoryError:  (3 failures of this part since the last report)')
    assert failure_message('worker-2', 8, 'report', 'BrokenPipeError: [Errno 32] Broken pipe', 1, 'ab') == (
        'worker-2 (pid 8) could not report the dump ab to the master: BrokenPipeError: [Errno 32] Broken pipe')


def test_an_error_is_one_bounded_line():
    assert describe_error(OSError(28, 'No space left on device')) == 'OSError: [Errno 28] No space left on device'
    assert describe_error(ValueError('two\nlines\r\n  here')) == 'ValueError: two lines here'
    long = describe_error(RuntimeError('x' * 10_000))
    assert len(long) == MAX_ERROR_CHARS and long.endswith('...') and long.startswith('RuntimeError: xxx')


def test_the_throttle_tells_each_part_once_per_interval_with_the_count():
    throttle = Throttles(interval=60)
    assert [throttle.occurred('server.log', now) for now in (0, 1, 2)] == [1, 0, 0]
    assert throttle.occurred('journal', 3) == 1  # another part: its own minute
    assert throttle.occurred('server.log', 59.9) == 0
    assert throttle.occurred('server.log', 60) == 4
    assert throttle.occurred('journal', 4) == 0
