"""Tests of the settings table and its validators, and of the shipped etc/zato-daemon/*.conf."""

import configparser
from pathlib import Path

import pytest

from zato_daemon.config import reference, settings, validators
from zato_daemon.config.load import ConfigFile, Section
from zato_daemon.config.settings import CONFIG_FILES, FILE_DOCS, SECTIONS, SETTINGS
from zato_daemon.config.validators import (
    Boolean, CacheFields, Choice, FilePath, Integer, InvalidValue, ListOf, Port, Seconds, Size, Text,
    Unsupported, WebOrigin, Workers, dotted_name, service_name, shown, url_path, usable_cpus)

SHIPPED_DIR = Path(__file__).parents[3] / 'etc' / 'zato-daemon'

# Keys the shipped files set to something other than their default, on purpose: they make the
# shipped directory the example server of `make run`.
SHIPPED_OVERRIDES = {('server.conf', 'services', 'modules')}

SETTING_IDS = [f'{s.file}:{s.key}' for s in SETTINGS]


# The table ####################################################################################


@pytest.mark.parametrize('setting', SETTINGS, ids=SETTING_IDS)
def test_setting_has_a_doc_with_a_short_first_line(setting):
    lines = setting.doc.splitlines()
    assert setting.short_doc == lines[0] and lines[0].endswith('.')
    assert len(lines[0]) <= 90
    # The first line is the short help; a blank line separates the explanation.
    assert len(lines) >= 3 and lines[1] == '' and lines[2]


@pytest.mark.parametrize('setting', SETTINGS, ids=SETTING_IDS)
def test_default_passes_its_own_validator(setting):
    typed = setting.default_value()
    assert setting.validator(setting.validator.format(typed)) == typed


def test_settings_are_unique_and_in_declared_sections():
    keys = [(s.file, s.section, s.name) for s in SETTINGS]
    assert len(keys) == len(set(keys))
    for setting in SETTINGS:
        spec = settings.find_section(setting.file, setting.section)
        assert spec is not None and not spec.is_dynamic, setting.key


def test_sections_and_files_are_documented():
    assert list(FILE_DOCS) == list(CONFIG_FILES)
    for spec in SECTIONS:
        assert spec.file in CONFIG_FILES and spec.doc
        assert spec.is_dynamic or settings.settings_of(spec.file, spec.name), spec.name


def test_names_do_not_hide_access_methods():
    # A key named like a Section method (items, raw, ...) could only be read with [].
    section_names = {name for name in dir(Section) if not name.startswith('_')}
    file_names = {name for name in dir(ConfigFile) if not name.startswith('_')}
    file_names |= {'name', 'path', 'unknown_assignments'}
    assert not {s.name for s in SETTINGS} & section_names
    assert not {spec.name for spec in SECTIONS} & file_names


# Validators ###################################################################################

VALID = [
    (Text(), ' x ', 'x'), (Text(allow_empty=True), '', ''), (FilePath(), 'a/b', 'a/b'),
    (Text(), 'a\tb', 'a\tb'),
    (Integer(0, 9), '0', 0), (Integer(1, 3), 3, 3), (Integer(-9, 9), '-5', -5), (Integer(1, 9), '+9', 9),
    (Integer(0, 9), '0009', 9), (Port(), '1', 1), (Port(), 65535, 65535),
    (Seconds(10), '0.5', 0.5), (Seconds(10), 2, 2.0), (Seconds(10), '10', 10.0), (Seconds(10), '1e-9', 1e-9),
    (Seconds(10, minimum=2), '2', 2.0), (Seconds(3600, minimum=0.05), '0.05', 0.05),
    (Boolean(), 'TRUE', True), (Boolean(), False, False), (Unsupported('X'), 'off', False),
    (Choice('A', 'B'), 'b', 'B'), (Size(1, 8192), '4k', 4096), (Size(1, 10), 10, 10),
    (Size(0, 1024 ** 3), '0', 0), (Size(0, 1024 ** 3), '1G', 1024 ** 3), (Size(1, 2048), '2 K', 2048),
    (Workers(256), 'auto', min(usable_cpus(), 256)), (Workers(256), 2, 2), (Workers(256), '256', 256),
    (ListOf(Text()), '', []), (ListOf(Text()), 'a,\nb', ['a', 'b']), (ListOf(Text()), ['a'], ['a']),
    (dotted_name(), 'a_1.b', 'a_1.b'), (service_name(), 'zato.ping', 'zato.ping'),
    (url_path(), '/', '/'), (url_path(), '/a/b:c', '/a/b:c'),
    (WebOrigin(), 'https://portal.example.com', 'https://portal.example.com'),
    (WebOrigin(), 'HTTPS://Portal.Example.com:443', 'https://portal.example.com'),
    (WebOrigin(), 'http://localhost:80', 'http://localhost'),
    (WebOrigin(), 'http://localhost:8080', 'http://localhost:8080'),
    (WebOrigin(), 'https://[::1]:8443', 'https://[::1]:8443'),
]

INVALID = [
    (Text(), ''), (Text(), 'a\nb'), (Text(), 'a\0b'), (Text(), 'a\x1bb'), (Text(), 'a\x7f'), (Text(), 5),
    (FilePath(), 'state\0'),
    (Integer(0, 9), '-1'), (Integer(1, 3), 4), (Integer(1, 3), 0), (Integer(0, 9), '1.0'),
    (Integer(0, 9), '1_000'), (Integer(0, 9), True), (Integer(0, 9), '٣'), (Port(), '0'), (Port(), '65536'),
    (Integer(1, 65535), str(10 ** 20)), (Integer(1, 65535), 10 ** 20), (Integer(1, 65535), '9' * 5000),
    (Seconds(10), '0'), (Seconds(10), '-1'), (Seconds(10), 'inf'), (Seconds(10), 'nan'), (Seconds(10), 'x'),
    (Seconds(10), True), (Seconds(10), '10.001'), (Seconds(10), 11), (Seconds(10), 10 ** 400),
    (Seconds(10), '1e400'), (Seconds(10), '9' * 5000), (Seconds(10, minimum=2), '1.99'),
    (Boolean(), 'maybe'), (Boolean(), 1), (Unsupported('X'), 'yes'), (Unsupported('X'), True),
    (Choice('A'), 'C'), (Size(1, 10), '0'), (Size(1, 10 ** 9), '1T'), (Size(1, 10), 1.0), (Size(1, 10), '11'),
    (Size(1, 1024 ** 3), '1025M'), (Size(1, 10), 11), (Size(1, 10), '9' * 5000), (Size(0, 10), '-1'),
    (Workers(256), '0'), (Workers(256), '257'), (Workers(256), 257), (Workers(256), 'many'), (Workers(256), 0),
    (Workers(256), True), (ListOf(dotted_name()), 'a, b-c'), (ListOf(Text()), 5),
    (dotted_name(), 'a..b'), (service_name(), 'a b'), (service_name(), ''),
    (url_path(), 'echo'), (url_path(), '/a b'), (url_path(), '/a#b'),
    (WebOrigin(), '*'), (WebOrigin(), 'null'), (WebOrigin(), 'portal.example.com'),
    (WebOrigin(), 'https://portal.example.com/'), (WebOrigin(), 'ftp://x'), (WebOrigin(), 'https://u@x'),
]


@pytest.mark.parametrize(('validator', 'value', 'expected'), VALID)
def test_validator_accepts(validator, value, expected):
    assert validator(value) == expected


@pytest.mark.parametrize(('validator', 'value'), INVALID)
def test_validator_rejects(validator, value):
    with pytest.raises(InvalidValue) as info:
        validator(value)
    assert info.value.problem


def test_rejection_names_what_was_expected():
    with pytest.raises(InvalidValue, match=r"^expected an integer from 1 to 65535, got 'abc'$"):
        Port()('abc')


# The shipped files ############################################################################


def read_shipped(file):
    parser = configparser.RawConfigParser(delimiters=('=',), interpolation=None, strict=True,
                                          default_section='\0')
    parser.optionxform = str
    parser.read_string((SHIPPED_DIR / file).read_text(encoding='utf-8'))
    return parser


def shipped_keys():
    keys = set()
    for file in CONFIG_FILES:
        parser = read_shipped(file)
        for section in parser.sections():
            spec = settings.find_section(file, section)
            if spec is not None and spec.is_dynamic:
                continue
            keys.update((file, section, key) for key in parser[section])
    return keys


def test_shipped_files_declare_no_unknown_key():
    declared = {(s.file, s.section, s.name) for s in SETTINGS}
    assert shipped_keys() - declared == set()


def test_shipped_files_set_every_setting():
    declared = {(s.file, s.section, s.name) for s in SETTINGS}
    assert declared - shipped_keys() == set()


def test_shipped_files_have_every_section():
    for file in CONFIG_FILES:
        expected = [spec.name for spec in settings.sections_of(file)]
        assert read_shipped(file).sections() == expected, file


@pytest.mark.parametrize('setting', SETTINGS, ids=SETTING_IDS)
def test_shipped_value_is_the_default(setting):
    value = read_shipped(setting.file)[setting.section][setting.name]
    if (setting.file, setting.section, setting.name) in SHIPPED_OVERRIDES:
        assert value != setting.default
    else:
        assert value == setting.default


@pytest.mark.parametrize('file', CONFIG_FILES)
def test_shipped_keys_are_commented(file):
    # Every key line follows a comment line: the key's doc (or, for channels, what it is).
    lines = (SHIPPED_DIR / file).read_text(encoding='utf-8').splitlines()
    for number, line in enumerate(lines):
        if line and not line.startswith(('#', '[', ' ')):
            assert lines[number - 1].startswith('#'), f'{file}:{number + 1}: {line}'


# Ranges #######################################################################################

NUMERIC = (Integer, Seconds, Size)


def value_validators():
    """Every validator a value goes through: the settings', and the dynamic sections' values."""
    found = [(f'{s.file}:{s.key}', s.validator) for s in SETTINGS]
    found += [(f'{spec.file}:[{spec.name}]', spec.value_validator) for spec in SECTIONS if spec.is_dynamic]
    return found


def test_every_numeric_value_has_a_minimum_and_a_maximum():
    numeric = [(name, v) for name, v in value_validators() if isinstance(v, NUMERIC)]
    assert len(numeric) > 20
    for name, validator in numeric:
        assert validator.maximum is not None, name
        assert validator.minimum is not None or isinstance(validator, Seconds), name
        # The docs show the range: in the type and in what an error says was expected.
        assert validator.range_text in validator.type_name and validator.range_text in validator.expected, name


@pytest.mark.parametrize('setting', [s for s in SETTINGS if isinstance(s.validator, NUMERIC)],
                         ids=lambda setting: f'{setting.file}:{setting.key}')
def test_one_past_the_maximum_is_refused(setting):
    validator = setting.validator
    step = 0.001 if isinstance(validator, Seconds) else 1
    assert validator(validator.maximum) == validator.maximum
    with pytest.raises(InvalidValue, match=r'^expected .* got '):
        validator(validator.maximum + step)
    if validator.minimum is not None:
        with pytest.raises(InvalidValue):
            validator(validator.minimum - step)


@pytest.mark.parametrize(('file', 'section', 'name', 'minimum', 'maximum'), [
    ('server.conf', 'main', 'workers', 1, 256), ('server.conf', 'main', 'backlog', 1, 65535),
    ('server.conf', 'main', 'graceful_timeout', None, 86400), ('server.conf', 'main', 'hang_timeout', 2, 86400),
    ('server.conf', 'main', 'max_request_size', 1, 1024 ** 3),
    ('server.conf', 'misc', 'startup_callable_timeout', 1, 3600),
    ('pickup.conf', 'hot_deploy', 'import_timeout', 1, 600),
    ('pickup.conf', 'hot_deploy', 'poll_interval', 0.05, 3600),
])
def test_documented_ranges(file, section, name, minimum, maximum):
    validator = settings.find_setting(file, section, name).validator
    assert (validator.minimum, validator.maximum) == (minimum, maximum)


def test_the_time_limits_of_issue_14():
    startup = settings.find_setting('server.conf', 'misc', 'startup_callable_timeout')
    imports = settings.find_setting('pickup.conf', 'hot_deploy', 'import_timeout')
    assert (startup.default_value(), imports.default_value()) == (30.0, 10.0)
    assert startup.short_doc.startswith('How long FS_CONFIG_ONLY callables may run, at start and at each reload')
    assert 'disposable process' in imports.short_doc


def test_backlog_of_the_issue_is_refused_with_its_range():
    with pytest.raises(InvalidValue, match=r"^expected an integer from 1 to 65535, got '100000000000000000000'$"):
        settings.find_setting('server.conf', 'main', 'backlog').validator(str(10 ** 20))


def test_auto_workers_never_exceeds_the_maximum(monkeypatch):
    monkeypatch.setattr(validators, 'usable_cpus', lambda: 1000)
    assert Workers(256)('auto') == 256
    monkeypatch.setattr(validators, 'usable_cpus', lambda: 3)
    assert Workers(256)('auto') == 3


def test_size_bounds_are_shown_with_suffixes():
    assert Size(256 * 1024, 64 * 1024 ** 3).range_text == 'from 256K to 64G'
    assert Size(0, 1).range_text == 'from 0 to 1'
    assert Size(1, 10).format(3 * 1024 ** 2) == '3M'


def test_a_huge_rejected_value_is_cut_short_in_the_message():
    with pytest.raises(InvalidValue) as info:
        Integer(1, 9)('9' * 5000)
    assert len(info.value.problem) < 200 and '(5000 characters)' in info.value.problem
    assert shown('x') == "'x'"


def test_a_huge_cache_field_number_is_a_clear_error():
    with pytest.raises(InvalidValue, match='max_size'):
        CacheFields()('max_size=' + '9' * 5000)


def shipped_comment_above(file, section, name):
    """The comment lines right above a key of a shipped file, in its section."""
    lines = (SHIPPED_DIR / file).read_text(encoding='utf-8').splitlines()
    start = lines.index(f'[{section}]')
    index = next(i for i in range(start, len(lines)) if lines[i].partition('=')[0].strip() == name)
    first = index
    while lines[first - 1].startswith('#'):
        first -= 1
    return lines[first:index]


@pytest.mark.parametrize('setting', SETTINGS, ids=SETTING_IDS)
def test_shipped_comment_is_the_doc_and_the_range(setting):
    # The shipped files are what admins read: the same text as docs/config.md, range included.
    comment = shipped_comment_above(setting.file, setting.section, setting.name)
    expected = reference.comment_lines(setting)
    if (setting.file, setting.section, setting.name) in SHIPPED_OVERRIDES:
        comment = comment[:len(expected)]
    assert comment == expected
