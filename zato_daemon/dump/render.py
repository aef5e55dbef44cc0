"""A Dump (collect.py) as text within a byte budget; sink.py writes it out.

Greenlets with identical stacks are printed once, with their count and ids: 10,000 idle
greenlets are a few blocks, not 10,000 (one block each made 11.8 MB of text). The byte budget then
bounds the rest; what did not fit is counted in a closing note instead of being dropped
silently. Like collect.py this runs in the dump thread: no logging, no locks, no gevent.
"""

import datetime
from dataclasses import dataclass, field

from zato_daemon.dump.collect import RUNNING

DEFAULT_BUDGET_BYTES = 512 * 1024
# Greenlet ids listed per group; the rest are counted.
MAX_IDS = 20
# Kept free for the note of what was cut and the closing line: a budget of at least this
# much is never exceeded.
RESERVED_BYTES = 512


@dataclass
class GreenletGroup:
    """Greenlets alike in state, class, function, spawn site and stack; shown as one."""

    greenlets: list = field(default_factory=list)

    @property
    def first(self):
        """The greenlet whose data the group shows."""
        return self.greenlets[0]

    @property
    def count(self):
        """How many greenlets are alike."""
        return len(self.greenlets)

    @property
    def frames(self):
        """The shared stack, with the variables of the first greenlet that has them."""
        for greenlet in self.greenlets:
            if greenlet.frames and greenlet.frames[0].arguments is not None:
                return greenlet.frames
        return self.first.frames


def group_greenlets(greenlets):
    """Groups alike greenlets: running ones first, then the biggest groups, then in dump order."""
    groups, frame_keys = {}, {}
    for greenlet in greenlets:
        key = (greenlet.state, greenlet.kind, greenlet.is_main, greenlet.runs, greenlet.frames_cut,
               _memo_key(frame_keys, greenlet.spawned_at or ()), _memo_key(frame_keys, greenlet.frames))
        groups.setdefault(key, GreenletGroup()).greenlets.append(greenlet)
    ordered = enumerate(groups.values())
    return [group for _, group in sorted(ordered, key=lambda item: (item[1].first.state != RUNNING, -item[1].count,
                                                                     item[0]))]


def _memo_key(memo, frames):
    # collect.py shares one tuple between greenlets with the same stack or spawn site:
    # its key is computed once. The dump keeps every tuple alive, so ids stay unique.
    key = memo.get(id(frames))
    if key is None:
        key = memo[id(frames)] = tuple((frame.file, frame.line, frame.function) for frame in frames)
    return key


def render_text(dump, budget_bytes=DEFAULT_BUDGET_BYTES, max_ids=MAX_IDS):
    """The dump as text of at most `budget_bytes` UTF-8 bytes (None: unbounded).

    A header, every thread, then the greenlets grouped by stack. When the budget runs out,
    the text stops at a whole frame and ends with a note counting the threads, greenlets
    and frames not shown. Runs in the dump thread.
    """
    out = _Output(budget_bytes)
    out.add(_header(dump))
    for thread in dump.threads:
        _write_thread(out, thread)
    groups = group_greenlets(dump.greenlets)
    if groups:
        out.add(f'--- Greenlets: {len(dump.greenlets):,} in {len(groups):,} groups')
    for group in groups:
        _write_group(out, group, max_ids)
    return out.finish(f'==== end of zato-daemon dump {dump.dump_id} ({dump.role}, pid {dump.pid})')


class _Output:
    """Lines within a byte budget; a block goes in whole or not at all."""

    def __init__(self, budget_bytes):
        self._room = None if budget_bytes is None else max(0, budget_bytes - RESERVED_BYTES)
        self._budget_bytes = budget_bytes
        self._blocks = []
        self._used = 0
        self.is_full = False
        self.cut = {'threads': 0, 'greenlets': 0, 'stacks': 0, 'frames': 0}

    def add(self, block):
        """Adds a block of lines; False, and full from then on, when it does not fit."""
        if self.is_full:
            return False
        # backslashreplace: a file name may carry surrogates, which neither UTF-8 nor the journal take
        data = block.encode('utf-8', 'backslashreplace')
        if self._room is not None and self._used + len(data) + 1 > self._room:
            self.is_full = True
            return False
        self._blocks.append(data)
        self._used += len(data) + 1
        return True

    def finish(self, closing):
        """The text, with the note of what was cut when anything was."""
        if self.is_full:
            shown = ', '.join(f'{count:,} {name}' for name, count in self.cut.items())
            self._blocks.append(f'... cut at the byte budget of {self._budget_bytes:,} bytes; '
                                f'not shown: {shown}'.encode())
        self._blocks.append(closing.encode('utf-8', 'backslashreplace'))
        return b'\n'.join(self._blocks).decode('utf-8') + '\n'


def _header(dump):
    counts = dump.counts
    when = datetime.datetime.fromtimestamp(dump.time).astimezone().isoformat(timespec='milliseconds')
    states = ', '.join(f'{counts.get(state, 0):,} {state}' for state in ('running', 'suspended', 'not started', 'dead'))
    return (f'==== zato-daemon dump {dump.dump_id}: {dump.role}, pid {dump.pid}, {when}\n'
            f'Server directory: {dump.server_dir}\n'
            f'{counts["threads"]:,} threads, {counts["greenlets"]:,} greenlets ({states}); '
            f'collected in {dump.duration * 1000:.1f} ms\n'
            'Stacks read most recent call last. Greenlets with the same stack are shown once, with the '
            'variables of the first; values of secret-named variables read ******.')


def _write_thread(out, thread):
    if not out.add(_thread_heading(thread)):
        out.cut['threads'] += 1
        out.cut['frames'] += len(thread.frames)
        return
    _write_frames(out, thread.frames, thread.frames_cut)


def _thread_heading(thread):
    details = [f'ident {thread.ident:#x}']
    if thread.native_id is not None:
        details.append(f'native id {thread.native_id}')
    if thread.daemon is not None:
        details.append('daemon' if thread.daemon else 'not daemon')
    if thread.is_main:
        details.insert(0, 'main')
    heading = f'--- Thread {thread.name or "(unnamed)"} ({", ".join(details)})'
    return f'{heading}: the thread writing this dump' if thread.is_current else heading


def _write_group(out, group, max_ids):
    frames = group.frames
    if not out.add(_group_heading(group, max_ids)):
        out.cut['greenlets'] += group.count
        out.cut['stacks'] += 1
        out.cut['frames'] += len(frames)
        return
    _write_frames(out, frames, group.first.frames_cut)


def _group_heading(group, max_ids):
    first = group.first
    what = [first.state, first.kind]
    if first.is_main:
        what.append("a thread's main greenlet")
    if first.runs:
        what.append(f'runs {first.runs}')
    if group.count == 1:
        lines = [f'--- Greenlet {first.address:#x}: {", ".join(what)}']
    else:
        lines = [f'--- {group.count:,} greenlets with this stack: {", ".join(what)}', _ids_line(group, max_ids)]
    if first.state == RUNNING:
        lines.append("    Running: its stack is its thread's current stack, shown above.")
    if first.spawned_at:
        lines.append('    Spawned at:')
        lines.extend(f'    {_frame_line(frame)}' for frame in first.spawned_at)
    return '\n'.join(lines)


def _ids_line(group, max_ids):
    ids = ', '.join(f'{greenlet.address:#x}' for greenlet in group.greenlets[:max_ids])
    more = group.count - min(group.count, max_ids)
    return f'    ids: {ids}' + (f' (and {more:,} more)' if more else '')


def _write_frames(out, frames, frames_cut):
    if frames_cut:
        out.add(f'  ({frames_cut:,} outer frames not shown)')
    for index, frame in enumerate(frames):
        if not out.add(_frame_text(frame)):
            out.cut['frames'] += len(frames) - index
            return


def _frame_text(frame):
    lines = [_frame_line(frame)]
    if frame.source_line:
        lines.append(f'    {frame.source_line}')
    if frame.arguments:
        lines.append(f'    Arguments: {_variables_text(frame.arguments)}')
    if frame.locals:
        lines.append(f'    Locals: {_variables_text(frame.locals)}')
    if frame.variables_cut:
        lines.append(f'    ({frame.variables_cut:,} more variables not shown)')
    return '\n'.join(lines)


def _frame_line(frame):
    return f'  File "{frame.file}", line {frame.line}, in {frame.function}'


def _variables_text(pairs):
    return ', '.join(f'{name}={value}' for name, value in pairs)
