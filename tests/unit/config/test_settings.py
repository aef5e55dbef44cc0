"""Tests of the settings table and its validators, and of the shipped etc/zato-daemon/*.conf."""

import configparser
from pathlib import Path

import pytest

from zato_daemon.config import settings
from zato_daemon.config.load import ConfigFile, Section
from zato_daemon.config.settings import (
    CONFIG_FILES, FILE_DOCS, SECTIONS, SETTINGS, Boolean, Choice, FilePath, Integer, InvalidValue,
    ListOf, Port, Seconds, Size, Text, Unsupported, WebOrigin, Workers, dotted_name, service_name, url_path,
    usable_cpus)

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
    (Integer(0), '0', 0), (Integer(1, 3), 3, 3), (Integer(), '-5', -5), (Port(), '1', 1),
    (Port(), 65535, 65535), (Seconds(), '0.5', 0.5), (Seconds(), 2, 2.0),
    (Boolean(), 'TRUE', True), (Boolean(), False, False), (Unsupported('X'), 'off', False),
    (Choice('A', 'B'), 'b', 'B'), (Size(), '4k', 4096), (Size(), 10, 10),
    (Workers(), 'auto', usable_cpus()), (Workers(), 2, 2),
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
    (Text(), ''), (Text(), 'a\nb'), (Text(), 5), (Integer(0), '-1'), (Integer(1, 3), 4),
    (Integer(), '1.0'), (Integer(), '1_000'), (Integer(), True), (Port(), '0'), (Port(), '65536'),
    (Seconds(), '0'), (Seconds(), '-1'), (Seconds(), 'inf'), (Seconds(), 'x'), (Seconds(), True),
    (Boolean(), 'maybe'), (Boolean(), 1), (Unsupported('X'), 'yes'), (Unsupported('X'), True),
    (Choice('A'), 'C'), (Size(), '0'), (Size(), '1T'), (Size(), 1.0), (Workers(), '0'),
    (Workers(), 'many'), (Workers(), 0), (ListOf(dotted_name()), 'a, b-c'), (ListOf(Text()), 5),
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
