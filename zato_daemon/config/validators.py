"""The validators of configuration values: each turns INI text, or a native Python value a
startup callable assigns, into the typed value, or raises InvalidValue saying what was expected.

Every numeric validator is bounded at both ends by construction: a value the server cannot use
(a backlog listen(2) overflows on, a timeout of a century) is refused when the file loads,
with the range in the message, instead of failing later, at bind time or in a worker.
"""

import math
import os
import re

from zato_daemon.cache.definition import CacheDefinition, CacheError
from zato_daemon.cluster.urls import EXPECTED as EXPECTED_REDIS_URL, NOT_SHOWN, BadUrl, check_url


class InvalidValue(ValueError):
    """A validator rejected a value: `problem` says what is wrong, `fix` (or None) what to do."""

    def __init__(self, problem, fix=None):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


class Validator:
    """Base validator: strings are parsed, anything else must already be of the native type.

    Subclasses set `type_name` (for the docs) and `expected` (for error messages), and implement
    `parse(text)`; `accept(value)` handles non-string values assigned in code.
    """

    type_name = 'string'
    expected = 'a string'

    def __call__(self, value):
        if isinstance(value, str):
            return self.parse(value.strip())
        return self.accept(value)

    def parse(self, text):
        """Returns the typed value for INI text, or raises InvalidValue."""
        return text

    def accept(self, value):
        """Returns the typed value for a native value assigned in code, or raises InvalidValue."""
        raise self.invalid(value)

    def invalid(self, value):
        """Builds the standard 'expected X, got Y' error."""
        return InvalidValue(f'expected {self.expected}, got {shown(value)}')

    def format(self, value):
        """Renders a typed value back as INI text."""
        return str(value)


def shown(value, limit=80):
    """repr() of a rejected value, cut short: a 1 MB value must not make a 1 MB error line."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f'{len(value)} characters' if isinstance(value, str) else f'{len(text)} characters shown'
    return f'{text[:limit - 20]}... ({size})'


# Control characters other than tab: NUL makes every OS call on a path or host raise
# ValueError, and the others are no part of a host, path or name anyone means.
_CONTROL = re.compile(r'[\x00-\x08\x0a-\x1f\x7f]')


class Text(Validator):
    """A single-line string without control characters; empty only if `allow_empty`."""

    def __init__(self, allow_empty=False):
        self.allow_empty = allow_empty
        self.expected = ('a single-line string without control characters'
                         + ('' if allow_empty else ', not empty'))

    def parse(self, text):
        if _CONTROL.search(text) or not (text or self.allow_empty):
            raise self.invalid(text)
        return text


class FilePath(Text):
    """A file system path as a string; relative paths are resolved by Config.resolve_path."""

    type_name = 'path'

    def __init__(self, allow_empty=False):
        super().__init__(allow_empty)
        self.expected = 'a path' + (' or nothing' if allow_empty else '')


class Pattern(Validator):
    """A string that must match a regular expression; `expected` describes it in words."""

    def __init__(self, regex, type_name, expected, fix=None):
        self.regex = re.compile(regex)
        self.type_name = type_name
        self.expected = expected
        self.fix = fix

    def parse(self, text):
        if not self.regex.fullmatch(text):
            raise InvalidValue(self.invalid(text).problem, self.fix)
        return text


def dotted_name():
    """Validator of a dotted Python name such as zato_daemon.examples.echo."""
    return Pattern(r'[A-Za-z_]\w*(\.[A-Za-z_]\w*)*', 'dotted name',
                   'a dotted Python name such as package.module')


def service_name():
    """Validator of a service name: non-empty, no whitespace."""
    return Pattern(r'\S+', 'service name', 'a service name without whitespace',
                   'write the name of a deployed service, e.g. demo.echo')


def url_path():
    """Validator of a channel's URL path: starts with '/', no whitespace, no query or fragment."""
    return Pattern(r'/[^\s?#]*', 'URL path', "a URL path starting with '/', without whitespace, "
                   "'?' or '#'", "start it with '/' and leave out any query string, e.g. /echo")


def cluster_name(allow_empty=False):
    """Validator of a cluster's or a member's name: part of Redis key names, so a short word
    (no ':', which separates their parts, nor '*', which SCAN would take for a wildcard)."""
    name = r'[A-Za-z0-9][A-Za-z0-9_.-]{0,62}'
    return Pattern(f'({name})?' if allow_empty else name, 'name',
                   ('nothing or ' if allow_empty else '') +
                   "a name of letters, digits, '_', '.' and '-', at most 63 characters",
                   'write a short name such as prod or host-1')


class RedisUrl(Validator):
    """A Redis URL (redis://, rediss://, unix://) or nothing. A rejected value is never quoted
    in the message: it may hold a password (cluster/urls.py says what is checked)."""

    type_name = 'Redis URL'
    expected = EXPECTED_REDIS_URL

    def parse(self, text):
        try:
            return check_url(text)
        except BadUrl as exc:
            raise InvalidValue(f'expected {self.expected}: {exc} {NOT_SHOWN}',
                               'write redis://[:PASSWORD@]HOST[:PORT][/DB], rediss://... or '
                               'unix:///PATH/TO/SOCKET') from None

    def accept(self, value):
        raise InvalidValue(f'expected {self.expected}, got a value of type {type(value).__name__}')


class WebOrigin(Validator):
    """A web origin, scheme://host[:port], in the form browsers send it in Origin: the scheme
    and host in lower case, the scheme's default port left out. Typed: that text."""

    type_name = 'web origin'
    expected = 'an origin such as https://portal.example.com or http://localhost:8080'
    DEFAULT_PORTS = {'http': '80', 'https': '443'}

    def parse(self, text):
        match = re.fullmatch(r'(https?)://(\[[0-9a-f:.]+\]|[^\s/?#:@\[\]]+)(?::([0-9]{1,5}))?', text, re.IGNORECASE)
        if not match:
            raise InvalidValue(self.invalid(text).problem, 'write scheme://host[:port], without a path')
        scheme, host, port = match[1].lower(), match[2].lower(), match[3]
        if port is None or port == self.DEFAULT_PORTS[scheme]:
            return f'{scheme}://{host}'
        return f'{scheme}://{host}:{port}'


def number_text(value):
    """A bound as the docs show it: 86400, not 86400.0."""
    return f'{value:g}' if isinstance(value, float) else str(value)


class Integer(Validator):
    """An integer from `minimum` to `maximum`, both inclusive.

    `range_text` ('from 1 to 65535') is what the docs, the shipped files and errors show.
    """

    def __init__(self, minimum, maximum):
        self.minimum = minimum
        self.maximum = maximum
        self.range_text = f'from {number_text(minimum)} to {number_text(maximum)}'
        self.expected = f'an integer {self.range_text}'
        self.type_name = f'integer {self.range_text}'

    def parse(self, text):
        # [0-9], not \d: int() would also take other scripts' digits.
        if not re.fullmatch(r'[+-]?[0-9]+', text):
            raise self.invalid(text)
        try:
            value = int(text)
        except ValueError:
            # More digits than int() converts (sys.get_int_max_str_digits): out of any range.
            raise self.invalid(text) from None
        return self.accept(value, original=text)

    def accept(self, value, original=None):
        if isinstance(value, bool) or not isinstance(value, int) or not self.minimum <= value <= self.maximum:
            raise self.invalid(value if original is None else original)
        return value


class Port(Integer):
    """A TCP port number, 1 to 65535."""

    def __init__(self):
        super().__init__(1, 65535)
        self.type_name = f'port, {self.range_text}'


class Seconds(Validator):
    """A duration in seconds, integer or decimal, up to `maximum`; typed value is a float.

    Without `minimum`, any duration above 0 (a timer of 0 s would fire before anything
    happened); with it, at least `minimum`.
    """

    def __init__(self, maximum, minimum=None):
        self.minimum = minimum
        self.maximum = maximum
        if minimum is None:
            self.range_text = f'more than 0 and at most {number_text(maximum)}'
        else:
            self.range_text = f'from {number_text(minimum)} to {number_text(maximum)}'
        self.type_name = f'seconds, {self.range_text}'
        self.expected = f'a number of seconds {self.range_text}'

    def parse(self, text):
        try:
            value = float(text)
        except ValueError:
            raise self.invalid(text) from None
        return self._check(value, text)

    def accept(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.invalid(value)
        try:
            return self._check(float(value), value)
        except OverflowError:  # an int too large for a float
            raise self.invalid(value) from None

    def _check(self, value, original):
        # float() also parses 'nan' and 'inf', which no timer can use.
        above_minimum = value > 0 if self.minimum is None else value >= self.minimum
        if not math.isfinite(value) or not above_minimum or value > self.maximum:
            raise self.invalid(original)
        return value

    def format(self, value):
        return repr(float(value))


class Boolean(Validator):
    """true/false, yes/no, on/off or 1/0, in any case."""

    type_name = 'boolean'
    expected = 'true or false (also yes/no, on/off, 1/0)'
    WORDS = {'true': True, 'yes': True, 'on': True, '1': True,
             'false': False, 'no': False, 'off': False, '0': False}

    def parse(self, text):
        try:
            return self.WORDS[text.lower()]
        except KeyError:
            raise self.invalid(text) from None

    def accept(self, value):
        if not isinstance(value, bool):
            raise self.invalid(value)
        return value

    def format(self, value):
        return 'true' if value else 'false'


class Unsupported(Boolean):
    """A boolean that must stay false because the feature it would turn on does not exist here."""

    type_name = 'boolean, must be false'

    def __init__(self, feature):
        self.feature = feature

    def parse(self, text):
        return self._refuse(super().parse(text))

    def accept(self, value):
        return self._refuse(super().accept(value))

    def _refuse(self, value):
        if value:
            raise InvalidValue(f'{self.feature} is not supported by zato-daemon', 'set it to false')
        return value


class Choice(Validator):
    """One of a fixed set of words, case-insensitive; the typed value is upper case."""

    def __init__(self, *choices):
        self.choices = choices
        self.expected = 'one of ' + ', '.join(choices)
        self.type_name = self.expected

    def parse(self, text):
        if text.upper() not in self.choices:
            raise self.invalid(text)
        return text.upper()


def size_text(value):
    """A size as the docs show it: with the largest suffix that divides it (256K, 1G)."""
    for suffix, multiplier in (('G', 1024 ** 3), ('M', 1024 ** 2), ('K', 1024)):
        if value and value % multiplier == 0:
            return f'{value // multiplier}{suffix}'
    return str(value)


class Size(Validator):
    """A size in bytes from `minimum` to `maximum`: a plain integer, or one with a K, M or G
    suffix (binary multiples)."""

    MULTIPLIERS = {'': 1, 'K': 1024, 'M': 1024 ** 2, 'G': 1024 ** 3}

    def __init__(self, minimum, maximum):
        self.minimum = minimum
        self.maximum = maximum
        self.range_text = f'from {size_text(minimum)} to {size_text(maximum)}'
        self.type_name = f'size in bytes with K/M/G suffixes, {self.range_text}'
        self.expected = f'a size in bytes such as 1048576, 1024K or 1M, {self.range_text}'

    def parse(self, text):
        match = re.fullmatch(r'([0-9]+)\s*([KMG]?)', text, re.IGNORECASE)
        if not match:
            raise self.invalid(text)
        try:
            value = int(match[1])
        except ValueError:  # more digits than int() converts: out of any range
            raise self.invalid(text) from None
        return self._check(value * self.MULTIPLIERS[match[2].upper()], text)

    def accept(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.invalid(value)
        return self._check(value, value)

    def _check(self, value, original):
        if not self.minimum <= value <= self.maximum:
            raise self.invalid(original)
        return value

    def format(self, value):
        return size_text(value)


def usable_cpus():
    """Returns how many CPUs this process may run on: its affinity mask, else os.cpu_count()."""
    # The affinity mask is what systemd's CPUAffinity= and AllowedCPUs= (and taskset) narrow;
    # os.cpu_count() counts every CPU of the machine regardless.
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


class Workers(Integer):
    """'auto' (one per usable CPU, at most `maximum`) or an integer from 1 to `maximum`."""

    def __init__(self, maximum):
        super().__init__(1, maximum)
        self.range_text += ', or auto'
        self.type_name += ', or auto'
        self.expected += ', or auto'

    def parse(self, text):
        if text.lower() == 'auto':
            return min(usable_cpus(), self.maximum)
        return super().parse(text)


class CacheFields(Validator):
    """`field=value, ...` of a cache definition, checked as zato.cache.builtin.create checks it."""

    type_name = 'cache fields'
    expected = 'comma-separated field=value pairs of a cache definition'

    def parse(self, text):
        fields = {}
        for part in filter(None, (item.strip() for item in re.split(r'[,\n]', text))):
            name, separator, value = part.partition('=')
            if not separator:
                raise InvalidValue(f'{part!r} is not field=value', 'write e.g. max_size=1000, sync_method=no-sync')
            fields[name.strip()] = _cache_field_value(value.strip())
        return self.accept(fields)

    def accept(self, value):
        if not isinstance(value, dict):
            raise self.invalid(value)
        try:
            # The name is the section key, which the loader reports; any valid name will do here.
            CacheDefinition.from_request(dict(value, name='cache'))
        except CacheError as error:
            problems = error.reason.split(': ', 1)[-1]
            raise InvalidValue(problems, 'see [caches] in docs/config.md for the fields') from None
        return value


def _cache_field_value(text):
    # INI text to what the JSON payload of zato.cache.builtin.create would carry.
    lowered = text.lower()
    if lowered in ('true', 'yes', 'on'):
        return True
    if lowered in ('false', 'no', 'off'):
        return False
    if re.fullmatch(r'-?[0-9]+', text):
        try:
            return int(text)
        except ValueError:  # more digits than int() converts; refused as text, not an integer
            return text
    return text


class ListOf(Validator):
    """Items separated by commas and/or line breaks; empty items are dropped. Typed: a list."""

    def __init__(self, item):
        self.item = item
        self.type_name = f'list of {item.type_name}s'
        self.expected = f'a comma-separated list of {item.type_name}s'

    def parse(self, text):
        return self.accept([part.strip() for part in re.split(r'[,\n]', text)])

    def accept(self, value):
        if not isinstance(value, (list, tuple)):
            raise self.invalid(value)
        return [self._check_item(item) for item in value if item != '']

    def _check_item(self, item):
        try:
            return self.item(item)
        except InvalidValue as error:
            raise InvalidValue(f'in the list: {error.problem}', error.fix) from None

    def format(self, value):
        return ', '.join(self.item.format(item) for item in value)


class Buckets(ListOf):
    """Histogram bucket bounds: seconds, strictly increasing, from 1 to `maximum_count` of them."""

    def __init__(self, maximum, maximum_count):
        super().__init__(Seconds(maximum))
        self.maximum_count = maximum_count
        self.type_name = (f'list of 1 to {maximum_count} increasing bucket bounds in seconds, each '
                          f'{self.item.range_text}')
        self.expected = (f'a comma-separated list of 1 to {maximum_count} increasing numbers of seconds, each '
                         f'{self.item.range_text}')

    def accept(self, value):
        bounds = super().accept(value)
        if not 1 <= len(bounds) <= self.maximum_count or any(
                later <= earlier for earlier, later in zip(bounds, bounds[1:])):
            raise self.invalid(value)
        return bounds
