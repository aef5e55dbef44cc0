"""Stored calls as text: a table for people, JSON for diff between two environments.

Rows are the dicts `store.list_slow()` and `store.list_samples()` return. The JSON keeps
their key order and adds nothing (no time of the report, no host, no path), so the output
of two environments differs only where their calls differ.

The stored texts were redacted when they were written; they pass the redaction policy's
text rules again on their way out, for rows an older version wrote, or that were written
before [logging] secret_names named more.
"""

import json
import re

from zato_daemon.redaction import redact_text

ELLIPSIS = '…'
# Payload columns are cut to this many characters in a table; --json shows them whole.
CUT_WIDTHS = {'request': 40, 'response': 40, 'error': 40}
RIGHT_ALIGNED = frozenset(('worker', 'duration_ms', 'status'))
MISSING = '-'
GAP = '  '
REDACTED_COLUMNS = frozenset(('request', 'response', 'error'))

# What must not reach the operator's terminal raw from text a client sent, or that anyone who
# can write the cluster's Redis wrote: C0 controls but tab and newline (ESC starts an escape
# sequence: a cleared screen, a changed title, a forged line), DEL, C1 controls (0x9b is a CSI
# on some terminals), the invisible and bidirectional format characters (text shown in another
# order than it reads), and lone surrogates (valid in JSON, but print() cannot encode them).
# JSON allows every one of them unescaped in a string except the C0 controls.
UNSHOWABLE = re.compile('[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069'
                        '\ufeff\ud800-\udfff]')

SLOW_COLUMNS = ('started_at', 'service', 'duration_ms', 'status', 'worker', 'cid', 'request', 'response', 'error')
# Samples are listed for one service, named on the command line.
SAMPLE_COLUMNS = ('started_at', 'duration_ms', 'status', 'worker', 'cid', 'request', 'response', 'error')


def format_table(rows, columns):
    """`rows` as a plain-text table of `columns`, one line per row under a header line.

    Widths fit the longest cell; payload columns are cut with '…' and whitespace (a
    traceback's newlines) is collapsed, so each row stays on one line.
    """
    cells = [[_cell(row.get(column), column) for column in columns] for row in rows]
    header = [column.upper() for column in columns]
    widths = [max(len(line[index]) for line in [header, *cells]) for index in range(len(columns))]
    return '\n'.join(_line(line, widths, columns) for line in [header, *cells])


def format_json(rows):
    """`rows` as indented JSON, keys in the rows' own order, non-ASCII text as is but for the
    UNSHOWABLE characters, written as JSON escapes (\\u009b): the same JSON value, and nothing
    a terminal acts on."""
    text = json.dumps(list(rows), indent=2, ensure_ascii=False, sort_keys=False)
    return UNSHOWABLE.sub(lambda match: f'\\u{ord(match.group()):04x}', text)


def shown(value):
    """A text safe to print in a table: each UNSHOWABLE character as its escape (\\x1b,
    \\u202e); any other value as it is."""
    if not isinstance(value, str):
        return value
    return UNSHOWABLE.sub(lambda match: match.group().encode('unicode_escape').decode('ascii'), value)


def redacted_rows(rows):
    """The rows with their request, response and error texts through the redaction policy."""
    return [{key: redact_text(value) if key in REDACTED_COLUMNS and isinstance(value, str) else value
             for key, value in row.items()} for row in rows]


def format_slow(rows, as_json=False):
    """Slow calls for `zato-daemon slow`: a table, or JSON with `as_json`."""
    rows = redacted_rows(rows)
    if as_json:
        return format_json(rows)
    return format_table(rows, SLOW_COLUMNS) if rows else 'No slow responses stored.'


def format_samples(rows, as_json=False):
    """Sample calls of one service for `zato-daemon samples`: a table, or JSON with `as_json`."""
    rows = redacted_rows(rows)
    if as_json:
        return format_json(rows)
    return format_table(rows, SAMPLE_COLUMNS) if rows else 'No samples stored.'


def _cell(value, column):
    if value is None:
        return MISSING
    if column == 'duration_ms':
        return f'{value:.1f}'
    text = ' '.join(shown(str(value)).split())
    width = CUT_WIDTHS.get(column)
    if width is not None and len(text) > width:
        return text[:width - 1] + ELLIPSIS
    return text


def _line(cells, widths, columns):
    parts = [cell.rjust(width) if column in RIGHT_ALIGNED else cell.ljust(width)
             for cell, width, column in zip(cells, widths, columns)]
    return GAP.join(parts).rstrip()
