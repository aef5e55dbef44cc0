"""The master's status file: its pid, its workers and when it started.

The master rewrites it (atomically) whenever its workers change; any worker reads it
to answer `zato.server.info`, since a worker knows neither its siblings nor the
master's start time.
"""

import json
import os


def write_status(path, status):
    """Replaces the status file in one rename, so a reader never sees half of it."""
    temporary = f'{path}.tmp'
    with open(temporary, 'w', encoding='utf-8') as status_file:
        json.dump(status, status_file, sort_keys=True)
    os.replace(temporary, path)


def read_status(path):
    """The last status written, or None when there is none."""
    try:
        with open(path, encoding='utf-8') as status_file:
            return json.load(status_file)
    except (OSError, ValueError):
        return None
