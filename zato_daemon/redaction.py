"""The one redaction policy: what of a value may leave the process in a log record, a dump, a
sample, a slow call or the output of the CLI.

Pure and stdlib only, so that every sink uses it: logs/ (records, tracebacks), dump/ (frames'
variables), diagnostics/ (failed calls, samples, slow calls), the CLI. No I/O; the input is
never modified.

Rule 1, names. The value of a key, variable, header, parameter or field whose name says it
is secret is replaced by REDACTED, whatever its type. A name is compared in lower case with
'-', '_', '.' and spaces taken out, and is secret when it holds one of SECRET_WORDS
('password', 'secret', 'token', 'auth' but not 'author', 'cookie', 'session', 'cred',
'privatekey', 'signature' ...), when one of its parts is one of SECRET_PARTS ('key',
'pass', 'pwd', 'dsn', 'pin', 'otp'), or when it holds one of the names [logging]
secret_names adds.
Rule 2, values. Text is secret in parts whatever its name: URL userinfo
(scheme://user:pw@), credentials after an HTTP authentication scheme (Bearer, Basic ...),
`name=value` pairs with a secret name (query strings, form bodies, libpq DSNs, keyword
arguments in a repr), `Name: value` header lines, `"name": value` pairs of JSON or of a
Python repr, and JSON text, which is parsed and redacted as a structure. Bytes are text
read as latin-1.
Rule 3, shapes. dict, list, tuple, set and frozenset are walked at any depth (to MAX_DEPTH)
whatever their keys' types; a name/value pair (a dict naming a secret under 'name', 'key',
'field' ...; a two-item list or tuple whose first item is a secret name) has its value
redacted. What is not a plain type (str, bytes, numbers, None, containers) is shown as a
placeholder naming its type, never by a repr that could hold anything.

What no rule can see: a secret in free text with nothing around it saying so (an exception
message "login failed for hunter2"), or under a name nobody would call secret. Services that
log such text, or keep secrets under such names, are not protected; secret_names widens
Rule 1.
"""

import json
import re

__all__ = ('REDACTED', 'Policy', 'configure', 'is_naming_entry', 'is_secret_name', 'names_a_secret', 'redact',
           'redact_text', 'render_capped', 'summarise_http')

REDACTED = '******'
MAX_DEPTH = 32
# JSON text longer than this is not parsed to be redacted (Rule 2's other patterns still apply).
MAX_PARSED = 256 * 1024
MAX_NAME = 200

SECRET_WORDS = ('password', 'passwd', 'passphrase', 'secret', 'token', 'apikey', 'cookie', 'session', 'cred',
                'privatekey', 'signature', 'jwt', 'bearer', 'authoriz', 'authentic', 'auth')
SECRET_PARTS = frozenset(('key', 'pass', 'pwd', 'dsn', 'pin', 'otp', 'sig'))
# 'auth' is a secret word, but not inside 'author' or 'authority' (a URL's host part).
_NOT_SECRET = re.compile(r'author(?!i[sz])')
_EXCEPTION_SUFFIXES = ('Error', 'Exception', 'Warning')
# The keys of a dict that name what its other entries hold: {"name": "password", "value": ...}.
PAIR_NAMING_KEYS = frozenset(('name', 'key', 'field', 'param', 'parameter', 'header', 'variable', 'property'))

_SEPARATORS = str.maketrans('', '', '-_. ')
_PARTS = re.compile(r'[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])')

# Rule 2's patterns. Each keeps what says what the value is and replaces the value itself.
# Bounded quantifiers throughout: these run on text clients send, and an unbounded scheme
# made 'a.a.a.…@' quadratic (0.7 s for 40 KB; a 1 MB body would hold a worker for minutes).
_USERINFO = re.compile(r'\b([a-zA-Z][a-zA-Z0-9+.-]{0,31}://)[^\s/?#@\'"<>]{1,256}@')
_AUTH_SCHEME = re.compile(r'\b(Bearer|Basic|Digest|Negotiate|NTLM|bearer|basic)([ \t]+)[A-Za-z0-9._~+/=:%-]{6,}')
_HEADER_LINE = re.compile(r'(?m)(?:^|(?<=\\n))[ \t]*([A-Za-z0-9!#$%&*+.^_`|~-]{1,100})[ \t]*:[ \t]*'
                          r'((?:(?!\\r\\n|\\n)[^\r\n])*)')
# The pair patterns find a name and what separates it from its value, and consume only
# that: a value is read (by the VALUE patterns, from where the name ends) only after a
# secret name, so a value that is not secret is scanned for pairs of its own (a JSON text in
# a repr, a query string in a quoted argument), and no text is read twice.
_NAME_EQUALS = re.compile(r'(?<![A-Za-z0-9_.\-\[\]])([A-Za-z0-9_.\-\[\]]{1,100})=')
_EQUALS_VALUE = re.compile(r'\'[^\']*\'?|"[^"]*"?|[^&;\s#,)\'"]+')
_QUOTED_NAME = re.compile(r'(["\'])([^"\'\n]{1,100})\1[ \t]{0,16}:[ \t]{0,16}')
# {'name': 'password', 'value': ...} as text: the value of a pair that names a secret.
_NAMING_PAIR = re.compile(r'(["\'])(?:name|key|field|param|parameter|header|variable|property)\1[ \t]{0,16}:'
                          r'[ \t]{0,16}(["\'])([^"\'\n]{1,100})\2[ \t]{0,16},[ \t]{0,16}(["\'])[A-Za-z_]{1,30}\4'
                          r'[ \t]{0,16}:[ \t]{0,16}', re.IGNORECASE)
_COLON_VALUE = re.compile(r'"(?:[^"\\]|\\.)*"?|\'(?:[^\'\\]|\\.)*\'?|[^,}\]\s{\[\'"][^,}\]\s]*')
_HTTP_REQUEST_LINE = re.compile(r'[ \t\r\n]*([A-Z]{3,10}) ([^ \r\n?]*)(\?\S*)? HTTP/\d\.\d(?:\r?\n|$)')
_HTTP_STATUS_LINE = re.compile(r'HTTP/\d\.\d ([0-9]{3})\b')


class Policy:
    """The rules above, with the names an operator added (`extra_names`)."""

    def __init__(self, extra_names=()):
        self.extra_names = tuple(_normal(name) for name in extra_names if _normal(name))
        self._names = {}

    # ---- Rule 1

    def is_secret_name(self, name):
        """True when a key, variable, header or parameter called `name` holds a secret."""
        if not isinstance(name, str):
            return False
        # The judgement reads MAX_NAME characters; cached by them too, so that names built by
        # clients (a 1 MB value under "name") cannot fill the cache with megabytes.
        name = name[:MAX_NAME]
        known = self._names.get(name)
        if known is None:
            known = self._names[name] = self._judge_name(name)
            if len(self._names) > 4096:
                self._names.clear()
        return known

    def _judge_name(self, name):
        if name.endswith(_EXCEPTION_SUFFIXES):
            return False  # 'KeyError: ...' in a traceback names what failed, not a key
        normal = _NOT_SECRET.sub('', _normal(name))
        if any(word in normal for word in SECRET_WORDS) or any(word in normal for word in self.extra_names):
            return True
        return any(part.lower() in SECRET_PARTS for part in _PARTS.findall(name))

    # ---- Rule 2

    def redact_text(self, text):
        """`text` with the secret parts Rule 2 recognises replaced by REDACTED."""
        if not text:
            return text
        stripped = text.lstrip()
        if stripped[:1] in ('{', '[') and len(text) <= MAX_PARSED:
            parsed = _parse_json(stripped)
            if parsed is not None:
                return json.dumps(self.redact(parsed), ensure_ascii=False)
        if '@' in text:
            text = _USERINFO.sub(rf'\g<1>{REDACTED}@', text)
        if 'Bearer' in text or 'Basic' in text or 'bearer' in text or 'basic' in text or 'Digest' in text \
                or 'Negotiate' in text or 'NTLM' in text:
            text = _AUTH_SCHEME.sub(rf'\g<1>\g<2>{REDACTED}', text)
        if '=' in text:
            text = self._replace_values(_NAME_EQUALS, 1, _EQUALS_VALUE, text)
        if ':' in text:
            text = self._replace_values(_NAMING_PAIR, 3, _COLON_VALUE, text)
            text = self._replace_values(_QUOTED_NAME, 2, _COLON_VALUE, text)
            text = _HEADER_LINE.sub(self._header_line, text)
        return text

    def redact_bytes(self, data):
        """`data` (bytes) as redact_text sees it, read as latin-1, so that no byte is lost."""
        return self.redact_text(bytes(data).decode('latin-1')).encode('latin-1', 'backslashreplace')

    def _replace_values(self, pattern, name_group, value_pattern, text):
        """Replaces the value (what `value_pattern` matches where the name ends) after each
        secret name `pattern` finds, quoted as it was."""
        parts, position = [], 0
        for match in pattern.finditer(text):
            if match.start() < position or not self.is_secret_name(match[name_group]):
                continue
            value = value_pattern.match(text, match.end())
            if value is None or not value[0]:
                continue
            parts.append(text[position:match.end()])
            parts.append(_quoted_like(value[0], REDACTED))
            position = value.end()
        if not parts:
            return text
        parts.append(text[position:])
        return ''.join(parts)

    def _header_line(self, match):
        if not self.is_secret_name(match[1]) or not match[2]:
            return match[0]
        return match[0][:match.start(2) - match.start(0)] + REDACTED

    # ---- Rule 3

    def redact(self, value, depth=0):
        """A copy of `value` fit for JSON, redacted: dicts with text keys, lists for other
        containers, text for bytes, a placeholder for anything else."""
        if isinstance(value, str):
            return self.redact_text(value)
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if depth >= MAX_DEPTH:
            return f'<{type(value).__name__} nested deeper than {MAX_DEPTH} levels>'
        if isinstance(value, dict):
            return self._redact_dict(value, depth)
        if isinstance(value, (list, tuple)):
            return self._redact_sequence(value, depth)
        if isinstance(value, (set, frozenset)):
            return [self.redact(item, depth + 1) for item in _sorted(value)]
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self.redact_text(bytes(value).decode('latin-1'))
        return placeholder(value)

    def names_a_secret(self, key, item):
        """True when a dict entry says its dict is a name/value pair holding a secret:
        'name': 'password' (Rule 3)."""
        return is_naming_entry(key, item) and self.is_secret_name(item)

    def _redact_dict(self, value, depth):
        is_pair = any(self.names_a_secret(key, item) for key, item in value.items())
        redacted = {}
        for key, item in value.items():
            text_key = key if isinstance(key, str) else _key_text(key)
            if self.is_secret_name(text_key):
                redacted[text_key] = REDACTED
            elif is_pair and not is_naming_entry(text_key, item):
                redacted[text_key] = REDACTED
            else:
                redacted[text_key] = self.redact(item, depth + 1)
        return redacted

    def _redact_sequence(self, value, depth):
        if len(value) == 2 and self.is_secret_name(value[0]):
            return [value[0], REDACTED]
        return [self.redact(item, depth + 1) for item in value]

    def render(self, value, limit):
        """`value` redacted, as JSON of at most `limit` characters, with a note of what was cut.

        Text or bytes that hold a JSON object or array (a payload a service passes on as it
        came) are shown as that object or array."""
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode('utf-8', 'replace')
        if isinstance(value, str) and value.lstrip()[:1] in ('{', '[') and len(value) <= MAX_PARSED:
            parsed = _parse_json(value)
            value = value if parsed is None else parsed
        text = json.dumps(self.redact(value), ensure_ascii=False, sort_keys=True)
        if len(text) <= limit:
            return text
        return f'{text[:limit]}... ({len(text) - limit} more characters)'


def is_naming_entry(key, item):
    """True for the entry of a name/value pair that says what the pair holds ('name': 'user'):
    it is kept as it is. Reads only exact str types, so the dump may call it on any object."""
    return type(key) is str and type(item) is str and key.lower() in PAIR_NAMING_KEYS


def placeholder(value):
    """What stands for a value no rule can show safely: its type, never its repr."""
    kind = type(value)
    return f'<{kind.__module__}.{kind.__qualname__}>' if kind.__module__ != 'builtins' else f'<{kind.__qualname__}>'


def summarise_http(text):
    """A short description of an HTTP request or response held in `text` (str, bytes read as
    latin-1), or None when it holds neither: method, path without its query and size, or
    status and size; headers and body, with what secrets they hold, are left out."""
    request = _HTTP_REQUEST_LINE.match(text)
    if request is not None:
        query = ' (query not shown)' if request[3] else ''
        return f'<HTTP request: {request[1]} {request[2][:200]}{query}, {len(text)} bytes>'
    status = _HTTP_STATUS_LINE.match(text)
    if status is not None:
        return f'<HTTP response: {status[1]}, {len(text)} bytes>'
    return None


def _quoted_like(value, replacement):
    for quote in ('\\"', '"', "'"):
        if value.startswith(quote):
            return f'{quote}{replacement}{quote}'
    return replacement


def _normal(name):
    return str(name).lower().translate(_SEPARATORS)


def _parse_json(text):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _key_text(key):
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).decode('latin-1')
    return placeholder(key) if not isinstance(key, tuple) else repr(tuple(_key_text(part) for part in key))


def _sorted(items):
    # Sorted, so that the JSON of a set is the same from run to run; mixed types by type first.
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=lambda item: (type(item).__name__, item if isinstance(item, (str, int, float)) else ''))


# The policy in effect in this process; `configure` replaces it when the configuration is
# read (at start, at reload, in each worker), with the names [logging] secret_names adds.
_policy = Policy()


def configure(extra_names=()):
    """Puts the policy with these extra secret names in effect in this process."""
    global _policy
    _policy = Policy(extra_names)
    return _policy


def current():
    """The policy in effect."""
    return _policy


def is_secret_name(name):
    """True when the value of a key, variable, header or parameter of this name is secret (Rule 1)."""
    return _policy.is_secret_name(name)


def names_a_secret(key, item):
    """True when a dict entry makes its dict a name/value pair holding a secret (Rule 3)."""
    return _policy.names_a_secret(key, item)


def redact_text(text):
    """`text` with its secret parts replaced (Rule 2)."""
    return _policy.redact_text(text)


def redact(value):
    """A redacted copy of `value`, fit for JSON (Rule 3)."""
    return _policy.redact(value)


def render_capped(value, limit):
    """`value` redacted, as JSON of at most `limit` characters, with a note of what was cut."""
    return _policy.render(value, limit)
