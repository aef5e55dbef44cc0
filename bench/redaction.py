"""Seconds the redaction policy takes on 1 MB of text built to make its patterns backtrack.

    .venv/bin/python bench/redaction.py

Text a client sends reaches the policy (a failed call's input, samples, DEBUG records), in
the worker, where the time it takes is time no other request is served. Goal: linear in the
size of the text, under 0.2 s per MB for every shape below on this kind of machine. An
unbounded URL scheme once made 'a.a.a...@' quadratic: 0.7 s for 40 KB.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zato_daemon.redaction import redact, redact_text  # noqa: E402

SIZE = 1_000_000
SHAPES = {
    'url scheme runs': 'a.' * (SIZE // 2) + '@',
    'one long userinfo': 'a://' + 'b' * SIZE + '@',
    'many schemes': 'a://b' * (SIZE // 5) + '@',
    'header names': 'X' * SIZE + ':',
    'header lines': 'Xa: b\n' * (SIZE // 6),
    'quoted names': '"a"' * (SIZE // 3) + ':',
    'quotes': "'" * SIZE + ':',
    'name runs': 'a' * SIZE + '=',
    'name=name=': 'a=' * (SIZE // 2),
    'secret=secret=': 'password=' * (SIZE // 9),
    'bearer token': 'Bearer ' + 'a' * SIZE,
    'open brackets': '{' * SIZE,
    'naming pairs': '"name": "password", "v": ' * (SIZE // 30),
    'open quotes after a secret': "password='" * (SIZE // 10),
    'spaces before a colon': '"a"' + ' ' * SIZE + ':',
}


def main():
    print(f'| shape | seconds for {SIZE:,} characters |\n| --- | --- |')
    for name, text in SHAPES.items():
        started = time.perf_counter()
        redact_text(text)
        print(f'| {name} | {time.perf_counter() - started:.3f} |')
    started = time.perf_counter()
    redact({'items': [{'name': f'n{number}', 'value': 'x' * 10} for number in range(SIZE // 20)]})
    print(f'| a structure of {SIZE // 20:,} name/value dicts | {time.perf_counter() - started:.3f} |')


if __name__ == '__main__':
    main()
