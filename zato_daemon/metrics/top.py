"""`zato-daemon top`: the master's per-second view (live.py) drawn in a terminal.

Two halves. `screen()` is pure: a snapshot as the zato.server.metrics service answers it
(live.py's view plus `age_seconds`), a width and a height in, the lines to show out, none
wider than the width in terminal cells and no more of them than the height. `run()` is the
I/O: curses, a fetch every second, the keys and resizes; it draws what `screen()` (or
`problem_screen()`) returns and decides nothing about the layout itself, so every layout
decision is tested without a terminal.
"""

import curses
import locale
import os
import textwrap
import time
import unicodedata
from collections import namedtuple

from zato_daemon.errors import EXIT_OK, UsageError, ZatoDaemonError

# A view older than this is marked: the master publishes every second, so a view this old
# means its loop is stuck or the snapshot file is not being written.
STALE_AFTER = 5.0
REFRESH_INTERVAL = 1.0
# When the terminal cannot hold every row, the services keep at least this many lines
# (the workers give theirs up first): they are what top is for.
SERVICES_KEPT = 3
# The service name column: never narrower than NAME_MIN; in a narrow terminal, columns on
# the right are left out until it has NAME_WANTED cells (or its longest name needs fewer).
NAME_MIN = 8
NAME_WANTED = 24
GAP = '  '
ELLIPSIS = '\u2026'
# Ctrl-C arrives as SIGINT in cbreak mode, but as a key (3) should the terminal pass it raw.
QUIT_KEYS = frozenset((ord('q'), ord('Q'), 3))


# ---- text that fits: terminal cells, not characters

def _cell_width(char):
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in 'WF' else 1


def cells(text):
    """How many terminal cells `text` takes (wide East Asian characters take two)."""
    return sum(_cell_width(char) for char in text)


def printable(text):
    """`text` with anything a terminal would act on (escapes, newlines, tabs) shown as '?':
    a service name is the service author's text, and must not move the cursor or recolour."""
    return ''.join(char if char.isprintable() else '?' for char in str(text))


def fit(text, width):
    """`text` cut to `width` cells, its end replaced by an ellipsis when it was cut."""
    text = printable(text)
    if cells(text) <= width:
        return text
    if width <= 0:
        return ''
    kept, used = [], 0
    for char in text:
        size = _cell_width(char)
        if used + size > width - 1:
            break
        kept.append(char)
        used += size
    return ''.join(kept) + ELLIPSIS


def fit_tail(text, width):
    """`text` cut to `width` cells keeping its end (a path's last parts tell most)."""
    return fit(printable(text)[::-1], width)[::-1]


# ---- how each figure is shown; None (no calls in the interval, no /proc figure) is '-'

def _or_dash(show):
    return lambda value: '-' if value is None else show(value)


_integer = _or_dash(lambda value: str(int(value)))
_tenths = _or_dash(lambda value: f'{value:.1f}')
_percent = _or_dash(lambda rate: f'{rate * 100:.1f}')
_mib = _or_dash(lambda size: f'{size / (1 << 20):.1f}')


@_or_dash
def _milliseconds(seconds):
    ms = seconds * 1000
    return f'{ms:.2f}' if ms < 10 else f'{ms:.1f}' if ms < 1000 else f'{ms:.0f}'


# `width` None: the column takes what the terminal leaves (the service name).
Column = namedtuple('Column', 'title key show width right')

SERVICE_COLUMNS = (
    Column('SERVICE', 'service', printable, None, False),
    Column('CALLS/S', 'calls_per_second', _tenths, 9, True),
    Column('ERR %', 'error_rate', _percent, 6, True),
    Column('P50 MS', 'p50_seconds', _milliseconds, 8, True),
    Column('P99 MS', 'p99_seconds', _milliseconds, 8, True),
    Column('IN FLIGHT', 'in_flight', _integer, 9, True),
    Column('TOTAL CALLS', 'calls_total', _integer, 11, True),
)
WORKER_COLUMNS = (
    Column('WORKER', 'number', _integer, 6, True),
    Column('PID', 'pid', _integer, 8, True),
    Column('GEN', 'generation', _integer, 4, True),
    Column('STATE', 'state', printable, 9, False),
    Column('RSS MIB', 'rss_bytes', _mib, 8, True),
    Column('CPU S', 'cpu_seconds', _tenths, 8, True),
    Column('FDS', 'open_fds', _integer, 6, True),
    Column('REQUESTS', 'requests', _integer, 9, True),
    Column('IN FLIGHT', 'in_flight', _integer, 9, True),
)


def _cell(text, width, right):
    text = fit(text, width)
    pad = ' ' * (width - cells(text))
    return pad + text if right else text + pad


def _fixed_width(columns):
    return sum(column.width or 0 for column in columns) + len(GAP) * (len(columns) - 1)


def table(columns, rows, width):
    """[heading, row...] as lines of at most `width` cells. The one flexible column is as wide
    as its longest value, or what `width` leaves for it (its values cut with an ellipsis).
    When the terminal is too narrow, whole columns go from the right (a number cut in the
    middle would read as another number) until the flexible one has NAME_WANTED cells, and
    what still does not fit is cut at the right."""
    shown = [{column.key: printable(column.show(row.get(column.key))) for column in columns} for row in rows]
    longest = {column.key: max([cells(column.title)] + [cells(values[column.key]) for values in shown])
               for column in columns if column.width is None}
    wanted = sum(min(size, NAME_WANTED) for size in longest.values())
    while len(columns) > 2 and _fixed_width(columns) + wanted > width:
        columns = columns[:-1]
    widths = [column.width or max(NAME_MIN, min(longest[column.key], width - _fixed_width(columns)))
              for column in columns]
    lines = [{column.key: column.title for column in columns}] + shown
    return [fit(GAP.join(_cell(values[column.key], size, column.right) for size, column in zip(widths, columns))
                .rstrip(), width)
            for values in lines]


def cut(lines, room, noun, width):
    """`lines` in at most `room` lines: the first ones, then '… N more NOUN' for the rest."""
    if len(lines) <= room:
        return lines
    if room <= 0:
        return []
    return lines[:room - 1] + [fit(f'{ELLIPSIS} {len(lines) - room + 1} more {noun}', width)]


def header(snapshot, width, server_dir):
    """One line: the server, then its figures; the directory is cut first (from its start)."""
    totals = snapshot.get('totals') or {}
    age = snapshot.get('age_seconds') or 0.0
    restarts = sum((totals.get('restarts') or {}).values())
    figures = GAP.join(part for part in (
        f'workers {totals.get("workers_alive", 0)}',
        f'calls/s {_tenths(totals.get("calls_per_second"))}',
        f'in flight {_integer(totals.get("in_flight"))}',
        f'restarts {restarts}' if restarts else '',
        f'age {age:.1f} s',
    ) if part)
    marker = 'STALE' + GAP if age > STALE_AFTER else ''
    room = width - cells(marker + figures) - len(GAP)
    where = fit_tail(server_dir, room) + GAP if room >= NAME_MIN else ''
    return fit(marker + where + figures, width)


def screen(snapshot, width, height, server_dir):
    """The lines of the view: the header, the services busiest first (the order the master
    gives), the workers. `height` None: every row (for --once). Otherwise the services are cut
    to what the workers leave them, but keep SERVICES_KEPT lines; the workers take the rest,
    and their table goes when not one row of it would fit."""
    services = table(SERVICE_COLUMNS, snapshot.get('services') or [], width)
    workers = table(WORKER_COLUMNS, snapshot.get('workers') or [], width)
    service_rows = services[1:] or [fit('  (no service has been called yet)', width)]
    worker_block = ['', workers[0], *(workers[1:] or [fit('  (no worker)', width)])]
    lines = [header(snapshot, width, server_dir), '', services[0]]
    if height is None:
        return lines + service_rows + worker_block
    room = height - len(lines)
    if len(service_rows) + len(worker_block) > room:
        service_room = max(room - len(worker_block), min(len(service_rows), SERVICES_KEPT))
        worker_room = room - service_room - 2  # a blank line and the heading
        if worker_room < 1:
            service_room, worker_block = room, []
        else:
            worker_block = worker_block[:2] + cut(worker_block[2:], worker_room, 'workers', width)
        service_rows = cut(service_rows, service_room, 'services', width)
    return (lines + service_rows + worker_block)[:max(height, 0)]


def problem_screen(message, width, height):
    """What shows while there is no view: the reason (wrapped, not cut: its end names the
    error; a path breaks only where it is longer than a line), and that top keeps trying."""
    reason = [fit(line, width) for line in textwrap.wrap(printable(message), max(width, 1), break_on_hyphens=False)]
    return (reason + ['', fit(f'retrying every {REFRESH_INTERVAL:g} s; q quits', width)])[:max(height, 0)]


# ---- the terminal

def run(fetch, server_dir, first=None, interval=REFRESH_INTERVAL):
    """Draws the view until q or Ctrl-C; returns the exit status (0). `fetch()` returns a
    snapshot or raises a ZatoDaemonError whose message is shown instead, and is called again
    `interval` s later. The terminal is restored however this ends."""
    locale.setlocale(locale.LC_ALL, '')  # without it curses writes no character beyond ASCII
    # curses would take an exported LINES and COLUMNS over the terminal's own size for the
    # first screen (pytest-xdist exports 80x24; a shell may export a stale size): the view
    # follows the terminal, as it does on every resize.
    for name in ('LINES', 'COLUMNS'):
        os.environ.pop(name, None)
    try:
        window = curses.initscr()
    except curses.error as exc:
        # An unknown TERM, say; curses.initscr raises rather than exits, and says which.
        raise UsageError(f'cannot use this terminal (TERM={os.environ.get("TERM", "")}): {exc}; use --once to '
                         'print one view') from None
    try:
        curses.noecho()
        curses.cbreak()
        window.keypad(True)
        try:
            curses.curs_set(0)
        except curses.error:
            pass  # a terminal that cannot hide its cursor shows it
        _loop(window, fetch, server_dir, first, interval)
    except KeyboardInterrupt:
        pass
    finally:
        window.keypad(False)
        curses.nocbreak()
        curses.echo()
        curses.endwin()
    return EXIT_OK


def _loop(window, fetch, server_dir, snapshot, interval):
    problem = None
    next_fetch = time.monotonic() if snapshot is None else time.monotonic() + interval
    while True:
        if time.monotonic() >= next_fetch:
            try:
                snapshot, problem = fetch(), None
            except ZatoDaemonError as exc:
                problem = str(exc)
            next_fetch = time.monotonic() + interval
        _draw(window, snapshot, problem, server_dir)
        window.timeout(max(1, int((next_fetch - time.monotonic()) * 1000)))
        key = window.getch()
        if key in QUIT_KEYS:
            return
        # KEY_RESIZE (ncurses has resized the window already), a timeout or any other key:
        # the loop draws again at the size the window has now.


def _draw(window, snapshot, problem, server_dir):
    height, width = window.getmaxyx()
    if problem is not None or snapshot is None:
        lines = problem_screen(problem or 'waiting for the first view', width, height)
    else:
        lines = screen(snapshot, width, height, server_dir)
    window.erase()
    for row, line in enumerate(lines):
        try:
            window.addstr(row, 0, line, curses.A_REVERSE if row == 0 else curses.A_NORMAL)
        except curses.error:
            pass  # a line ending in the bottom-right cell is written, then curses cannot move on
    window.refresh()
