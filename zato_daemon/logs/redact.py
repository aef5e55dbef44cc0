"""Secrets out of logs and samples: values are redacted by the name of their key.

A value is secret when its key names a password, secret, token, credential, cookie,
authorization header or key ('key', 'api_key', 'private-key', ...). Redaction walks
dicts and lists recursively; the input is never modified.
"""

import json
import re

REDACTED = '******'

_SECRET_NAME = re.compile(
    r'pass(word|wd|phrase)|(^|[_\-.])pass($|[_\-.])|pwd|secret|token|credential|cookie'
    r'|authori[sz]ation|signature|(^|[_\-.])key($|[_\-.])|apikey|privatekey|session[_\-.]?id',
    re.IGNORECASE)
MAX_DEPTH = 32


def is_secret_name(name):
    """True when a key's name says its value is a secret."""
    return isinstance(name, str) and _SECRET_NAME.search(name) is not None


def redact(value, depth=0):
    """A copy of `value` with the values of secret-named keys replaced by REDACTED."""
    if depth > MAX_DEPTH:
        return '...'
    if isinstance(value, dict):
        return {key: REDACTED if is_secret_name(key) else redact(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item, depth + 1) for item in value]
    return value


def render_capped(value, limit):
    """`value` redacted, as JSON of at most `limit` characters, with a note of what was cut."""
    try:
        text = json.dumps(redact(value), ensure_ascii=False, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) <= limit:
        return text
    return f'{text[:limit]}... ({len(text) - limit} more characters)'
