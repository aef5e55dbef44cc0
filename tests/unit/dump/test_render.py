"""Dump data as grouped text within a byte budget."""

import dataclasses
import re

import greenlet
import pytest

from zato_daemon.dump.collect import SUSPENDED, Dump, FrameInfo, GreenletInfo, ThreadInfo, collect, os_thread_ident
from zato_daemon.dump.render import group_greenlets, render_text


def idle(label):
    buffer = bytearray(16)
    return idle_here(label, buffer)


def idle_here(label, buffer):
    note = f'idle {label}'
    greenlet.getcurrent().parent.switch()  # the parked line
    return note


@pytest.fixture
def idle_greenlets():
    """200 greenlets suspended in the same stack."""
    greenlets = [greenlet.greenlet(idle) for _ in range(200)]
    for index, idle_greenlet in enumerate(greenlets):
        idle_greenlet.switch(index)
    yield greenlets
    for idle_greenlet in greenlets:
        idle_greenlet.throw(greenlet.GreenletExit)


def frame(index, arguments=(('n', '1'),)):
    return FrameInfo(f'/srv/module_{index}.py', index + 1, f'function_{index}', f'call_{index}()', arguments,
                     (('password', '******'),))


def made_up_dump(threads=50, greenlets=50, frames=10):
    """A dump with many different stacks, built by hand."""
    thread_infos = tuple(ThreadInfo(f'thread-{number}', 1000 + number, 2000 + number, True, number == 0, False,
                                    tuple(frame(number * 100 + index) for index in range(frames)))
                         for number in range(threads))
    greenlet_infos = tuple(GreenletInfo(0x1000 + number, 'gevent.Greenlet', SUSPENDED, False, f'app.run_{number}', None,
                                        tuple(frame(number * 100 + index) for index in range(frames)))
                           for number in range(greenlets))
    counts = {'threads': threads, 'greenlets': greenlets, 'running': 0, 'suspended': greenlets, 'not started': 0,
              'dead': 0}
    return Dump(4242, 'worker', '/srv/zato', 1_700_000_000.0, 'feedc0de', counts, thread_infos, greenlet_infos, 0.0123)


def test_identical_stacks_are_one_group(idle_greenlets, tmp_path):
    dump = collect(os_thread_ident(), 'worker', tmp_path)
    groups = [group for group in group_greenlets(dump.greenlets) if group.first.runs == f'{__name__}.idle']
    assert [group.count for group in groups] == [200]
    text = render_text(dump)
    assert text.count('--- 200 greenlets with this stack: suspended, greenlet.greenlet, runs') == 1
    assert text.count('# the parked line') == 1
    assert '(and 180 more)' in text
    assert re.search(r"Locals: note='idle \d+'", text)


def test_header_frames_and_closing_line():
    text = render_text(made_up_dump(threads=1, greenlets=1, frames=1))
    assert text.startswith('==== zato-daemon dump feedc0de: worker, pid 4242, 2023-11-1')
    assert 'Server directory: /srv/zato\n1 threads, 1 greenlets (0 running, 1 suspended, 0 not started, 0 dead); ' \
           'collected in 12.3 ms' in text
    assert ('--- Thread thread-0 (main, ident 0x3e8, native id 2000, daemon)\n'
            '  File "/srv/module_0.py", line 1, in function_0\n    call_0()\n'
            '    Arguments: n=1\n    Locals: password=******\n') in text
    assert '--- Greenlet 0x1000: suspended, gevent.Greenlet, runs app.run_0\n' in text
    assert text.endswith('==== end of zato-daemon dump feedc0de (worker, pid 4242)\n')


def test_a_small_budget_cuts_at_a_frame_and_counts_what_is_missing():
    dump = made_up_dump()
    text = render_text(dump, budget_bytes=8192)
    assert len(text.encode()) <= 8192
    note = re.search(r'\.\.\. cut at the byte budget of 8,192 bytes; not shown: (\d+) threads, (\d+) greenlets, '
                     r'(\d+) stacks, (\d+) frames', text)
    threads, greenlets, stacks, frames = map(int, note.groups())
    assert threads + text.count('--- Thread ') == 50
    assert greenlets == stacks == 50 and '--- Greenlet 0x' not in text
    assert frames + text.count('  File "') == 50 * 10 + 50 * 10
    assert text.endswith('==== end of zato-daemon dump feedc0de (worker, pid 4242)\n')


def test_within_the_budget_nothing_is_cut():
    text = render_text(made_up_dump(), budget_bytes=None)
    assert 'cut at the byte budget' not in text and text.count('  File "') == 1000
    assert len(text.encode()) > 8192


def test_a_budget_smaller_than_the_header_still_ends_with_the_note():
    text = render_text(made_up_dump(), budget_bytes=600)
    assert len(text.encode()) <= 600
    assert 'not shown: 50 threads, 50 greenlets, 50 stacks, 1,000 frames' in text


def test_a_file_name_that_is_not_utf8_does_not_break_the_text():
    thread = ThreadInfo('t', 1, 1, True, True, False, (FrameInfo('/srv/\udcff.py', 1, 'f', ''),))
    odd = dataclasses.replace(made_up_dump(threads=1, greenlets=0), threads=(thread,))
    assert '/srv/\\udcff.py' in render_text(odd)
