"""The helper both SQLite stores use: transactions, the failure report, the connection's
settings and life (real files, real SQLite connections)."""

import logging
import os
import sqlite3
import stat

import pytest

from zato_daemon.sqlite_store import STORE_ERRORS, WARNING_INTERVAL, Database, FailureReport, transaction

LOGGER = 'tests.sqlite_store'
TITLE = 'Test database'
REPAIR_WORDS = ('this worker uses the new file', '. Nothing of the old one is left')


@pytest.fixture
def clock():
    """Seconds that move only when a test moves them: `clock.now += 10`."""
    def read():
        return read.now

    read.now = 100.0
    return read


@pytest.fixture
def messages(caplog):
    """The messages logged on LOGGER at a level, oldest first."""
    caplog.set_level(logging.INFO, logger=LOGGER)

    def at(level):
        return [record.getMessage() for record in caplog.records if record.name == LOGGER and record.levelno == level]

    return at


@pytest.fixture
def connections(tmp_path):
    """Two connections to one WAL database with a table t: a writer and a reader."""
    path = tmp_path / 'db.sqlite3'
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute('PRAGMA journal_mode = WAL')
    writer.execute('CREATE TABLE t (x)')
    reader = sqlite3.connect(path, isolation_level=None, timeout=0)
    yield writer, reader
    writer.close()
    reader.close()


def rows(connection):
    return [row[0] for row in connection.execute('SELECT x FROM t ORDER BY x')]


# ---- transaction

def test_a_transaction_commits_what_its_body_wrote(connections):
    writer, reader = connections
    with transaction(writer) as connection:
        assert connection is writer and writer.in_transaction
        writer.execute('INSERT INTO t VALUES (1)')
        assert rows(reader) == []
    assert not writer.in_transaction
    assert rows(reader) == [1]


def test_an_error_in_the_body_rolls_back_and_is_raised_again(connections):
    writer, reader = connections
    with pytest.raises(ZeroDivisionError):
        with transaction(writer):
            writer.execute('INSERT INTO t VALUES (1)')
            1 / 0
    assert not writer.in_transaction
    assert rows(writer) == rows(reader) == []


def test_a_failing_commit_rolls_back_and_is_raised(tmp_path):
    # A deferred foreign key is checked at COMMIT, which fails and leaves the transaction open.
    connection = sqlite3.connect(tmp_path / 'fk.sqlite3', isolation_level=None)
    connection.execute('PRAGMA foreign_keys = ON')
    connection.execute('CREATE TABLE parent (id INTEGER PRIMARY KEY)')
    connection.execute('CREATE TABLE child (parent REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)')
    with pytest.raises(sqlite3.IntegrityError, match='FOREIGN KEY'):
        with transaction(connection):
            connection.execute('INSERT INTO child VALUES (42)')
    assert not connection.in_transaction
    assert connection.execute('SELECT COUNT(*) FROM child').fetchone()[0] == 0
    connection.close()


def test_a_write_transaction_takes_the_lock_at_begin(connections):
    writer, reader = connections
    with transaction(writer):
        # The writer has written nothing yet, and still another writer waits (here: fails at once).
        with pytest.raises(sqlite3.OperationalError, match='locked'):
            with transaction(reader):
                pass
        assert not reader.in_transaction


def test_a_read_transaction_reads_one_snapshot(connections):
    writer, reader = connections
    writer.execute('INSERT INTO t VALUES (1)')
    with transaction(reader, 'BEGIN'):
        assert rows(reader) == [1]
        writer.execute('INSERT INTO t VALUES (2)')
        assert rows(reader) == [1]
    assert rows(reader) == [1, 2]


# ---- FailureReport

def make_report(clock):
    return FailureReport(logging.getLogger(LOGGER), TITLE, '/srv/db', clock)


def test_the_first_failure_warns_at_once_with_the_consequences(clock, messages):
    report = make_report(clock)
    assert not report.is_failing
    assert report.failed('writing', sqlite3.OperationalError('database is locked'), '; %d queued', 3) is True
    assert report.is_failing and report.failures == 1
    assert messages(logging.WARNING) == [
        'Test database /srv/db unavailable while writing (OperationalError: database is locked); 3 queued']


def test_failures_warn_at_most_once_per_interval(clock, messages):
    report = make_report(clock)
    error = OSError('no space')
    assert report.failed('writing', error) is True
    clock.now += WARNING_INTERVAL - 1
    assert report.failed('writing', error) is False
    assert report.failed('pruning', error) is False
    clock.now += 1
    assert report.failed('reading', error) is True
    assert report.failures == 4
    assert messages(logging.WARNING) == ['Test database /srv/db unavailable while writing (OSError: no space)',
                                         'Test database /srv/db unavailable while reading (OSError: no space)']


def test_recovery_is_said_once_with_the_count_and_the_next_failure_warns_at_once(clock, messages):
    report = make_report(clock)
    for _ in range(3):
        report.failed('writing', OSError('gone'))
    report.succeeded()
    report.succeeded()
    assert messages(logging.INFO) == ['Test database /srv/db available again after 3 failed attempts']
    assert not report.is_failing
    # Within the interval of the last WARNING, but a new outage.
    assert report.failed('writing', OSError('gone again')) is True
    assert len(messages(logging.WARNING)) == 2


def test_success_without_failures_says_nothing(clock, messages):
    make_report(clock).succeeded()
    assert messages(logging.INFO) == messages(logging.WARNING) == []


# ---- Database

class Prepared:
    """A store's prepare(): creates its table and counts the connections it was given."""

    def __init__(self, failures=0):
        self.connections = []
        self.failures = failures

    def __call__(self, connection):
        self.connections.append(connection)
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError('prepare failed')
        with transaction(connection):
            connection.execute('CREATE TABLE IF NOT EXISTS t (x)')


def make_database(path, clock, prepare, **options):
    return Database(path, TITLE, logging.getLogger(LOGGER), clock, prepare, REPAIR_WORDS, **options)


def test_nothing_is_opened_or_created_before_the_first_connect(tmp_path, clock):
    prepare = Prepared()
    database = make_database(tmp_path / 'state' / 'db.sqlite3', clock, prepare)
    assert database.connection is None and not (tmp_path / 'state').exists()
    connection = database.connect()
    assert database.connect() is connection is database.connection
    assert prepare.connections == [connection]


def test_the_connection_has_the_settings_read_back(tmp_path, clock, messages):
    path = tmp_path / 'state' / 'db.sqlite3'
    database = make_database(path, clock, Prepared(), busy_timeout=0.25, mode=0o640,
                             pragmas=('auto_vacuum = INCREMENTAL',))
    old_umask = os.umask(0o077)
    try:
        connection = database.connect()
    finally:
        os.umask(old_umask)

    def pragma(name):
        return connection.execute(f'PRAGMA {name}').fetchone()[0]

    assert pragma('journal_mode') == 'wal'
    assert pragma('synchronous') == 1                   # NORMAL
    assert pragma('busy_timeout') == 250
    assert pragma('auto_vacuum') == 2                   # INCREMENTAL: set before the first table
    assert connection.isolation_level is None           # transactions are the store's, explicit
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert messages(logging.WARNING) == []


def test_a_failing_prepare_closes_the_connection_and_the_next_connect_retries(tmp_path, clock):
    prepare = Prepared(failures=1)
    database = make_database(tmp_path / 'db.sqlite3', clock, prepare)
    with pytest.raises(STORE_ERRORS, match='prepare failed'):
        database.connect()
    assert database.connection is None
    with pytest.raises(sqlite3.ProgrammingError, match='closed'):
        prepare.connections[0].execute('SELECT 1')
    assert database.connect().execute('SELECT COUNT(*) FROM t').fetchone()[0] == 0


def test_a_deleted_file_is_left_and_a_new_one_opened_and_reported(tmp_path, clock, messages):
    path = tmp_path / 'db.sqlite3'
    database = make_database(path, clock, Prepared())
    old = database.connect()
    old.execute("INSERT INTO t VALUES ('old')")
    clock.now += 10
    assert database.moved() is False                   # the same file
    path.unlink()
    assert database.moved() is False                   # looked within the interval: not again
    clock.now += 10
    assert database.moved() is True
    assert database.connection is None
    new = database.connect()
    assert new is not old and path.exists()
    assert new.execute('SELECT COUNT(*) FROM t').fetchone()[0] == 0
    [warning] = messages(logging.WARNING)
    assert warning.startswith(f'Test database {path} was deleted while the server ran; every worker moves')
    assert warning.endswith('. Nothing of the old one is left')


def test_close_closes_and_connect_opens_again(tmp_path, clock):
    database = make_database(tmp_path / 'db.sqlite3', clock, Prepared())
    first = database.connect()
    database.close()
    database.close()
    assert database.connection is None
    with pytest.raises(sqlite3.ProgrammingError):
        first.execute('SELECT 1')
    assert database.connect() is not first
