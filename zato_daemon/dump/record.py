"""A Dump (collect.py) as one JSON file, the *record* that `zato-daemon diagnose` compares.

Every dump writes one to `<runtime dir>/dumps/` (ServerDir.dump_records), named
`<pid>-<time_ns>.json` after the time collecting began; write_record() keeps the newest `keep`
of each pid. The format, record_version 1 (docs of each field in issue 19):

    {"record_version": 1, "pid", "role", "server_dir", "time", "dump_id", "duration",
     "heartbeat_age": float | null,
     "stacks": {"<fingerprint>": [{"file", "line", "function", "source_line"}, ...]},
     "threads": [{"name", "ident", "native_id", "daemon", "is_main", "is_current", "stack",
                  "frames_cut", "running_greenlet"}],
     "greenlets": [{"address", "kind", "state", "is_main", "is_hub", "runs", "spawn_site", "stack",
                    "frames_cut", "call": {"cid", "service", "started", "age"} | null,
                    "waits_on": {"object", "operation", "expression"} | null,
                    "holds": [{"object", "exact"}]}],
     "objects": [{"id", "kind", "names", "state": {"locked", "counter", "is_set", "size"},
                  "owner", "owner_exact", "waiters"}],
     "calls": [{"cid", "service", "started", "age", "greenlet"}]}

What the values mean where the brief of issue 19 leaves it open:
- a greenlet's `call` is the innermost ServiceHost.run frame on its stack (dump/calls.py), for
  suspended greenlets and for the one running in the main thread (threads[].running_greenlet,
  known when the main thread has a gevent hub); `calls` lists those, `age` from `time`.
- `waits_on.object` is the address of what the call or `with` was made on, or null when the
  expression (e.g. through a property) could not be resolved without running code; only
  lock-like objects (gevent's Semaphore, BoundedSemaphore, RLock, the monkey-patched threading
  Lock and RLock, Event, AsyncResult, the queues and Channel) have an entry in `objects`: a
  socket read waits on the socket's address (operation "recv", "accept", ...) with no entry.
- `holds`: exact (true) only for an RLock, whose _owner says; otherwise inferred from the
  holder's frames. The greenlet running in the main thread waits on nothing but may hold.
- `state` values are null where the object keeps them out of reach of plain data reads
  (a compiled gevent Event's flag).

Stacks are stored once each, outermost frame first, under their fingerprint (fingerprint()):
10,000 idle greenlets share a few. Variables are not in the record (server.log and the journal
have them); source lines are, as in the text dump. Object ids are "0x..." strings, greenlet
addresses ints, as the brief of issue 19 has them.

Runs in the dump thread (like render.py): no logging, no locks, no imports after load; files
are written with os calls only (tempfile's name sequence takes a lock).
"""

import hashlib
import json
import os
import pathlib
import stat

from zato_daemon.dump.collect import RUNNING

RECORD_VERSION = 1
DEFAULT_KEEP = 20
RECORD_MODE = 0o640
DIRECTORY_MODE = 0o750
SUFFIX = '.json'
# A record being written: not a record yet (read_records() and pruning skip it).
TEMPORARY_PREFIX = '.'
# A record bigger than this is not read (a record of 10,000 idle greenlets is about 2 MB).
MAX_RECORD_BYTES = 64 * 1024 * 1024

# The keys every record of this version has: a file missing one is not a record.
_REQUIRED = ('pid', 'role', 'time', 'dump_id', 'stacks', 'threads', 'greenlets', 'objects', 'calls')


def fingerprint(frames):
    """The hex SHA-1 (16 characters) of a stack's (file, function, line), outermost first.

    The same for the same stack in any dump of any process; the empty stack has one too.
    """
    digest = hashlib.sha1()
    for frame in frames:
        digest.update(f'{frame.file}\0{frame.function}\0{frame.line}\n'.encode('utf-8', 'surrogateescape'))
    return digest.hexdigest()[:16]


def to_record(dump):
    """A Dump as plain JSON data (see the module docstring)."""
    stacks = {}
    threads = [_thread(thread, stacks) for thread in dump.threads]
    greenlets = [_greenlet(greenlet, dump.time, stacks) for greenlet in dump.greenlets]
    waiters = {}
    for greenlet in greenlets:
        if greenlet['waits_on'] is not None and greenlet['waits_on']['object'] is not None:
            waiters.setdefault(greenlet['waits_on']['object'], []).append(greenlet['address'])
    return {
        'record_version': RECORD_VERSION,
        'pid': dump.pid, 'role': dump.role, 'server_dir': dump.server_dir,
        'time': dump.time, 'dump_id': dump.dump_id, 'duration': dump.duration,
        'heartbeat_age': dump.heartbeat_age,
        'stacks': stacks,
        'threads': threads,
        'greenlets': greenlets,
        'objects': [_object(item, waiters) for item in dump.objects],
        'calls': [{**greenlet['call'], 'greenlet': greenlet['address']}
                  for greenlet in greenlets if greenlet['call'] is not None],
    }


def _stack(frames, stacks):
    key = fingerprint(frames)
    if key not in stacks:
        stacks[key] = [{'file': frame.file, 'line': frame.line, 'function': frame.function,
                        'source_line': frame.source_line} for frame in frames]
    return key


def _thread(thread, stacks):
    return {'name': thread.name, 'ident': thread.ident, 'native_id': thread.native_id, 'daemon': thread.daemon,
            'is_main': thread.is_main, 'is_current': thread.is_current, 'stack': _stack(thread.frames, stacks),
            'frames_cut': thread.frames_cut, 'running_greenlet': thread.running_greenlet}


def _greenlet(greenlet, now, stacks):
    return {'address': greenlet.address, 'kind': greenlet.kind, 'state': greenlet.state,
            'is_main': greenlet.is_main, 'is_hub': greenlet.is_hub, 'runs': greenlet.runs,
            'spawn_site': spawn_site(greenlet.spawned_at),
            'stack': _stack(greenlet.frames, stacks), 'frames_cut': greenlet.frames_cut,
            'call': _call(greenlet.call, now),
            'waits_on': None if greenlet.waits_on is None else {
                'object': _object_id(greenlet.waits_on.object), 'operation': greenlet.waits_on.operation,
                'expression': greenlet.waits_on.expression},
            'holds': [{'object': _object_id(held.object), 'exact': held.exact} for held in greenlet.holds]}


def spawn_site(spawned_at):
    """'file.py:12 in handle': the innermost frame of where a greenlet was spawned, or None."""
    if not spawned_at:
        return None
    frame = spawned_at[-1]
    return f'{frame.file}:{frame.line} in {frame.function}'


def _call(call, now):
    if call is None:
        return None
    cid, service, started = call
    return {'cid': cid, 'service': service, 'started': started, 'age': round(now - started, 6)}


def _object_id(address):
    return None if address is None else f'{address:#x}'


def _object(item, waiters):
    object_id = _object_id(item.address)
    return {'id': object_id, 'kind': item.kind, 'names': list(item.names), 'state': dict(item.state),
            'owner': item.owner, 'owner_exact': item.owner_exact, 'waiters': waiters.get(object_id, [])}


def blocking_summary(dump):
    """One line on what blocks a hung worker's hub, or None when its main thread runs the hub.

    'service crm.get cid ABC at /srv/crm/crm.py:88 in handle', or 'no call at ...' when the
    greenlet serves none; the place is the innermost frame of the main thread (the blocking
    greenlet runs there). None too when the running greenlet is unknown (the master, no gevent).
    """
    main = next((thread for thread in dump.threads if thread.is_main), None)
    if main is None or main.running_greenlet is None:
        return None
    running = next((greenlet for greenlet in dump.greenlets if greenlet.address == main.running_greenlet), None)
    if running is None or running.is_hub or running.state != RUNNING:
        return None
    what = 'no call' if running.call is None else f'service {running.call[1]} cid {running.call[0]}'
    if not main.frames:
        return what
    frame = main.frames[-1]
    return f'{what} at {frame.file}:{frame.line} in {frame.function}'


def record_name(pid, time_ns):
    """`<pid>-<time_ns>.json`."""
    return f'{pid}-{time_ns}{SUFFIX}'


def write_record(dump, directory, keep=DEFAULT_KEEP):
    """Writes the dump's record atomically to `directory` (made if missing); returns its path.

    A temporary file in the same directory, renamed: a reader sees a whole record or none.
    Then removes the oldest records of the same pid beyond `keep` (never this one). OSError propagates (the
    sink owns its errors); a temporary file left by a failed write is removed.
    """
    os.makedirs(directory, mode=DIRECTORY_MODE, exist_ok=True)
    data = json.dumps(to_record(dump), separators=(',', ':'), allow_nan=False).encode()
    name = record_name(dump.pid, int(dump.time * 1_000_000_000))
    path = os.path.join(directory, name)
    temporary = os.path.join(directory, f'{TEMPORARY_PREFIX}{name}.{os.urandom(4).hex()}')
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, RECORD_MODE)
    try:
        try:
            os.fchmod(fd, RECORD_MODE)  # the umask may have taken bits off
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    prune(directory, dump.pid, keep, written=name)
    return pathlib.Path(path)


def prune(directory, pid, keep, written=None):
    """Removes the records of `pid` in `directory` but the newest `keep`, the one just
    `written` (a name) always among them: records named ahead of it (planted, or left by a
    clock stepped back) must not have every new record removed as soon as it is written."""
    names = sorted((item for item in _record_names(directory, {pid}) if item[2] != written), reverse=True)
    for _, _, name in names[max(0, keep - (written is not None)):]:
        try:
            os.unlink(os.path.join(directory, name))
        except FileNotFoundError:
            pass


def _record_names(directory, pids=None):
    """(time_ns, pid, name) of each record file name in `directory`, of `pids` when given."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        parsed = parse_record_name(name)
        if parsed is not None and (pids is None or parsed[0] in pids):
            found.append((parsed[1], parsed[0], name))
    return found


def parse_record_name(name):
    """(pid, time_ns) of a record file name, or None for any other name."""
    if not name.endswith(SUFFIX) or name.startswith(TEMPORARY_PREFIX):
        return None
    pid, dash, time_ns = name[:-len(SUFFIX)].partition('-')
    if not (dash and pid.isdigit() and time_ns.isdigit() and pid.isascii() and time_ns.isascii()):
        return None
    return int(pid), int(time_ns)


def read_records(directory, pids=None, since=None, until=None):
    """The records in `directory`, oldest first (newest last), of `pids`, not older than
    `since` and not newer than `until` (time.time() values) when given. A file that is not a
    readable record of this version (truncated, not JSON, another version, missing fields,
    another pid than its name says, bigger than a record can be) or not a regular file (a
    symlink, a FIFO) is skipped, never raised. Files named out of the times are not opened:
    diagnose polls with `until` (now), so a file planted with a future name is never read."""
    wanted = None if pids is None else set(pids)
    records = []
    for time_ns, pid, name in sorted(_record_names(directory, wanted)):
        # The name's time is rounded to the nanosecond: a microsecond of slack either way.
        if since is not None and time_ns < since * 1_000_000_000 - 1000:
            continue
        if until is not None and time_ns > until * 1_000_000_000 + 1000:
            continue
        record = _read_record(os.path.join(directory, name))
        # A record names the process its file is named after: a file renamed or planted
        # under another pid's name does not stand for that process.
        if record is not None and record['pid'] == pid and (since is None or record['time'] >= since) and (
                until is None or record['time'] <= until):
            records.append(record)
    records.sort(key=lambda record: (record['time'], record['pid']))
    return records


def _read_record(path):
    # Only a regular file, never through a symlink (O_NOFOLLOW), and opened without waiting
    # (O_NONBLOCK): a FIFO planted under a record's name would block the reader for good.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RECORD_BYTES:
            return None  # (a file that grows meanwhile is still cut by the read below)
        with os.fdopen(fd, 'rb') as file:
            fd = None
            data = file.read(MAX_RECORD_BYTES + 1)
        if len(data) > MAX_RECORD_BYTES:
            return None
        record = json.loads(data)
    except (OSError, ValueError, RecursionError):
        return None
    finally:
        if fd is not None:
            os.close(fd)
    if not is_record(record):
        return None
    return record


def is_record(value):
    """True for a dict that has this version's fields, of the right types at the top level."""
    if type(value) is not dict or value.get('record_version') != RECORD_VERSION:
        return False
    if any(key not in value for key in _REQUIRED):
        return False
    return (type(value['pid']) is int and type(value['time']) in (int, float) and type(value['stacks']) is dict
            and all(type(value[key]) is list for key in ('threads', 'greenlets', 'objects', 'calls')))
