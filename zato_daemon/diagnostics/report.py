"""Stored calls as text: a table for people, JSON for diff between two environments.

Rows are the dicts `store.list_slow()` and `store.list_samples()` return. The JSON keeps
their key order and adds nothing (no time of the report, no host, no path), so the output
of two environments differs only where their calls differ.
"""

import json

ELLIPSIS = '…'
# Payload columns are cut to this many characters in a table; --json shows them whole.
CUT_WIDTHS = {'request': 40, 'response': 40, 'error': 40}
RIGHT_ALIGNED = frozenset(('worker', 'duration_ms', 'status'))
MISSING = '-'
GAP = '  '

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
    """`rows` as indented JSON, keys in the rows' own order, non-ASCII text as is."""
    return json.dumps(list(rows), indent=2, ensure_ascii=False, sort_keys=False)


def format_slow(rows, as_json=False):
    """Slow calls for `zato-daemon slow`: a table, or JSON with `as_json`."""
    if as_json:
        return format_json(rows)
    return format_table(rows, SLOW_COLUMNS) if rows else 'No slow responses stored.'


def format_samples(rows, as_json=False):
    """Sample calls of one service for `zato-daemon samples`: a table, or JSON with `as_json`."""
    if as_json:
        return format_json(rows)
    return format_table(rows, SAMPLE_COLUMNS) if rows else 'No samples stored.'


def _cell(value, column):
    if value is None:
        return MISSING
    if column == 'duration_ms':
        return f'{value:.1f}'
    text = ' '.join(str(value).split())
    width = CUT_WIDTHS.get(column)
    if width is not None and len(text) > width:
        return text[:width - 1] + ELLIPSIS
    return text


def _line(cells, widths, columns):
    parts = [cell.rjust(width) if column in RIGHT_ALIGNED else cell.ljust(width)
             for cell, width, column in zip(cells, widths, columns)]
    return GAP.join(parts).rstrip()
