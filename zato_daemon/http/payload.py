"""JSON bodies in and out of services, held to what JSON is (RFC 8259), not to what Python's
json module lets through.

Pure: bytes in, a value or a PayloadError out; no I/O, no logging.

What the json module accepts and this refuses, each with a 400 saying why:
- bytes that are not UTF-8. json.loads(bytes) would guess UTF-16 or UTF-32 and decode with
  'surrogatepass', so UTF-8-encoded surrogates got in;
- NaN, Infinity and -Infinity, and numbers too big for a float (1e999 became inf). They
  are not JSON, and a service handing one back could not answer;
- lone surrogates written as escapes ("\\ud800"). A str holding one cannot be encoded to
  UTF-8 again, so it broke the log record and the diagnostics batch of the call;
- nesting deeper than max_json_depth. Past about a thousand levels the decoder itself
  raises RecursionError, and every later walk of the payload (logging, redaction) would.

The checks cost nothing on ordinary bodies: the surrogate walk runs only when the text holds
a '\\u' escape, the depth walk only when the text holds more brackets than the limit.
"""

import json
import math
import re

__all__ = ('PayloadError', 'decode_json', 'depth_exceeds', 'is_json_media_type')


class PayloadError(ValueError):
    """A request body that is not acceptable JSON; the message says what is wrong (400)."""


def _refuse_constant(name):
    raise PayloadError(f'{name} is not a JSON value')


def _finite_float(text):
    value = float(text)
    if math.isinf(value):
        raise PayloadError(f'the number {text[:32]}{"..." if len(text) > 32 else ""} is too large for a float')
    return value


# One decoder for every call: json.loads(text, **options) would build a new one each time.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
# _finite_float is a Python call per number with a fraction or an exponent. Only an exponent
# or more than 308 digits in a row can make a float infinite, so a body without either is
# scanned by a decoder that lets C convert its floats. The test runs on the bytes with every
# digit made 0 and E made e: two substring searches, at C speed (a regex took 6 us per KB).
_PLAIN_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_AS_ZEROS = bytes.maketrans(b'123456789E', b'000000000e')
_EXPONENT = b'0e'
_LONGEST_FINITE_RUN = 308
_SURROGATE = re.compile('[\ud800-\udfff]')


def decode_json(body, max_depth):
    """The value of a JSON request body; None for an empty one.

    Raises PayloadError naming the problem: not UTF-8 (with the offset), malformed JSON
    (with line and column), a non-finite number, a lone surrogate, or nesting deeper than
    `max_depth`.
    """
    if not body:
        return None
    try:
        text = body.decode('utf-8')
    except UnicodeDecodeError as exc:
        raise PayloadError(f'the body is not UTF-8: {exc.reason} at byte {exc.start}') from None
    digits = body.translate(_AS_ZEROS)
    may_overflow = _EXPONENT in digits or b'0' * (_LONGEST_FINITE_RUN + 1) in digits
    try:
        value = _scan_whole(text, _DECODER if may_overflow else _PLAIN_DECODER)
    except RecursionError:
        raise PayloadError(f'JSON nested deeper than {max_depth} levels') from None
    except PayloadError:
        raise
    except ValueError as exc:
        raise PayloadError(f'malformed JSON: {exc}') from None
    if '\\u' in text and _holds_surrogate(value):
        raise PayloadError('a string holds a lone surrogate escape (\\ud800-\\udfff), which is not text')
    if len(body) > 2 * max_depth and _nesting_exceeds(body, value, max_depth):
        raise PayloadError(f'JSON nested deeper than {max_depth} levels')
    return value


# What is left of a JSON text when only brackets, quotes and backslashes are kept, and
# objects are written as arrays: the nesting, once the strings are taken out.
_STRUCTURE_ONLY = bytes(byte for byte in range(256) if byte not in b'[]{}"\\')
_OBJECTS_AS_ARRAYS = bytes.maketrans(b'{}', b'[]')


def _nesting_exceeds(body, value, max_depth):
    """depth_exceeds(value, max_depth), read from the bytes of the (valid) JSON body when they
    allow it: a few passes at C speed instead of a Python step per value.

    Without backslashes, a string whose text holds no bracket is reduced to '""', and
    removing the '""' pairs from left to right takes out exactly those strings; a quote
    left over means some string holds a bracket (or an escape could hide a quote), and
    the value is walked instead. What remains are the brackets of the structure: each
    pass removing '[]' peels one level.
    """
    structure = body.translate(_OBJECTS_AS_ARRAYS, _STRUCTURE_ONLY)
    if b'\\' in structure:
        return depth_exceeds(value, max_depth)
    structure = structure.replace(b'""', b'')
    if b'"' in structure:
        return depth_exceeds(value, max_depth)
    for _ in range(max_depth):
        if not structure:
            return False
        structure = structure.replace(b'[]', b'')
    return bool(structure)


_JSON_WHITESPACE = ' \t\n\r'


def _scan_whole(text, decoder):
    """decoder.decode(text), without its Python wrapper: the C scanner once, and the errors
    json's own decode() would raise, worded the same (its wrapper skips whitespace around
    the value with two regex calls, and costs more than the scan of a small body)."""
    start = 0
    if text[0] in _JSON_WHITESPACE:
        start = len(text) - len(text.lstrip(_JSON_WHITESPACE))
    try:
        value, end = decoder.scan_once(text, start)
    except StopIteration as exc:
        raise json.JSONDecodeError('Expecting value', text, exc.value) from None
    if end != len(text):
        rest = text[end:].lstrip(_JSON_WHITESPACE)
        if rest:
            raise json.JSONDecodeError('Extra data', text, len(text) - len(rest))
    return value


def depth_exceeds(value, max_depth):
    """True when arrays and objects in `value` (as the json module makes them: dict and list)
    nest deeper than `max_depth` (a scalar is depth 0).

    Level by level, each level one list comprehension: a body of a hundred records is a few
    passes, not a Python step per value.
    """
    level = [value] if type(value) is dict or type(value) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            return True
        level = [child for item in level for child in (item.values() if type(item) is dict else item)
                 if type(child) is dict or type(child) is list]
    return False


def _holds_surrogate(value):
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# The media types of a JSON body: application/json, and the +json structured suffix of
# RFC 6839 (application/problem+json, application/vnd.api+json).
_JSON_MEDIA_TYPE = re.compile(r'application/(?:json|[!#$%&\'*+.^_`|~0-9a-z-]+\+json)')
_CHARSET = re.compile(r'charset\s*=\s*"?([^";\s]*)"?', re.IGNORECASE)


def is_json_media_type(content_type):
    """True when a Content-Type value declares JSON in UTF-8 (any charset parameter says utf-8)."""
    if content_type == 'application/json':
        return True
    media_type, _, parameters = content_type.partition(';')
    if not _JSON_MEDIA_TYPE.fullmatch(media_type.strip().lower()):
        return False
    charset = _CHARSET.search(parameters)
    return charset is None or charset.group(1).lower() in ('utf-8', 'utf8')
