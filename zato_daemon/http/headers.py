"""Which response headers a service may set, and in what form.

Pure: `service_headers()` takes what a service put in `self.response.headers` and returns
the headers to send plus what it dropped; the router logs the drops and turns an
InvalidHeader into a 500. No I/O here.

Rule 1: the server owns the framing of a response. Content-Length, Transfer-Encoding,
Content-Encoding, Connection and the other hop-by-hop fields, Date, Server, X-Zato-CID
and the CORS fields (Access-Control-*, which allowed_origins decides) come from the
server alone; a service's value for them is dropped, never sent beside the server's (a
client seeing two Content-Lengths rejects the response or hangs).
Rule 2: Content-Type may be replaced, by another JSON media type only: the body is JSON
whatever the service sets.
Rule 3: a name must be an HTTP token and a value may not hold control characters (CR and LF
would split the response, NUL is refused by clients); either is an InvalidHeader.
"""

from zato_daemon.http.payload import is_json_media_type
from zato_daemon.http.protocol import has_control_character, is_token

__all__ = ('OWNED_HEADERS', 'InvalidHeader', 'service_headers')

OWNED_HEADERS = frozenset((
    'content-length', 'transfer-encoding', 'content-encoding', 'connection', 'keep-alive', 'upgrade',
    'trailer', 'te', 'proxy-connection', 'date', 'server', 'x-zato-cid',
))
OWNED_PREFIXES = ('access-control-',)


class InvalidHeader(ValueError):
    """A header a service set cannot be sent; the message names it."""


def service_headers(headers):
    """The headers of a service's response as (content_type, pairs, dropped).

    content_type: the service's JSON Content-Type as bytes, or None for the server's own.
    pairs: a tuple of (name, value) bytes to send as they are. dropped: the names of headers
    the server owns or a Content-Type that is not JSON, for the caller to log.
    Raises InvalidHeader for a name that is not a token or a value holding a control
    character or a character outside latin-1.
    """
    if not headers:
        return None, (), ()
    content_type = None
    pairs = []
    dropped = []
    for name, value in headers.items():
        name, value = str(name), str(value)
        encoded_name, encoded_value = _latin1(name, name, 'name'), _latin1(name, value, 'value')
        if not is_token(encoded_name):
            raise InvalidHeader(f'response header name {name[:64]!r} is not an HTTP token')
        if has_control_character(encoded_value):
            raise InvalidHeader(f'the value of response header {name!r} holds a control character '
                                '(CR, LF, NUL or another)')
        lowered = name.lower()
        if lowered in OWNED_HEADERS or lowered.startswith(OWNED_PREFIXES):
            dropped.append(name)
        elif lowered == 'content-type':
            if is_json_media_type(value.strip()):
                content_type = encoded_value.strip()
            else:
                dropped.append(name)
        else:
            pairs.append((encoded_name, encoded_value))
    return content_type, tuple(pairs), tuple(dropped)


def _latin1(name, text, what):
    try:
        return text.encode('latin-1')
    except UnicodeEncodeError:
        if what == 'name':
            raise InvalidHeader(f'response header name {name[:64]!r} is not an HTTP token') from None
        raise InvalidHeader(f'the value of response header {name!r} holds characters outside latin-1; '
                            'percent-encode them') from None
