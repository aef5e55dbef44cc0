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
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise PayloadError(f'JSON nested deeper than {max_depth} levels') from None
    except PayloadError:
        raise
    except ValueError as exc:
        raise PayloadError(f'malformed JSON: {exc}') from None
    if '\\u' in text and _holds_surrogate(value):
        raise PayloadError('a string holds a lone surrogate escape (\\ud800-\\udfff), which is not text')
    if text.count('[') + text.count('{') > max_depth and depth_exceeds(value, max_depth):
        raise PayloadError(f'JSON nested deeper than {max_depth} levels')
    return value


def depth_exceeds(value, max_depth):
    """True when arrays and objects in `value` nest deeper than `max_depth` (a scalar is depth 0)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
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
