"""Reads a server directory's INI files into a Config of typed, validated values.

Runs in the master, before fork: workers inherit the Config already loaded. Startup callables
may change values in place in that window, and every assignment to a declared key goes through
the same validator as the files do.

Syntax, fixed here for every file: sections in [brackets], `key = value` with '=' as the only
delimiter (so channel paths may hold ':'), keys case-sensitive, no % interpolation, and comments
only on lines of their own ('#' or ';' first), because values such as URL paths may hold '#'.
A value continues on the following lines that are indented deeper than its key.

Each file is read by reading.read_text: a regular file of UTF-8, of bounded size.

Every problem raises ConfigError with a one-line message:
`<file>:<line>: [section] key: <what is wrong>; <the fix>`.
"""

import configparser
import difflib
import re
from pathlib import Path

from zato_daemon.config import settings
from zato_daemon.config.reading import read_text
from zato_daemon.config.settings import CONFIG_FILES, REQUIRED_FILES
from zato_daemon.config.validators import InvalidValue
from zato_daemon.errors import ConfigError

# The keyword names Zato's startup callables receive each file's object under.
FILE_ATTRIBUTES = {
    'server.conf': 'server_config',
    'pickup.conf': 'pickup_config',
    'simple-io.conf': 'sio_config',
    'sso.conf': 'sso_config',
}

_FILE_OWN_NAMES = ('name', 'path', 'unknown_assignments', 'sections', 'as_dict')
_NO_DEFAULT_SECTION = '\0no default section'
_SECTION_HEADER = configparser.RawConfigParser.SECTCRE
_KEY_LINE = re.compile(r'(?P<key>.*?)\s*=')


# Sections and files ###########################################################################


class Section:
    """One section of a file: attribute and item access to typed values, validated on assignment.

    Assigning a key no setting declares does not raise, since Zato's own example does it
    (`server_config.component_enabled.cassandara = True`): the value is stored as given and
    'section.key' is appended to the file's `unknown_assignments` so the caller can warn.
    """

    def __init__(self, spec, label, unknown_assignments):
        object.__setattr__(self, '_spec', spec)
        object.__setattr__(self, '_label', label)
        object.__setattr__(self, '_unknown_assignments', unknown_assignments)
        object.__setattr__(self, '_values', {})
        object.__setattr__(self, '_raw', {})

    def __getattr__(self, key):
        # Underscore names are ours or Python's (copy, pickle): never config keys.
        if key.startswith('_') or key not in self._values:
            raise AttributeError(self._missing_message(key))
        return self._values[key]

    def __setattr__(self, key, value):
        self[key] = value

    def __getitem__(self, key):
        try:
            return self._values[key]
        except KeyError:
            raise KeyError(self._missing_message(key)) from None

    def __setitem__(self, key, value):
        setting = settings.find_setting(self._spec.file, self._spec.name, key)
        if setting is None:
            self._unknown_assignments.append(f'{self._spec.name}.{key}')
            self._store(key, value, value if isinstance(value, str) else repr(value))
            return
        typed = _validate_assignment(setting.validator, value, f'{self._label}.{key}',
                                     setting.default)
        raw = value if isinstance(value, str) else setting.validator.format(typed)
        self._store(key, typed, raw)

    def _store(self, key, typed, raw):
        self._values[key] = typed
        self._raw[key] = raw

    def _missing_message(self, key):
        known = list(self._values)
        listed = f'its keys are {", ".join(known)}' if known else 'it has no keys'
        return f'{self._label} has no key {key!r}; {_did_you_mean(key, known, "{!r}") or listed}'

    def __contains__(self, key):
        return key in self._values

    def __iter__(self):
        return iter(list(self._values))

    def __len__(self):
        return len(self._values)

    def __dir__(self):
        return list(super().__dir__()) + [key for key in self._values if key.isidentifier()]

    def __repr__(self):
        return f'<Section {self._label} {self._values!r}>'

    def keys(self):
        """Returns the keys, declared ones in declaration order, then any assigned later."""
        return list(self._values)

    def values(self):
        """Returns the typed values, in key order."""
        return list(self._values.values())

    def items(self):
        """Returns (key, typed value) pairs, in key order."""
        return list(self._values.items())

    def get(self, key, default=None):
        """Returns a key's typed value, or `default` if there is no such key."""
        return self._values.get(key, default)

    def raw(self, key):
        """Returns a key's text as in the file, or its default's: 'auto', not 4, for workers."""
        return self._raw[key]

    def as_dict(self):
        """Returns a plain dict of the typed values, a copy safe to serialize or change."""
        return {key: list(value) if isinstance(value, list) else value
                for key, value in self._values.items()}


class DynamicSection(Section):
    """A section whose keys are free-form (such as [channels]): both keys and values are validated.

    Assigning here never counts as unknown: any key passing the section's key validator belongs.
    """

    def __setitem__(self, key, value):
        spec = self._spec
        where = f'{self._label}[{key!r}]'
        _validate_assignment(spec.key_validator, key, where, None)
        typed = _validate_assignment(spec.value_validator, value, where, None)
        self._store(key, typed, value if isinstance(value, str) else str(typed))

    def __delitem__(self, key):
        self[key]  # raises the helpful KeyError when missing
        del self._values[key]
        del self._raw[key]


def _validate_assignment(validator, value, where, default):
    try:
        return validator(value)
    except InvalidValue as error:
        example = f' such as the default, {default}' if default else ''
        fix = error.fix or f'assign a valid value{example}'
        raise ConfigError(f'{error.problem}; {fix}', key=where) from None


class ConfigFile:
    """One configuration file: attribute or item access to its sections (`server_config.main`).

    `path` is where the file is or would be; `unknown_assignments` lists the 'section.key' names
    assigned in code that no setting declares.
    """

    def __init__(self, name, path):
        object.__setattr__(self, 'name', name)
        object.__setattr__(self, 'path', path)
        object.__setattr__(self, 'unknown_assignments', [])
        object.__setattr__(self, '_sections', {})

    def __getattr__(self, section):
        if section.startswith('_') or section not in self._sections:
            raise AttributeError(self._missing_message(section))
        return self._sections[section]

    def __setattr__(self, name, value):
        # Sections hold validated values and the file's bookkeeping; neither may be swapped out.
        # Other names are stored like unknown keys, for the same Zato compatibility reason.
        if name in self._sections or name in _FILE_OWN_NAMES or name.startswith('_'):
            raise AttributeError(f'{self._label()}.{name} cannot be replaced; assign its keys')
        self.unknown_assignments.append(name)
        object.__setattr__(self, name, value)

    def __getitem__(self, section):
        try:
            return self._sections[section]
        except KeyError:
            raise KeyError(self._missing_message(section)) from None

    def __contains__(self, section):
        return section in self._sections

    def __repr__(self):
        return f'<ConfigFile {self.name} {self.as_dict()!r}>'

    def _label(self):
        return FILE_ATTRIBUTES[self.name]

    def _missing_message(self, section):
        known = list(self._sections)
        listed = f'its sections are {", ".join(known)}'
        return (f'{self._label()} has no section {section!r}; '
                f'{_did_you_mean(section, known, "{!r}") or listed}')

    def sections(self):
        """Returns the section names, in declaration order."""
        return list(self._sections)

    def as_dict(self):
        """Returns {section: {key: typed value}}, plain dicts for JSON output."""
        return {name: section.as_dict() for name, section in self._sections.items()}


class Config:
    """Everything a server directory configures: one ConfigFile per file, plus where they are.

    Attributes: `server_config`, `pickup_config`, `sio_config`, `sso_config` (ConfigFile),
    `base_dir` (absolute Path of the server directory) and `paths_read` (Paths of the files that
    existed and were read; a missing optional file means defaults).
    """

    def __init__(self, base_dir, files, paths_read):
        self.base_dir = Path(base_dir).absolute()
        self.paths_read = list(paths_read)
        self.files = dict(files)
        for name, attribute in FILE_ATTRIBUTES.items():
            setattr(self, attribute, self.files[name])

    def __repr__(self):
        return f'<Config {str(self.base_dir)!r} read={[str(p) for p in self.paths_read]!r}>'

    def resolve_path(self, value):
        """Returns `value` as an absolute Path, a relative one taken from `base_dir`.

        Returns None for an empty value, so that `config.resolve_path(v) or fallback` reads well.
        """
        if value is None or str(value) == '':
            return None
        return self.base_dir / Path(value)

    def as_dict(self):
        """Returns {file name: {section: {key: typed value}}}, plain dicts for JSON output."""
        return {name: config_file.as_dict() for name, config_file in self.files.items()}


# Loading ######################################################################################


def load_config(config_dir):
    """Reads every file of a server directory into a Config, or raises ConfigError.

    server.conf must exist; a missing pickup.conf, simple-io.conf or sso.conf means its defaults.
    Runs in the master, before fork.
    """
    base_dir = Path(config_dir).absolute()
    _check_directory(base_dir)
    files, paths_read = {}, []
    for name in CONFIG_FILES:
        path = base_dir / name
        text = read_text(path, required=name in REQUIRED_FILES)
        if text is not None:
            paths_read.append(path)
        files[name] = build_file(name, path, text)
    return Config(base_dir, files, paths_read)


def _check_directory(base_dir):
    if not base_dir.exists():
        raise ConfigError('no such directory; pass the server directory that holds server.conf',
                          path=base_dir)
    if not base_dir.is_dir():
        raise ConfigError('not a directory; pass the server directory that holds server.conf, '
                          'not a file', path=base_dir)


def build_file(name, path, text):
    """Returns the ConfigFile for one file: defaults, overridden by `text` (None: file missing).

    Raises ConfigError for a syntax error, an unknown section or key, or an invalid value.
    """
    config_file = ConfigFile(name, path)
    for spec in settings.sections_of(name):
        config_file._sections[spec.name] = _default_section(spec, config_file)
    if text is not None:
        parser = _parse(text, path)
        lines = _find_lines(text)
        for section_name in parser.sections():
            _apply_section(config_file, parser[section_name], lines, path)
    return config_file


def _default_section(spec, config_file):
    kind = DynamicSection if spec.is_dynamic else Section
    section = kind(spec, f'{config_file._label()}.{spec.name}', config_file.unknown_assignments)
    for setting in settings.settings_of(spec.file, spec.name):
        section._store(setting.name, setting.default_value(), setting.default)
    return section


def _parse(text, path):
    parser = configparser.RawConfigParser(
        delimiters=('=',), comment_prefixes=('#', ';'), inline_comment_prefixes=None,
        strict=True, interpolation=None, default_section=_NO_DEFAULT_SECTION)
    # Keys stay as written: configparser would lower-case them, and channel paths are
    # case-sensitive.
    parser.optionxform = str
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as error:
        raise _syntax_error(error, path, text.splitlines()) from None
    return parser


def _syntax_error(error, path, lines):
    if isinstance(error, configparser.MissingSectionHeaderError):
        return ConfigError(f'a key comes before any [section] header: {error.line.strip()!r}; '
                           'put it under the section it belongs to', path=path, line=error.lineno)
    if isinstance(error, configparser.DuplicateOptionError):
        return ConfigError('key set twice in the same section; keep only one of the lines',
                           path=path, line=error.lineno, key=f'[{error.section}] {error.option}')
    if isinstance(error, configparser.DuplicateSectionError):
        return ConfigError('section appears twice; merge the two into one', path=path,
                           line=error.lineno, key=f'[{error.section}]')
    if isinstance(error, configparser.ParsingError):
        # error.errors holds repr()s of the lines; quote the line from the text instead.
        line = error.errors[0][0]
        more = f' (and {len(error.errors) - 1} more such lines)' if len(error.errors) > 1 else ''
        content = lines[line - 1].strip()
        return ConfigError(f'not a section header nor a key: {content!r}{more}; write '
                           "'key = value', or indent it to continue the previous value",
                           path=path, line=line)
    return ConfigError(f'cannot parse: {error}', path=path)


def _find_lines(text):
    """Returns {(section, None): line of its header, (section, key): line of the key}.

    configparser keeps no line numbers, so this walks the text with the same rules it follows
    (full-line comments, continuation by deeper indentation) to point errors at the right line.
    """
    lines, section, has_key, indent = {}, None, False, 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(('#', ';')):
            continue
        current_indent = len(line) - len(line.lstrip())
        if section is not None and has_key and current_indent > indent:
            continue
        indent = current_indent
        header = _SECTION_HEADER.match(stripped)
        if header:
            section, has_key = header['header'], False
            lines.setdefault((section, None), number)
            continue
        key = _KEY_LINE.match(stripped)
        has_key = key is not None
        if has_key:
            lines.setdefault((section, key['key']), number)
    return lines


def _apply_section(config_file, parsed, lines, path):
    spec = settings.find_section(config_file.name, parsed.name)
    if spec is None:
        raise ConfigError(_unknown_section_reason(config_file.name, parsed.name), path=path,
                          line=lines.get((parsed.name, None)), key=f'[{parsed.name}]')
    section = config_file._sections[spec.name]
    for key, text in parsed.items():
        where = {'path': path, 'line': lines.get((spec.name, key)), 'key': f'[{spec.name}] {key}'}
        if spec.is_dynamic:
            _apply_dynamic(section, spec, key, text, where)
        else:
            _apply_setting(section, spec, key, text, where)


def _apply_setting(section, spec, key, text, where):
    setting = settings.find_setting(spec.file, spec.name, key)
    if setting is None:
        raise ConfigError(_unknown_key_reason(spec, key), **where)
    section._store(key, _validate_text(setting.validator, text, where, setting.default), text)


def _apply_dynamic(section, spec, key, text, where):
    _validate_text(spec.key_validator, key, where, None)
    section._store(key, _validate_text(spec.value_validator, text, where, None), text)


def _validate_text(validator, text, where, default):
    try:
        return validator(text)
    except InvalidValue as error:
        raise ConfigError(f'{error.problem}; {error.fix or _default_fix(default)}',
                          **where) from None


def _default_fix(default):
    if default is None:
        return 'correct the value'
    shown = f'({default})' if default else '(empty)'
    return f'correct the value, or delete the line to use the default {shown}'


def _unknown_section_reason(file, name):
    owner = [spec.file for spec in settings.SECTIONS if spec.name == name and spec.file != file]
    if owner:
        return f'unknown section in {file}; [{name}] belongs in {owner[0]}'
    known = [spec.name for spec in settings.sections_of(file)]
    listed = 'the sections of {} are {}'.format(file, ', '.join(f'[{k}]' for k in known))
    return f'unknown section; {_did_you_mean(name, known, "[{}]") or listed}'


def _unknown_key_reason(spec, key):
    elsewhere = [s for s in settings.SETTINGS if s.name == key and s.file == spec.file]
    if elsewhere:
        return f'unknown key in [{spec.name}]; {key} belongs in [{elsewhere[0].section}]'
    known = [setting.name for setting in settings.settings_of(spec.file, spec.name)]
    listed = f'the keys of [{spec.name}] are {", ".join(known)}'
    return f'unknown key; {_did_you_mean(key, known, "{!r}") or listed}'


def _did_you_mean(name, candidates, template):
    """Returns 'did you mean X?' for the closest candidate, '' if none is close."""
    matches = difflib.get_close_matches(name, candidates, n=1)
    return f'did you mean {template.format(matches[0])}?' if matches else ''
