"""Tests of zato_daemon.config.load: typed values, defaults, error messages, in-place changes."""

import json
import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from zato_daemon.config import CONFIG_FILES, load_config
from zato_daemon.config.reading import decode, file_kind_problem
from zato_daemon.config.settings import MAX_FILE_SIZE
from zato_daemon.config.settings import settings_of
from zato_daemon.config.validators import usable_cpus
from zato_daemon.errors import EXIT_CONFIG, ConfigError

SHIPPED_DIR = Path(__file__).parents[3] / 'etc' / 'zato-daemon'


def make_server_dir(tmp_path, **files):
    """Writes a server directory: `server_conf='...'` becomes server.conf, and so on."""
    files.setdefault('server_conf', '[main]\n')
    for attribute, text in files.items():
        name = attribute.replace('_conf', '.conf').replace('simple_io', 'simple-io')
        (tmp_path / name).write_text(text, encoding='utf-8')
    return tmp_path


def load_with(tmp_path, **files):
    return load_config(make_server_dir(tmp_path, **files))


# The shipped configuration ####################################################################


def test_shipped_config_gives_typed_values():
    config = load_config(SHIPPED_DIR)
    main = config.server_config.main
    assert (main.host, main.port, main.cluster_id, main.backlog) == ('127.0.0.1', 17010, 1, 2048)
    assert main.workers == usable_cpus() and main.raw('workers') == 'auto'
    timeouts = (main.graceful_timeout, main.keep_alive_timeout, main.worker_boot_timeout)
    assert timeouts == (30.0, 60.0, 60.0)
    assert isinstance(main.graceful_timeout, float)
    assert main.max_request_size == 1048576
    assert config.server_config.component_enabled.hot_deploy is True
    assert config.server_config.services.modules == [
        'zato_daemon.examples.echo', 'zato_daemon.examples.sleep', 'zato_daemon.examples.fail']
    assert config.server_config.services.paths == []
    assert dict(config.server_config.channels.items()) == {'/echo': 'demo.echo'}
    assert config.server_config.logging.level == 'INFO'
    assert config.pickup_config.hot_deploy.as_dict() == {
        'pickup_dir': '', 'poll_interval': 1.0, 'import_timeout': 10.0}
    assert config.server_config.misc.startup_callable_timeout == 30.0
    assert config.sio_config.json.as_dict() == {
        'sort_keys': False, 'indent': 0, 'ensure_ascii': False}
    assert config.sso_config.main.is_enabled is False


def test_shipped_config_reads_all_four_files():
    config = load_config(SHIPPED_DIR)
    assert config.paths_read == [SHIPPED_DIR / name for name in CONFIG_FILES]
    assert config.base_dir == SHIPPED_DIR.absolute()


def test_as_dict_is_plain_json():
    config = load_config(SHIPPED_DIR)
    data = json.loads(json.dumps(config.as_dict()))
    assert data['server.conf']['main']['port'] == 17010
    assert data['server.conf']['channels'] == {'/echo': 'demo.echo'}
    assert config.server_config.sections() == ['main', 'component_enabled', 'services', 'channels',
                                               'logging', 'loggers', 'caches', 'diagnostics',
                                               'slow_thresholds', 'metrics', 'cluster', 'misc']


def test_as_dict_is_a_copy():
    config = load_config(SHIPPED_DIR)
    config.server_config.as_dict()['services']['modules'].append('x')
    assert 'x' not in config.server_config.services.modules


# Defaults #####################################################################################


def defaults(file, section):
    return {setting.name: setting.default_value() for setting in settings_of(file, section)}


def test_missing_optional_files_mean_defaults(tmp_path):
    config = load_with(tmp_path, server_conf='[main]\nport = 18000\n')
    assert config.paths_read == [tmp_path / 'server.conf']
    assert config.server_config.main.port == 18000
    assert config.server_config.main.host == '127.0.0.1'
    assert config.pickup_config.hot_deploy.as_dict() == defaults('pickup.conf', 'hot_deploy')
    assert config.sio_config.json.as_dict() == defaults('simple-io.conf', 'json')
    assert config.sso_config.main.is_enabled is False
    assert list(config.server_config.channels) == []


def test_empty_server_conf_is_all_defaults(tmp_path):
    config = load_with(tmp_path, server_conf='')
    assert config.server_config.main.as_dict() == defaults('server.conf', 'main')


def test_optional_file_overrides_only_its_keys(tmp_path):
    config = load_with(tmp_path, pickup_conf='[hot_deploy]\npoll_interval = 0.25\n')
    assert config.pickup_config.hot_deploy.poll_interval == 0.25
    assert config.pickup_config.hot_deploy.pickup_dir == ''
    assert config.paths_read == [tmp_path / 'server.conf', tmp_path / 'pickup.conf']


# Errors in the files ##########################################################################

ERROR_CASES = [
    # (file, text, line, key, part of the reason)
    ('server.conf', '[main]\nport = abc\n', 2, '[main] port',
     "expected an integer from 1 to 65535, got 'abc'"),
    ('server.conf', '[main]\nhost = x\nport = 70000\n', 3, '[main] port',
     "expected an integer from 1 to 65535, got '70000'"),
    ('server.conf', 'port = 1\n', 1, None, 'a key comes before any [section] header'),
    ('server.conf', '[main]\nport 17010\n', 2, None,
     "not a section header nor a key: 'port 17010'"),
    ('server.conf', '[main]\n\n[main]\n', 3, '[main]', 'section appears twice'),
    ('server.conf', '[main]\nport = 1\nport = 2\n', 3, '[main] port', 'key set twice'),
    ('server.conf', '[main]\n[mian]\n', 2, '[mian]', 'unknown section; did you mean [main]?'),
    ('server.conf', '[zzz]\n', 1, '[zzz]', 'the sections of server.conf are [main], '),
    ('server.conf', '[DEFAULT]\nport = 1\n', 1, '[DEFAULT]', 'unknown section'),
    ('server.conf', '[json]\n', 1, '[json]', '[json] belongs in simple-io.conf'),
    ('server.conf', '[main]\nprot = 1\n', 2, '[main] prot', "unknown key; did you mean 'port'?"),
    ('server.conf', '[main]\nPort = 1\n', 2, '[main] Port', "unknown key; did you mean 'port'?"),
    ('server.conf', '[main]\nzzz = 1\n', 2, '[main] zzz', 'the keys of [main] are host, port, '),
    ('server.conf', '[main]\nhot_deploy = no\n', 2, '[main] hot_deploy',
     'hot_deploy belongs in [component_enabled]'),
    ('server.conf', '[main]\nworkers = 0\n', 2, '[main] workers',
     "expected an integer from 1 to 256, or auto, got '0'"),
    ('server.conf', '[main]\nworkers = 1000\n', 2, '[main] workers',
     "expected an integer from 1 to 256, or auto, got '1000'"),
    # The case: start crashed with an OverflowError in listen(2).
    ('server.conf', '[main]\nbacklog = 100000000000000000000\n', 2, '[main] backlog',
     "expected an integer from 1 to 65535, got '100000000000000000000'"),
    ('server.conf', '[main]\nmax_connections = 2000000\n', 2, '[main] max_connections',
     'from 1 to 1048576'),
    ('server.conf', '[main]\nkeep_alive_timeout = 86401\n', 2, '[main] keep_alive_timeout',
     "expected a number of seconds more than 0 and at most 86400, got '86401'"),
    ('server.conf', '[main]\nhang_timeout = 1\n', 2, '[main] hang_timeout',
     "expected a number of seconds from 2 to 86400, got '1'"),
    ('server.conf', '[main]\nmax_request_size = 2G\n', 2, '[main] max_request_size',
     "a size in bytes such as 1048576, 1024K or 1M, from 1 to 1G, got '2G'"),
    ('server.conf', '[main]\nmax_worker_memory = 2000G\n', 2, '[main] max_worker_memory', 'from 0 to 1024G'),
    ('server.conf', '[logging]\ndump_max_size = 100\n', 2, '[logging] dump_max_size', 'from 1K to 64M'),
    ('server.conf', '[diagnostics]\nsamples_keep = 100001\n', 2, '[diagnostics] samples_keep',
     'from 1 to 100000'),
    ('server.conf', '[slow_thresholds]\ncrm.get = 0\n', 2, '[slow_thresholds] crm.get',
     "expected an integer from 1 to 86400000, got '0'"),
    ('server.conf', '[misc]\nstartup_callable_timeout = 3601\n', 2, '[misc] startup_callable_timeout',
     "expected a number of seconds from 1 to 3600, got '3601'"),
    ('pickup.conf', '[hot_deploy]\nimport_timeout = 0.5\n', 2, '[hot_deploy] import_timeout',
     "expected a number of seconds from 1 to 600, got '0.5'"),
    ('pickup.conf', '[hot_deploy]\npoll_interval = 0.01\n', 2, '[hot_deploy] poll_interval',
     'from 0.05 to 3600'),
    ('simple-io.conf', '[json]\nindent = 17\n', 2, '[json] indent', "from 0 to 16, got '17'"),
    ('server.conf', '[main]\nhost = 127.0.0.1\x00\n', 2, '[main] host', 'without control characters'),
    ('server.conf', '[main]\nmax_request_size = 1T\n', 2, '[main] max_request_size',
     "got '1T'"),
    ('server.conf', '[main]\ngraceful_timeout = 0\n', 2, '[main] graceful_timeout',
     'expected a number of seconds more than 0 and at most 86400'),
    ('server.conf', '[main]\nhost = a\n  b\n', 2, '[main] host',
     "expected a single-line string without control characters, not empty, got 'a\\nb'"),
    ('server.conf', '[component_enabled]\nhot_deploy = maybe\n', 2,
     '[component_enabled] hot_deploy', 'expected true or false'),
    ('server.conf', '[logging]\nlevel = LOUD\n', 2, '[logging] level',
     "expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'"),
    ('server.conf', '[services]\nmodules = a.b, 1c\n', 2, '[services] modules',
     "in the list: expected a dotted Python name"),
    ('server.conf', '[channels]\necho = demo.echo\n', 2, '[channels] echo',
     "expected a URL path starting with '/'"),
    ('server.conf', '[channels]\n/echo =\n', 2, '[channels] /echo', 'expected a service name'),
    ('server.conf', '[channels]\n/echo = demo echo\n', 2, '[channels] /echo',
     "got 'demo echo'"),
    ('server.conf', '[channels]\n/a?b = demo.echo\n', 2, '[channels] /a?b', "'?'"),
    # Comments, blank lines and continuation lines do not shift the line reported.
    ('server.conf', '# a comment\n\n[services]\nmodules = a,\n    b\n\n[main]\n  ; x\nport = x\n',
     9, '[main] port', "got 'x'"),
    ('pickup.conf', '[hot_deploy]\npoll_interval = nan\n', 2, '[hot_deploy] poll_interval',
     "got 'nan'"),
    ('pickup.conf', '[main]\n', 1, '[main]', '[main] belongs in server.conf'),
    ('simple-io.conf', '[json]\nindent = -1\n', 2, '[json] indent',
     "expected an integer from 0 to 16, got '-1'"),
    ('sso.conf', '[main]\nis_enabled = true\n', 2, '[main] is_enabled',
     'SSO is not supported by zato-daemon; set it to false'),
]


@pytest.mark.parametrize(('file', 'text', 'line', 'key', 'reason'), ERROR_CASES,
                         ids=[f'{case[0]}:{case[1]!r}' for case in ERROR_CASES])
def test_error_names_file_line_and_key(tmp_path, file, text, line, key, reason):
    (tmp_path / 'server.conf').write_text('[main]\n')
    (tmp_path / file).write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    error = info.value
    message = str(error)
    assert (error.path, error.line, error.key) == (tmp_path / file, line, key)
    prefix = f'{tmp_path / file}:{line}: ' + (f'{key}: ' if key else '')
    assert message.startswith(prefix), message
    assert reason in message
    # One line, and a fix after the semicolon.
    assert '\n' not in message and '; ' in message[len(prefix):]
    assert error.exit_status == EXIT_CONFIG


def test_first_error_in_the_file_is_reported(tmp_path):
    (tmp_path / 'server.conf').write_text('[main]\nport = x\nbacklog = y\n')
    with pytest.raises(ConfigError, match=r'server\.conf:2: \[main\] port: '):
        load_config(tmp_path)


def test_value_error_offers_the_default(tmp_path):
    (tmp_path / 'server.conf').write_text('[main]\nmax_request_size = big\n')
    with pytest.raises(ConfigError, match=r'delete the line to use the default \(1M\)$'):
        load_config(tmp_path)


def test_missing_server_conf(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.path == tmp_path / 'server.conf'
    assert str(info.value).startswith(f'{tmp_path / "server.conf"}: file not found; ')


def test_config_dir_missing(tmp_path):
    with pytest.raises(ConfigError, match='no such directory; pass the server directory'):
        load_config(tmp_path / 'nothing')


def test_config_dir_is_a_file(tmp_path):
    (tmp_path / 'server.conf').write_text('[main]\n')
    with pytest.raises(ConfigError, match=r'server\.conf: not a directory; '):
        load_config(tmp_path / 'server.conf')


def test_unreadable_file(tmp_path):
    # Permissions cannot make a file unreadable to root (tests may run as root): a symlink
    # loop cannot be read by anyone.
    os.symlink(tmp_path / 'server.conf', tmp_path / 'server.conf')
    with pytest.raises(ConfigError, match=r'server\.conf: cannot read the file: Too many levels of symbolic links; '):
        load_config(tmp_path)


def test_dangling_symlink_is_an_error_not_a_missing_file(tmp_path):
    make_server_dir(tmp_path)
    os.symlink(tmp_path / 'gone.conf', tmp_path / 'pickup.conf')
    with pytest.raises(ConfigError, match=r'pickup\.conf: cannot read the file: it is a symlink to nothing; '):
        load_config(tmp_path)


def make_fifo(path):
    os.mkfifo(path)


def make_socket(path):
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    return sock


NOT_REGULAR = [
    ('a directory', lambda path: path.mkdir()),
    ('a FIFO (named pipe)', make_fifo),
    ('a socket', make_socket),
    ('a character device', lambda path: os.symlink('/dev/zero', path)),
]


@pytest.mark.parametrize(('kind', 'make'), NOT_REGULAR, ids=[case[0] for case in NOT_REGULAR])
@pytest.mark.parametrize('file', CONFIG_FILES)
def test_a_config_file_must_be_a_regular_file(tmp_path, file, kind, make):
    make_server_dir(tmp_path)
    (tmp_path / file).unlink(missing_ok=True)
    made = make(tmp_path / file)
    outcome = {}

    def load():
        try:
            load_config(tmp_path)
        except ConfigError as error:
            outcome['error'] = error

    # A FIFO with no writer, or /dev/zero, would block or never end if read: the load runs
    # in a thread so that a regression fails here instead of hanging the suite.
    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(30)
    if made is not None:
        made.close()
    assert not thread.is_alive(), f'loading {file} as {kind} did not return'
    error = outcome['error']
    assert str(error) == f'{tmp_path / file}: not a regular file but {kind}; {file} must be a regular file'
    assert error.exit_status == EXIT_CONFIG


@pytest.mark.parametrize(('mode', 'expected'), [
    (stat.S_IFREG | 0o640, None), (stat.S_IFDIR | 0o755, 'a directory'), (stat.S_IFIFO | 0o600, 'a FIFO (named pipe)'),
    (stat.S_IFSOCK | 0o600, 'a socket'), (stat.S_IFCHR | 0o666, 'a character device'),
    (stat.S_IFBLK | 0o660, 'a block device')])
def test_file_kind_problem(mode, expected):
    assert file_kind_problem(mode) == expected


def test_a_file_of_the_largest_size_loads_and_one_byte_more_does_not(tmp_path):
    line = '# ' + 'x' * 1021 + '\n'
    text = '[main]\n' + line * (MAX_FILE_SIZE // len(line) - 1)
    text += '#' * (MAX_FILE_SIZE - len(text) - 1) + '\n'
    assert len(text) == MAX_FILE_SIZE
    assert load_with(tmp_path, server_conf=text).server_config.main.port == 17010
    (tmp_path / 'server.conf').write_text(text + '#')
    with pytest.raises(ConfigError, match=r'server\.conf: larger than 1 MiB, which no configuration file is; '):
        load_config(tmp_path)


def test_a_utf8_bom_is_accepted(tmp_path):
    (tmp_path / 'server.conf').write_bytes(b'\xef\xbb\xbf# saved by Notepad\n[main]\nport = 18000\n')
    (tmp_path / 'pickup.conf').write_bytes(b'\xef\xbb\xbf[hot_deploy]\npoll_interval = 2\n')
    config = load_config(tmp_path)
    assert config.server_config.main.port == 18000
    assert config.pickup_config.hot_deploy.poll_interval == 2.0


def test_lines_are_counted_the_same_after_a_bom(tmp_path):
    (tmp_path / 'server.conf').write_bytes(b'\xef\xbb\xbf[main]\nhost = x\nport = 0\n')
    with pytest.raises(ConfigError, match=r'server\.conf:3: \[main\] port: '):
        load_config(tmp_path)


def test_file_not_utf8_names_the_line(tmp_path):
    make_server_dir(tmp_path)
    (tmp_path / 'sso.conf').write_bytes(b'[main]\n# caf\xe9\n')
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == (f'{tmp_path / "sso.conf"}:2: not valid UTF-8 (invalid continuation byte at '
                               'byte 6 of the line); save the file as UTF-8')
    assert info.value.line == 2


@pytest.mark.parametrize(('data', 'line', 'byte'), [
    (b'\xff', 1, 1), (b'a\nb\nc\xc3', 3, 2), (b'\xef\xbb\xbf\n\xe9', 2, 1), (b'ab\xef\xbb\xbf\n\xe9', 2, 1)])
def test_decode_names_the_line_and_byte(data, line, byte):
    with pytest.raises(ConfigError) as info:
        decode(data, Path('x.conf'))
    assert info.value.line == line and f'at byte {byte} of the line' in str(info.value)


def test_decode_drops_only_a_leading_bom():
    assert decode(b'\xef\xbb\xbf[main]\n', Path('x.conf')) == '[main]\n'
    assert decode(b'a\xef\xbb\xbf', Path('x.conf')) == 'a\ufeff'


# Syntax details ###############################################################################


def test_no_inline_comments_and_no_interpolation(tmp_path):
    text = '[main]\nhost = h#1 ;x\n[channels]\n/a%20b = demo.x%\n'
    config = load_with(tmp_path, server_conf=text)
    assert config.server_config.main.host == 'h#1 ;x'
    assert config.server_config.channels['/a%20b'] == 'demo.x%'


def test_channel_keys_are_case_sensitive_and_may_hold_colons(tmp_path):
    text = '[channels]\n/Echo = a.b\n/echo = c.d\n/api:v1 = e.f\n'
    channels = load_with(tmp_path, server_conf=text).server_config.channels
    assert dict(channels.items()) == {'/Echo': 'a.b', '/echo': 'c.d', '/api:v1': 'e.f'}
    assert list(channels) == ['/Echo', '/echo', '/api:v1']
    assert '/echo' in channels and '/ECHO' not in channels


def test_list_spans_lines_and_drops_empty_items(tmp_path):
    text = ('[services]\nmodules = a.b,\n    c.d\n\n    e.f,,\n'
            'paths = one, ,two\n  three\n')
    services = load_with(tmp_path, server_conf=text).server_config.services
    assert services.modules == ['a.b', 'c.d', 'e.f']
    assert services.paths == ['one', 'two', 'three']


@pytest.mark.parametrize(('text', 'expected'), [
    ('1024', 1024), ('1K', 1024), ('1k', 1024), ('1M', 1048576), ('3 M', 3 * 1048576),
    ('1G', 1024 ** 3), ('1048576', 1048576)])
def test_size_suffixes(tmp_path, text, expected):
    config = load_with(tmp_path, server_conf=f'[main]\nmax_request_size = {text}\n')
    assert config.server_config.main.max_request_size == expected


@pytest.mark.parametrize('text', ['1.5M', 'M', '0', '-1', '1KB', '1 000'])
def test_bad_sizes(tmp_path, text):
    with pytest.raises(ConfigError, match=r':2: \[main\] max_request_size: expected a size'):
        load_with(tmp_path, server_conf=f'[main]\nmax_request_size = {text}\n')


@pytest.mark.parametrize('text', ['auto', 'AUTO', ' Auto '])
def test_workers_auto_is_usable_cpus(tmp_path, text):
    main = load_with(tmp_path, server_conf=f'[main]\nworkers = {text}\n').server_config.main
    assert main.workers == usable_cpus() >= 1
    assert isinstance(main.workers, int)


def test_workers_number(tmp_path):
    main = load_with(tmp_path, server_conf='[main]\nworkers = 3\n').server_config.main
    assert (main.workers, main.raw('workers')) == (3, '3')


@pytest.mark.parametrize(('text', 'expected'), [
    ('true', True), ('Yes', True), ('ON', True), ('1', True),
    ('false', False), ('no', False), ('Off', False), ('0', False)])
def test_booleans(tmp_path, text, expected):
    config = load_with(tmp_path, server_conf=f'[component_enabled]\nhot_deploy = {text}\n')
    assert config.server_config.component_enabled.hot_deploy is expected


def test_log_level_any_case(tmp_path):
    config = load_with(tmp_path, server_conf='[logging]\nlevel = debug\n')
    assert config.server_config.logging.level == 'DEBUG'


# Access and in-place changes ##################################################################


def test_item_access_iteration_and_items():
    main = load_config(SHIPPED_DIR).server_config.main
    assert main['port'] == main.port == 17010
    assert 'port' in main and 'nope' not in main
    assert list(main)[:2] == ['host', 'port']
    assert ('port', 17010) in main.items()
    assert load_config(SHIPPED_DIR).server_config['main']['host'] == '127.0.0.1'


def test_unknown_attribute_read_raises_attribute_error():
    config = load_config(SHIPPED_DIR)
    with pytest.raises(AttributeError,
                       match=r"server_config\.main has no key 'prot'; did you mean 'port'\?"):
        config.server_config.main.prot
    with pytest.raises(AttributeError,
                       match=r"server_config has no section 'mian'; did you mean 'main'\?"):
        config.server_config.mian
    with pytest.raises(KeyError, match='has no key'):
        config.server_config.main['prot']


@pytest.mark.parametrize(('value', 'expected'), [(17011, 17011), ('17011', 17011), (' 80 ', 80)])
def test_assign_port(value, expected):
    config = load_config(SHIPPED_DIR)
    config.server_config.main.port = value
    assert config.server_config.main.port == expected
    assert config.server_config.unknown_assignments == []


@pytest.mark.parametrize(('value', 'expected'), [(False, False), ('off', False), (True, True)])
def test_assign_bool(value, expected):
    config = load_config(SHIPPED_DIR)
    config.server_config.component_enabled.hot_deploy = value
    assert config.server_config.component_enabled.hot_deploy is expected


@pytest.mark.parametrize('value', ['abc', 0, 65536, True, 1.5, None])
def test_assign_bad_port_raises_and_keeps_the_value(value):
    config = load_config(SHIPPED_DIR)
    with pytest.raises(ConfigError) as info:
        config.server_config.main.port = value
    assert str(info.value).startswith(
        f'server_config.main.port: expected an integer from 1 to 65535, got {value!r}; ')
    assert config.server_config.main.port == 17010


def test_assign_by_item_is_validated():
    config = load_config(SHIPPED_DIR)
    with pytest.raises(ConfigError, match='expected true or false'):
        config.server_config.component_enabled['hot_deploy'] = 'maybe'
    config.server_config.main['workers'] = 'auto'
    assert config.server_config.main.workers == usable_cpus()


def test_assign_list_and_sso():
    config = load_config(SHIPPED_DIR)
    config.server_config.services.modules = ('a.b', 'c')
    assert config.server_config.services.modules == ['a.b', 'c']
    with pytest.raises(ConfigError, match='SSO is not supported'):
        config.sso_config.main.is_enabled = True


def test_unknown_assignment_is_stored_and_recorded():
    config = load_config(SHIPPED_DIR)
    config.server_config.component_enabled.cassandara = True
    assert config.server_config.component_enabled.cassandara is True
    assert config.server_config.unknown_assignments == ['component_enabled.cassandara']
    assert config.pickup_config.unknown_assignments == []


def test_sections_cannot_be_replaced():
    config = load_config(SHIPPED_DIR)
    with pytest.raises(AttributeError, match='cannot be replaced'):
        config.server_config.main = {}


def test_channels_assignment_is_validated():
    config = load_config(SHIPPED_DIR)
    channels = config.server_config.channels
    channels['/new'] = 'demo.new'
    assert channels['/new'] == 'demo.new'
    with pytest.raises(ConfigError, match=r"server_config\.channels\['new'\]: expected a URL path"):
        channels['new'] = 'demo.new'
    with pytest.raises(ConfigError, match='expected a service name'):
        channels['/x'] = 'two words'
    del channels['/echo']
    assert list(channels) == ['/new']
    assert config.server_config.unknown_assignments == []


def test_configs_are_independent():
    first, second = load_config(SHIPPED_DIR), load_config(SHIPPED_DIR)
    first.server_config.main.port = 1
    assert second.server_config.main.port == 17010


# Paths ########################################################################################


def test_resolve_path(tmp_path):
    config = load_with(tmp_path)
    assert config.resolve_path('services') == tmp_path / 'services'
    assert config.resolve_path('/srv/x') == Path('/srv/x')
    assert config.resolve_path('') is None


def test_relative_config_dir_becomes_absolute(tmp_path, monkeypatch):
    make_server_dir(tmp_path)
    monkeypatch.chdir(tmp_path.parent)
    config = load_config(tmp_path.name)
    assert config.base_dir == tmp_path and config.base_dir.is_absolute()
    assert config.resolve_path('x') == tmp_path / 'x'


@pytest.mark.parametrize(('key', 'value'), [('backlog', 10 ** 20), ('backlog', '100000000000000000000'),
                                            ('workers', 257), ('graceful_timeout', 86401), ('hang_timeout', 1.5)])
def test_assignments_are_held_to_the_ranges_too(key, value):
    # A startup callable at FS_CONFIG_ONLY, at start or at a reload, goes through the same check.
    config = load_config(SHIPPED_DIR)
    before = config.server_config.main[key]
    with pytest.raises(ConfigError, match=rf'^server_config\.main\.{key}: expected .*, got '):
        config.server_config.main[key] = value
    assert config.server_config.main[key] == before
