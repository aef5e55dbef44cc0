"""The HTTP/1.1 protocol core of the hot path: bytes -> events, responses -> bytes."""

################################################################
# Rules
################################################################
#
# Rule 1: no I/O. Bytes go in through RequestParser.feed() and events come out;
# render_response() turns a response into one bytes object. The caller owns the
# socket, the timeouts and the greenlets, so all of this is tested with plain calls.
#
# Rule 2: the same bytes give the same events however they are split. Every
# decision (limits, CONTINUE, errors) rests on what the C parser reported, never on
# where a recv() happened to end.
#
# Rule 3: only the httptools API that 0.1.1 (Debian 12, nodejs http-parser) and
# 0.6+ (PyPI, llhttp) share is used. Where the two C parsers disagree on a request,
# a check here picks one answer for both (see on_header, on_message_begin).
#
################################################################
# Theory of operation
################################################################
#
# httptools calls back into RequestParser as it recognises parts of a message:
# on_message_begin resets the per-request state; on_url and on_header collect the
# header section and count its size; on_headers_complete settles the framing
# (Content-Length, chunked, Expect, Upgrade) before any body byte is read; on_body
# collects the de-chunked body against the size limit; on_message_complete emits a
# Request. feed() returns the events its bytes completed.
#
# A limit broken inside a callback cannot simply propagate: httptools turns any
# exception raised there into HttpParserCallbackError. So a callback stores its
# ProtocolError on the parser before raising it, and feed() raises the stored one,
# whatever httptools wrapped it in. Errors the C parser finds itself become 400,
# except its own header overflow (http-parser only), which becomes 431; any other
# exception out of a callback is a bug here and becomes 500.
#
# The header limit is counted on what the parser reports: the request target, each
# name and value plus ': ' and CRLF, and the request line's fixed overhead. That sum
# does not depend on how the bytes were split. httptools buffers a header name or
# value until its line ends, and llhttp has no limit of its own, so a second guard
# counts bytes fed without any callback firing; past twice the header limit the
# peer is sending one endless line, and gets 431.
#
# `phase` tells the server which deadline applies (http/deadlines.py): IDLE between
# requests, HEADERS from a request's first byte to the end of its header section, BODY
# until the request is complete. Leading CRLFs before a request keep a connection IDLE.
#
# A request target longer than the header limit is 414, not 431: the client can tell a
# URI it built too long from headers. An HTTP/0.9 request line ("GET /" and CRLF, no
# version) is read by both parsers as the start of a request whose header section
# follows: the blank line ending it gets 505 (http-parser completes the request without
# calling on_headers_complete, llhttp reports version 0.9), and a client that waits for
# an HTTP/0.9 answer instead gets the server's 408 at header_timeout.
#
# After a request that does not keep the connection alive, further bytes are
# ignored: RFC 9112 section 9.6 forbids processing more requests on it, and the two
# parser versions disagree on whether such bytes are an error.
#
# Neither WebSocket nor h2c is served. A request with Upgrade is answered as plain
# HTTP/1.1, which RFC 9110 section 7.8 allows. Both parsers stop right after an
# upgrade request's header section and skip its body, so CONNECT and an upgrade
# request declaring a body get 501; otherwise a new parser takes the bytes after it.

import re
import time
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import unquote_to_bytes

import httptools

from zato_daemon.errors import HttpError

__all__ = (
    'BODY',
    'CONTINUE',
    'CONTINUE_RESPONSE',
    'DEFAULT_MAX_HEADER_SIZE',
    'MAX_FIELDS',
    'HEADERS',
    'IDLE',
    'has_control_character',
    'is_token',
    'ProtocolError',
    'Request',
    'RequestParser',
    'render_checked',
    'render_response',
)

DEFAULT_MAX_HEADER_SIZE = 65536

# What RequestParser.phase reports: between requests, in a header section, in a body.
IDLE = 'idle'
HEADERS = 'headers'
BODY = 'body'

CONTINUE_RESPONSE = b'HTTP/1.1 100 Continue\r\n\r\n'

# Header fields (or trailer fields) a request may hold: a field is kept as a pair of bytes
# objects until its section ends, which costs about 30 times its wire size for the shortest
# fields. Apache's default is 100; browsers send about 20.
MAX_FIELDS = 500

# What the request line adds to the header-section count besides method and target:
# ' ', ' HTTP/1.1', CRLF, and the CRLF closing the section.
_REQUEST_LINE_OVERHEAD = 1 + 9 + 2 + 2

# The longest silence a valid request can produce is one header line plus the tail of
# the request line; twice the header limit stays clear of it.
_SILENCE_SLACK = 64

# http-parser reports its own 80 KiB header limit only through this text.
_HEADER_OVERFLOW_TEXTS = ('too many header bytes', 'header overflow')

# Bytes that may hold a header section are fed in slices of this size: the C parsers
# report a request target in pieces, at the end of each feed, and http-parser's own 80 KiB
# cap (which can only say 431) would otherwise strike inside a long target before on_url
# reports the piece over our limit (414). 64 KiB plus a slice stays under 80 KiB.
_HEADER_SLICE = 8192

_HTTP_VERSIONS = frozenset(('1.1', '1.0'))

_METHOD_NAMES = {
    name.encode('ascii'): name
    for name in ('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS')
}


_TRAILING_SPACE = (b' ', b'\t')


def _merge_repeated(keys, texts):
    """Header fields with repeated names joined with ', ' in order (RFC 9110 section 5.3)."""
    headers = {}
    for key, text in zip(keys, texts):
        headers[key] = f'{headers[key]}, {text}' if key in headers else text
    return headers


class ProtocolError(HttpError):
    """The peer broke HTTP/1.1 or a limit; the server answers `status` and closes.

    `events` holds what the same feed() call completed before the error (usually
    nothing), so the server may still answer those pipelined requests first.
    """

    status = 400

    def __init__(self, message, status=None):
        super().__init__(message, status)
        self.events = []


class Request:
    """One complete request, its body read in full and de-chunked.

    method: 'GET', 'POST' ...; path: the percent-decoded path without the query;
    query: the raw query string without '?'; headers: lowercase name -> value,
    repeated headers joined with ', ', bytes decoded as latin-1 so none is lost;
    body: bytes; keep_alive: the parser's verdict (HTTP/1.1 unless
    'Connection: close', HTTP/1.0 only with 'Connection: keep-alive');
    http_version: '1.1' or '1.0'.
    """

    __slots__ = ('method', 'path', 'query', 'headers', 'body', 'keep_alive', 'http_version')

    def __init__(self, method, path, query, headers, body, keep_alive, http_version):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.http_version = http_version

    def __repr__(self):
        return (f'<Request {self.method} {self.path!r} query={self.query!r} '
                f'HTTP/{self.http_version} body={len(self.body)}B keep_alive={self.keep_alive}>')


class _Continue:
    __slots__ = ()

    def __repr__(self):
        return 'CONTINUE'


# The event "send CONTINUE_RESPONSE now": an HTTP/1.1 request with
# 'Expect: 100-continue' announced a body. It comes before that request's Request
# event and is emitted even if the body arrived in the same chunk (rule 2); an
# unneeded 100 is harmless to the client.
CONTINUE = _Continue()


class _DataAfterClose(Exception):
    """Stops the C parser at a request that follows a non-keep-alive one."""


class RequestParser:
    """Turns the bytes of one connection into Request and CONTINUE events.

    Runs in a worker, one instance per connection; it holds no socket.

    Args:
        max_request_size: largest body accepted, in bytes, declared or de-chunked (413).
        max_header_size: largest header section accepted, in bytes (431), counted as
            the request line, each 'name: value' line and the final CRLF. Under
            httptools 0.1.1, http-parser's own 80 KiB cap applies as well.

    `phase` is IDLE, HEADERS or BODY: where the connection is between two feed() calls.
    """

    # The callbacks are the hot path of every request, so each does the least it can:
    # on_header only keeps the raw pair, and on_headers_complete settles everything about
    # the header section in one pass (counting, decoding, merging, framing). A header
    # section that never ends is still stopped, by the silence guard at twice the limit.

    def __init__(self, max_request_size, max_header_size=DEFAULT_MAX_HEADER_SIZE):
        self._max_request_size = max_request_size
        self._max_header_size = max_header_size
        self._silence_limit = 2 * max_header_size + _SILENCE_SLACK
        self._parser = httptools.HttpRequestParser(self)
        self._events = []
        self._error = None
        self._is_closed = False
        self._heard = False
        self._silent_bytes = 0
        self.phase = IDLE
        self._reset_message()

    @property
    def body_received(self):
        """Bytes of the current request's body received so far (de-chunked)."""
        return self._body_size

    def feed(self, data):
        """Parses the next bytes received and returns the events they completed, in order.

        Raises ProtocolError, carrying the events completed before it, when the
        request is malformed or over a limit; every later call raises it again.
        """
        if self._error is not None:
            raise self._error.with_traceback(None)
        events = self._events = []
        if self._is_closed:
            return events
        try:
            if len(data) > _HEADER_SLICE and self.phase is not BODY:
                self._feed_sliced(data)  # a header section may be in these bytes: see _HEADER_SLICE
            else:
                self._feed_whole(data)
            if self._heard:
                self._heard = False
                self._silent_bytes = 0
            else:
                self._watch_silence(len(data))
            if len(self._fields) > self._counted:
                # A header or trailer section goes on past this read: count what it holds so
                # far, so that one that never ends is cut at the limit, not at the silence
                # guard's twice the limit with every field kept meanwhile.
                self._count_fields()
        except ProtocolError:
            pass  # raised outside any callback, by the silence guard; stored already
        except httptools.HttpParserError as exc:
            if self._is_closed:
                return events
            self._store_parser_error(exc)
        if self._error is not None:
            self._error.events = events
            raise self._error
        return events

    def feed_eof(self):
        """Notes that the peer stopped sending; raises ProtocolError(400) if a request was cut short."""
        if self._error is not None:
            raise self._error.with_traceback(None)
        if self.phase is not IDLE and not self._is_closed:
            self._error = ProtocolError('connection closed in the middle of a request', 400)
            raise self._error
        return []

    # httptools callbacks: public only because the C parser looks them up by name.

    def on_message_begin(self):
        """httptools callback: a request starts."""
        if self._is_closed:
            raise _DataAfterClose()
        self._heard = True
        self.phase = HEADERS
        self._reset_message()

    def on_url(self, fragment):
        """httptools callback: a piece of the request target."""
        self._heard = True
        url = self._url = self._url + fragment
        if len(url) > self._max_header_size:
            self._fail(f'request target over {self._max_header_size} bytes', 414)

    def on_header(self, name, value):
        """httptools callback: one complete header field, or a trailer field after the body."""
        self._fields.append((name, value))

    def on_headers_complete(self):
        """httptools callback: the header section ended; settle framing before any body byte."""
        self._heard = True
        parser = self._parser
        raw_method = parser.get_method()
        method = _METHOD_NAMES.get(raw_method) or raw_method.decode('ascii')
        self._method = method
        headers = self._headers = self._decode_fields(len(method) + len(self._url) + _REQUEST_LINE_OVERHEAD)
        self._fields = []  # what on_header reports from now on are trailers, counted on top
        self._counted = 0
        self.phase = BODY
        version = parser.get_http_version()
        if version not in _HTTP_VERSIONS:
            self._fail(f'HTTP/{version} is not supported', 505)
        self._http_version = version
        has_body = self._check_framing(headers)
        if parser.should_upgrade():
            self._check_upgrade(method, has_body)
        self._path, self._query = self._split_target(self._url)
        if has_body and 'expect' in headers and self._expects_continue():
            self._events.append(CONTINUE)

    def on_body(self, fragment):
        """httptools callback: a piece of the body, already de-chunked."""
        self._heard = True
        size = self._body_size + len(fragment)
        if size > self._max_request_size:
            self._fail(f'request body over {self._max_request_size} bytes', 413)
        self._body_size = size
        self._body.append(fragment)

    def on_message_complete(self):
        """httptools callback: the request ended; emit it."""
        self._heard = True
        if self.phase is not BODY:
            # http-parser completes an HTTP/0.9 request line without a header section.
            self._fail('HTTP/0.9 is not supported', 505)
        if self._fields:
            # Trailers are counted with the header section, not merged: RFC 9110 section
            # 6.5.1 lets a recipient discard them, and nothing here needs them.
            self._count_fields()
            self._fields = []
        keep_alive = self._parser.should_keep_alive()
        body = self._body
        self._events.append(Request(
            self._method, self._path, self._query, self._headers,
            body[0] if len(body) == 1 else b''.join(body), keep_alive, self._http_version))
        self.phase = IDLE
        self._is_closed = not keep_alive

    # Internals

    def _reset_message(self):
        self._url = b''
        self._fields = []
        self._counted = 0
        self._header_size = 0
        self._headers = {}
        self._body = []
        self._body_size = 0
        self._method = ''
        self._path = ''
        self._query = ''
        self._http_version = ''

    def _decode_fields(self, size):
        """The header fields as a dict (lowercase name -> latin-1 text, repeats joined with
        ', '), counting the section's size from `size` (the request line's share).

        All names, then all values, are decoded as one string each and split again: a
        handful of C calls whatever the number of fields. LF cannot occur inside a name or a
        value (both parsers end a line there; http-parser turns an obsolete line folding into
        spaces, llhttp refuses it), so it separates them safely.
        """
        fields = self._fields
        count = len(fields)
        if not count:
            headers = {}
        else:
            names = b'\n'.join([name for name, _ in fields])
            values = b'\n'.join([value for _, value in fields])
            # Each field is name, ': ', value, CRLF; the joins hold count - 1 separators each.
            size += len(names) + len(values) + 2 * count + 2
            if b' ' in names:
                # http-parser in its default, non-strict build accepts spaces in a field
                # name and llhttp refuses them; refuse for both.
                name = next(name for name, _ in fields if b' ' in name)
                self._fail(f'space in header field name {name[:64]!r}', 400)
            keys = names.lower().decode('latin-1').split('\n')
            texts = values.decode('latin-1').split('\n')
            if b' \n' in values or b'\t\n' in values or values[-1:] in _TRAILING_SPACE:
                texts = [text.rstrip(' \t') for text in texts]
            headers = dict(zip(keys, texts))
            if len(headers) < count:
                headers = _merge_repeated(keys, texts)
        self._check_section(size, count)
        self._header_size = size
        return headers

    def _count_fields(self):
        """Adds the fields reported since the last count to the section's size, and refuses a
        section over the limits (431). Before the header section ends, the request line is
        not in the count yet; on_headers_complete counts it all exactly."""
        fields = self._fields
        size = self._header_size
        for name, value in fields[self._counted:]:
            size += len(name) + len(value) + 4
        self._counted = len(fields)
        self._header_size = size
        self._check_section(size, len(fields))

    def _check_section(self, size, count):
        if size > self._max_header_size:
            self._fail(f'header section over {self._max_header_size} bytes', 431)
        if count > MAX_FIELDS:
            self._fail(f'more than {MAX_FIELDS} header fields', 431)

    def _feed_sliced(self, data):
        view = memoryview(data)
        for start in range(0, len(view), _HEADER_SLICE):
            self._feed_whole(view[start:start + _HEADER_SLICE])
            if self._is_closed:
                return

    def _feed_whole(self, data):
        while data:
            try:
                self._parser.feed_data(data)
                break
            except httptools.HttpParserUpgrade as exc:
                if self._is_closed:
                    break
                # The peer got no 101, so the bytes after the upgrade request are
                # HTTP/1.1 again; a memoryview keeps many such requests linear.
                self._parser = httptools.HttpRequestParser(self)
                data = memoryview(data)[exc.args[0]:]

    def _watch_silence(self, size):
        self._silent_bytes += size
        if self._silent_bytes > self._silence_limit and not self._is_closed:
            status = 431 if self.phase is not IDLE else 400
            self._fail(f'{self._silent_bytes} bytes without a complete header line', status)

    def _store_parser_error(self, exc):
        if self._error is not None:
            return
        text = str(exc)
        if isinstance(exc, httptools.HttpParserCallbackError):
            # Not one of ours (those are stored before raising): a bug in a callback.
            error = ProtocolError(f'internal error while parsing: {text}', 500)
        elif any(marker in text.lower() for marker in _HEADER_OVERFLOW_TEXTS):
            error = ProtocolError(f'header section too large: {text}', 431)
        else:
            error = ProtocolError(f'malformed request: {text}', 400)
        error.__cause__ = exc
        self._error = error

    def _fail(self, message, status):
        error = self._error = ProtocolError(message, status)
        raise error

    def _check_framing(self, headers):
        """Returns whether a body follows; refuses framings that cannot be served."""
        length = headers.get('content-length')
        if 'transfer-encoding' in headers:
            coding = headers['transfer-encoding']
            if length is not None:
                # Both parsers refuse this already; it is the classic request-smuggling
                # shape, so it stays refused whatever a future parser allows.
                self._fail('both Transfer-Encoding and Content-Length', 400)
            if coding.lower() != 'chunked':
                self._fail(f'Transfer-Encoding {coding!r} is not supported', 501)
            return True
        if length is None:
            return False
        if not (length.isascii() and length.isdigit()):
            self._fail(f'invalid Content-Length {length[:64]!r}', 400)
        size = int(length)
        if size > self._max_request_size:
            self._fail(f'Content-Length {size} over {self._max_request_size} bytes', 413)
        return size > 0

    def _check_upgrade(self, method, has_body):
        if method == 'CONNECT':
            self._fail('CONNECT is not supported', 501)
        if has_body:
            self._fail('an Upgrade request with a body is not supported', 501)

    def _expects_continue(self):
        # RFC 9110 section 10.1.1: ignore the expectation in an HTTP/1.0 request.
        return self._http_version == '1.1' and self._headers['expect'].lower() == '100-continue'

    def _split_target(self, target):
        if target[:1] == b'/' and b'#' not in target and b'%' not in target:
            path, _, query = target.partition(b'?')
        else:
            path, query = self._normalize_target(target)
        try:
            decoded = path.decode('utf-8')
        except UnicodeDecodeError:
            self._fail(f'request path {path[:64]!r} is not UTF-8', 400)
        return decoded, query.decode('latin-1')

    def _normalize_target(self, target):
        """(path, query) of a target with a fragment, in absolute form or percent-encoded."""
        if b'#' in target:
            target = target.partition(b'#')[0]
        if target[:1] != b'/' and target != b'*':
            target = self._origin_form(target)
        path, _, query = target.partition(b'?')
        if b'%' in path:
            path = unquote_to_bytes(path)
        return path, query

    def _origin_form(self, target):
        """Reduces an absolute-form target (http://host/path?query) to path and query."""
        try:
            url = httptools.parse_url(target)
        except httptools.HttpParserError:
            self._fail(f'invalid request target {target[:64]!r}', 400)
        path = url.path or b'/'
        return path + b'?' + url.query if url.query else path


################################################################
# Responses
################################################################

_REASONS = {
    100: 'Continue',
    200: 'OK',
    201: 'Created',
    204: 'No Content',
    400: 'Bad Request',
    403: 'Forbidden',
    404: 'Not Found',
    405: 'Method Not Allowed',
    408: 'Request Timeout',
    413: 'Content Too Large',
    414: 'URI Too Long',
    415: 'Unsupported Media Type',
    431: 'Request Header Fields Too Large',
    500: 'Internal Server Error',
    501: 'Not Implemented',
    503: 'Service Unavailable',
    505: 'HTTP Version Not Supported',
}

_STATUS_LINES = {
    status: f'HTTP/1.1 {status} {reason}\r\n'.encode('ascii') for status, reason in _REASONS.items()
}

# RFC 9110 sections 8.6 and 15: these never carry content, nor Content-Length.
_BODYLESS = frozenset((100, 101, 102, 103, 204, 304))
# 205 carries no content either, but RFC 9112 section 6.3 does not end it at the header
# section: it says so with Content-Length: 0.
_RESET_CONTENT = 205

_CONNECTION_CLOSE = b'Connection: close\r\n'
_CONNECTION_KEEP_ALIVE = b'Connection: keep-alive\r\n'


def _status_line(status):
    line = _STATUS_LINES.get(status)
    if line is not None:
        return line
    if not 100 <= status <= 999:
        raise ValueError(f'HTTP status {status!r} outside 100-999')
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = 'Unknown'
    return b'HTTP/1.1 %d %s\r\n' % (status, reason.encode('ascii'))


class _ResponseHeads:
    """The header lines every response of a kind starts with, prepared once a second.

    A response is its head (status line, Server, Date, Connection, Content-Type, and the
    name of Content-Length), then its length, its extra header lines and its body: one
    bytes formatting per response instead of a list of parts and a join. The heads depend
    on the second (Date: formatdate costs microseconds) and on (status, keep_alive,
    is_http10, content_type); they are kept for the current second only, and at most
    MAX_KINDS of them, so a service inventing a content type per call cannot grow them.
    """

    MAX_KINDS = 64

    __slots__ = ('_kept',)

    def __init__(self):
        # (second, {kind: (head, has_length)}), replaced whole so a reader never sees a mix.
        self._kept = (None, {})

    def head(self, status, keep_alive, is_http10, content_type, now):
        second = int(now)
        kept_second, heads = self._kept
        if second != kept_second:
            heads = {}
            self._kept = (second, heads)
        kind = (status, keep_alive, is_http10, content_type)
        prepared = heads.get(kind)
        if prepared is None:
            prepared = _build_head(status, keep_alive, is_http10, content_type, second)
            if len(heads) < self.MAX_KINDS:
                heads[kind] = prepared
        return prepared


def _build_head(status, keep_alive, is_http10, content_type, second):
    parts = [_status_line(status), b'Server: zato-daemon\r\nDate: ',
             formatdate(second, usegmt=True).encode('ascii'), b'\r\n']
    if not keep_alive:
        parts.append(_CONNECTION_CLOSE)
    elif is_http10:
        parts.append(_CONNECTION_KEEP_ALIVE)
    has_length = status not in _BODYLESS
    if has_length:
        parts += (b'Content-Type: ', content_type, b'\r\nContent-Length: ')
    return b''.join(parts), has_length


_HEADS = _ResponseHeads()


# RFC 9110 token characters: a header name with anything else could split the response.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Control characters but horizontal tab, and DEL: CR and LF split a response, NUL makes
# clients drop it (RFC 9110 section 5.5).
_CONTROL = re.compile(rb'[\x00-\x08\x0a-\x1f\x7f]')


def is_token(name):
    """True when `name` (bytes) may be a header field name."""
    return _TOKEN.fullmatch(name) is not None


def has_control_character(value):
    """True when `value` (bytes) holds a character no header field value may hold."""
    return not value.isalnum() and _CONTROL.search(value) is not None


def render_response(status, body, keep_alive, content_type=b'application/json', extra_headers=(),
                    *, is_http10=False, is_head=False, now=None):
    """Renders a complete response as one bytes object, ready for a single write.

    Args:
        status: the HTTP status; 1xx, 204 and 304 get neither body nor Content-Length,
            205 gets Content-Length: 0 (a body passed with them is dropped).
        body: the content, bytes.
        keep_alive: False adds 'Connection: close'; the server closes after sending.
        content_type: the Content-Type value, bytes.
        extra_headers: iterable of (name, value) pairs, both bytes, e.g.
            (b'X-Zato-CID', cid); a name that is not a token, or a value holding a control
            character (CR, LF, NUL ...), raises ValueError.
        is_http10: the request was HTTP/1.0, so a kept-alive connection is announced
            with 'Connection: keep-alive' (HTTP/1.1 implies it).
        is_head: the request was HEAD: the headers are those of the full response, the
            body is not sent (RFC 9110 section 9.3.2).
        now: the time for the Date header, seconds since the epoch; time.time() if None.
    """
    lines = []
    for name, value in extra_headers:
        if has_control_character(value):
            raise ValueError(f'control character in the value of response header {name!r}')
        if not is_token(name):
            raise ValueError(f'response header name {name!r} is not an HTTP token')
        lines += (name, b': ', value, b'\r\n')
    return render_checked(status, body, keep_alive, content_type, b''.join(lines), is_http10, is_head,
                          time.time() if now is None else now)


def render_checked(status, body, keep_alive, content_type, header_lines, is_http10, is_head, now):
    """render_response() for header lines already checked and rendered ('Name: value' and
    CRLF each, as bytes): the router's own headers, and service headers that passed
    http/headers.py. The status must be 100 to 999 (ValueError otherwise)."""
    head, has_length = _HEADS.head(status, keep_alive, is_http10, content_type, now)
    if not has_length:
        return b'%s%s\r\n' % (head, header_lines)
    if is_head:
        return b'%s%d\r\n%s\r\n' % (head, 0 if status == _RESET_CONTENT else len(body), header_lines)
    if status == _RESET_CONTENT:
        body = b''
    return b'%s%d\r\n%s\r\n%s' % (head, len(body), header_lines, body)
