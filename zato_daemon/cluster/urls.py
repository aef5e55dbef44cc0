"""What a `[cluster] redis_url` may be, and how it is shown. Pure: no I/O, no redis import.

redis-py's `Redis.from_url` reads the URL itself (credentials, database, TLS); this module only
refuses, at load time and with one line, what it would misread or what could leak: a scheme it
does not take, no host, or a raw '@', '/' or '#' inside the credentials, which moves the
password out of the URL's userinfo into its path, where no redaction rule would find it.
"""

from urllib.parse import urlsplit

from zato_daemon import redaction

SCHEMES = ('redis', 'rediss', 'unix')
EXPECTED = 'a redis://, rediss:// or unix:// URL, or nothing'
# A rejected URL may hold a password: the error never repeats it, it says what is wrong.
NOT_SHOWN = '(the value is not shown: it may hold a password)'


class BadUrl(ValueError):
    """What is wrong with a URL, in words that never quote it."""


def check_url(text):
    """Returns `text` when it is a URL redis-py can use as we mean it, else raises BadUrl."""
    if not text:
        return text
    if any(ord(character) < 0x20 or ord(character) == 0x7f for character in text):
        raise BadUrl('a control character in the URL')
    scheme, separator, rest = text.partition('://')
    if not separator or scheme.lower() not in SCHEMES:
        raise BadUrl('the scheme must be redis://, rediss:// or unix://')
    if '#' in rest:
        raise BadUrl("a '#' in the URL: percent-encode it (%23) in a password")
    parts = urlsplit(text)
    if '@' in parts.path or '@' in parts.query:
        raise BadUrl("an '@' after the host: percent-encode '/', '?', '#' and '@' in a password "
                     '(%2F, %3F, %23, %40), or use password_file')
    if scheme.lower() == 'unix':
        # unix://run/redis.sock would be the socket /redis.sock on a host named run.
        if parts.hostname or not parts.path.startswith('/'):
            raise BadUrl('a unix:// URL needs the absolute path of the socket: unix:///run/redis/redis.sock')
        return text
    if not parts.hostname:
        raise BadUrl('no host: write redis://HOST[:PORT][/DB]')
    try:
        port = parts.port
    except ValueError:
        raise BadUrl('the port is not a number from 1 to 65535') from None
    if port == 0:
        raise BadUrl('the port is not a number from 1 to 65535')
    database = parts.path.lstrip('/')
    if database and not database.isdigit():
        raise BadUrl(f'the path must be a database number (/0), not /{database}')
    return text


def shown_url(url):
    """The URL as logs, `info`, dumps and errors show it: credentials redacted, by the one
    redaction policy (userinfo, and a password=... in the query)."""
    return redaction.redact_text(url) if url else url


def has_password(url):
    """Whether the URL itself carries a password (userinfo or ?password=)."""
    parts = urlsplit(url)
    return bool(parts.password) or 'password=' in parts.query
