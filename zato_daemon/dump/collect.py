"""Threads, greenlets, their frames and variables, as plain data, read safely from any thread.

Runs in the dump thread (see trigger.py) of the master or of a worker, while every other
thread, and every greenlet of the main thread, keeps running.

Rule 1: no code of the objects being dumped runs. Values never go through repr(), str() or
isinstance() (which looks `__class__` up through `__getattr__`); render_value() knows the builtin
types and shows anything else by type and address. Greenlets are read through greenlet's and
gevent's own C-level descriptors, never getattr(): gevent's `name` and repr format the spawn
arguments with repr, which runs their code.
Rule 2: no locks, no logging, no imports. The hung thread may hold logging's lock, the import
lock, or the lock of threading.enumerate() - under gevent's patch_all a gevent lock, which a
foreign thread cannot wait on. Thread names come from threading's registry, copied without it.
Rule 3: no gevent. The master stays gevent-free; greenlets are looked for only when the process
already imported greenlet (a process that never did has none).
Rule 4: everything is bounded by Limits. A stack already seen keeps only its first greenlet's
variables: 10,000 idle greenlets share a handful of stacks, and render.py prints each once.
Rule 5: a frame of another thread (or of a greenlet another thread may switch to) is read only
by C calls that cannot run Python code. On CPython 3.11 the C code behind `sys._current_frames()`
and `frame.f_back` (which create frame objects) and `frame.f_locals` (PyFrame_FastToLocals, which
refreshes the frame's own dict) keeps a raw pointer to the live frame; Python code run in the
middle (a finalizer, a weakref or gc callback) may switch the GIL, and the owning thread may then
return from that frame, or end, so the C code goes on in freed or reused memory: a segfault, or
another frame's values shown under this frame's names. Python code gets in there two ways:
a garbage collection started by an allocation (3.11 collects at any allocation; 3.12 only
between bytecodes, gh-97922), so collect() turns the collector off (_collector_off); and the
last reference to a value dropped when f_locals refreshes the dict (which keeps what the frame
held when someone last read f_locals or called locals() there), so collect() walks every stack
first and then reads all the f_locals in one C iteration while it holds every object the
collector tracks (_StackReader.read_variables, _with_heap_held). The class body of a class
whose methods use super() is not read (f_locals would write into its namespace, which may run
code): a note says so.

Beyond the frames: each greenlet's service call, what it waits on and what it holds (calls.py,
waits.py), from the same walks and the same one read of locals; the greenlet running in the
main thread; the lock-like objects involved; the worker's heartbeat age. record.py turns a Dump
into the JSON record `zato-daemon diagnose` compares.
"""

import collections
import dataclasses
import functools
import gc
import inspect
import itertools
import linecache
import operator
import os
import sys
import threading
import time
import types
from dataclasses import dataclass

from zato_daemon.dump import calls, waits
from zato_daemon.dump.plain import instance_dict as _instance_dict, type_name
from zato_daemon.redaction import (REDACTED, is_naming_entry, is_secret_name, names_a_secret, redact_text,
                                   summarise_http)

RUNNING = 'running'
SUSPENDED = 'suspended'
NOT_STARTED = 'not started'
DEAD = 'dead'
STATES = (RUNNING, SUSPENDED, NOT_STARTED, DEAD)

# A source line or a name longer than this is cut; a stack deeper than MAX_WALK is not even counted.
MAX_SOURCE_LINE = 300
MAX_NAME = 100
MAX_WALK = 100_000

# In place of the variables of a frame that are not read (a FrameInfo.locals pair).
CLASS_BODY_NOTE = ('(not read)', 'the namespace of a class body with a __class__ cell')


@dataclass(frozen=True)
class Limits:
    """How much of each thing a dump holds; render.py's byte budget then bounds the whole."""

    max_frames: int = 64        # per stack; the innermost frames are kept
    max_variables: int = 32     # arguments and locals together, per frame
    max_string: int = 200       # characters of a str, bytes or bytearray value
    max_items: int = 10         # items of one container
    max_depth: int = 3          # containers within containers
    max_value: int = 400        # characters of one rendered value, notes included
    max_spawn_frames: int = 3   # frames of where a greenlet was spawned


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class FrameInfo:
    """One frame. `arguments` and `locals` hold (name, rendered value) pairs, or None when not collected."""

    file: str
    line: int
    function: str
    source_line: str
    arguments: tuple = None
    locals: tuple = None
    variables_cut: int = 0


@dataclass(frozen=True)
class ThreadInfo:
    """One OS thread: ids, name, flags, and its current stack, outermost frame first."""

    name: str
    ident: int
    native_id: int
    daemon: bool
    is_main: bool
    is_current: bool            # the thread that collected this dump; its frames are not taken
    frames: tuple
    frames_cut: int = 0         # outer frames beyond Limits.max_frames
    running_greenlet: int = None  # main thread: the address of the greenlet running in it, when known


@dataclass(frozen=True)
class GreenletInfo:
    """One greenlet. A running one has no frames here: its stack is its thread's current stack."""

    address: int
    kind: str                   # module.Qualname of its class
    state: str                  # one of STATES
    is_main: bool               # a thread's main greenlet
    runs: str                   # the function it runs, or None when unknown
    spawned_at: tuple           # FrameInfo without variables, outermost first; None when unknown
    frames: tuple
    frames_cut: int = 0
    is_hub: bool = False        # a gevent hub
    call: tuple = None          # the service call it runs: (cid, service, started wall time), or None
    waits_on: object = None     # waits.Wait, or None
    holds: tuple = ()           # waits.Held of the objects it holds


@dataclass(frozen=True)
class Dump:
    """Everything one dump found in one process, as plain data."""

    pid: int
    role: str
    server_dir: str
    time: float                 # time.time() when collecting began
    dump_id: str
    counts: dict                # threads, greenlets, and greenlets per state
    threads: tuple
    greenlets: tuple
    duration: float             # seconds spent collecting
    heartbeat_age: float = None  # seconds since the worker's hub last sent a heartbeat; None in the master
    objects: tuple = ()         # waits.WaitObject of the lock-like objects greenlets wait on or hold


def collect(main_thread_ident, role, server_dir, dump_id=None, include_greenlets=True, limits=DEFAULT_LIMITS):
    """Reads every thread and (optionally) every greenlet of this process into a Dump.

    Runs in the dump thread, never in a signal handler. `main_thread_ident` is the main
    thread's OS ident, taken at start with os_thread_ident(): under gevent's patch_all
    threading.main_thread().ident is a greenlet's. Safe while other threads and greenlets
    run, hold locks or spin; see the rules at the top of this module.
    """
    was_collecting = _collector_off()  # Rule 5; first, before anything is allocated
    try:
        started = time.monotonic()
        wall_time = time.time()
        stacks = _StackReader(limits)
        threads = collect_threads(main_thread_ident, stacks)
        reader = _greenlet_reader(stacks) if include_greenlets else None
        greenlets = collect_greenlets(stacks, reader) if reader is not None else ()
        stacks.read_variables()  # of every frame at once (Rule 5)
        threads = tuple(stacks.resolve(info) for info in threads)
        greenlets = tuple(stacks.resolve(info) for info in greenlets)
        objects = ()
        if reader is not None:
            running = reader.running_in_main_thread(main_thread_ident)
            greenlets, objects = reader.add_waits(greenlets, running, stacks.main_thread)
            threads = tuple(dataclasses.replace(thread, running_greenlet=running) if thread.is_main else thread
                            for thread in threads)
        dump = Dump(pid=os.getpid(), role=role, server_dir=str(server_dir), time=wall_time,
                    dump_id=dump_id or new_dump_id(), counts=_count(threads, greenlets), threads=threads,
                    greenlets=greenlets, duration=time.monotonic() - started, heartbeat_age=heartbeat_age(),
                    objects=objects)
    finally:
        _collector_back(was_collecting)
    return dump


# Where a worker keeps the time.monotonic() of its last heartbeat (worker/process.py); read
# through sys.modules, since importing the worker would import gevent (Rule 3).
HEARTBEAT_MODULE = 'zato_daemon.worker.process'
HEARTBEAT_NAME = 'last_heartbeat'


def heartbeat_age():
    """Seconds since this worker's hub last sent a heartbeat; None in the master or before the first."""
    sent = _instance_dict(sys.modules.get(HEARTBEAT_MODULE)).get(HEARTBEAT_NAME)
    return max(0.0, time.monotonic() - sent) if type(sent) is float else None


def new_dump_id():
    """A fresh id that names one dump in server.log and in the journal (ZATO_DUMP_ID)."""
    return os.urandom(8).hex()


def os_thread_ident():
    """The calling thread's OS-level ident, the key sys._current_frames() uses.

    threading.get_ident() is gevent's under patch_all and names the current greenlet instead;
    the calling frame is this thread's current frame, which identifies it without gevent.
    """
    frame = sys._getframe()
    was_collecting = _collector_off()  # Rule 5: sys._current_frames() creates frame objects
    try:
        current = sys._current_frames()
    finally:
        _collector_back(was_collecting)
    for ident, top in current.items():
        if top is frame:
            return ident
    raise RuntimeError('the calling thread is missing from sys._current_frames()')


def _collector_off():
    """Turns automatic garbage collection off (Rule 5); returns what _collector_back() takes.

    CPython's own fix for gh-106883 in its 3.11 branch (a deadlock: a collection inside
    sys._current_frames(), which holds the runtime's lock of thread states, ran a finalizer that
    switched the GIL; 3.11.2 lacks it) does the same around that call. A thread that turns the
    collector on meanwhile turns it on for the dump too. The switch is the whole process's:
    a process forked meanwhile (a worker the master starts during its dump) gets it back on
    (_collector_on_in_child).
    """
    global _collector_turned_off
    was_collecting = gc.isenabled()
    gc.disable()
    if was_collecting:
        _collector_turned_off += 1
    return was_collecting


def _collector_back(was_collecting):
    """Turns automatic garbage collection back on, if _collector_off() turned it off."""
    global _collector_turned_off
    if was_collecting:
        _collector_turned_off -= 1
        gc.enable()


# How many _collector_off() calls in progress turned the collector off.
_collector_turned_off = 0


def _collector_on_in_child():
    # The thread that would turn the collector back on is not in the child.
    global _collector_turned_off
    if _collector_turned_off:
        _collector_turned_off = 0
        gc.enable()


os.register_at_fork(after_in_child=_collector_on_in_child)


def _with_heap_held(make_steps, may_free=True):
    """Runs the steps make_steps(heap) returns while `heap` holds every object the collector tracks.

    Returns the steps' results. A step is a callable without arguments, made of C functions
    and iterators only (it may iterate `heap`, which is empty until the steps run). All of it
    runs in one C iteration: no bytecode, and so no GIL switch, between listing the heap and
    letting it go (Rule 5).

    Held, no object can die inside a step, so no finalizer runs there. When a step may drop
    the last reference to an object (`may_free`: frame.f_locals drops values from a frame's
    dict), that object is freed at the end, in this thread, after every tuple is let go:
    another thread may be building one - tuple(generator) fills a tracked tuple, running
    Python code, then resizes it, which raises SystemError if the tuple has another reference
    by then (gh-39117, gh-107137) - and a finalizer may switch the GIL. Costs 30 to 120 ns an
    object of the heap on the development VM.
    """
    heap, kept = [], []  # both are in the heap they list, a cycle: clearing them ends it
    own_steps = tuple(make_steps(heap))
    # any() runs heap.extend(gc.get_objects()) from C: the listing happens when the step runs.
    steps = (functools.partial(any, map(heap.extend, map(gc.get_objects, (None,)))), *own_steps)
    if may_free:
        steps += (functools.partial(kept.extend, itertools.compress(heap, map(operator.is_not, map(type, heap),
                                                                              itertools.repeat(tuple)))),)
    steps += (heap.clear,   # tuples go: a tuple may die, but what it holds is in `kept`
              kept.clear)   # objects that died meanwhile are freed here
    try:
        results = tuple(map(operator.call, steps))
    finally:
        heap.clear()
        kept.clear()
    return results[1:1 + len(own_steps)]


def collect_threads(main_thread_ident, stacks):
    """Every OS thread with its current stack: the main thread first, then by ident."""
    own_frame = sys._getframe()
    current = sys._current_frames()
    known = _threading_threads(main_thread_ident)
    threads = [_thread_info(ident, top, known.get(ident), ident == main_thread_ident, top is own_frame, stacks)
               for ident, top in current.items()]
    threads.sort(key=lambda thread: (not thread.is_main, thread.ident))
    return tuple(threads)


def _threading_threads(main_thread_ident):
    # threading._active copied in one C call instead of threading.enumerate(), whose lock
    # may be held by the hung thread (Rule 2). Under patch_all it is keyed by greenlet ids,
    # so the main thread is put back under its OS ident.
    try:
        known = dict(threading._active)
    except Exception:
        known = {}
    known[main_thread_ident] = threading.main_thread()
    return known


def _thread_info(ident, top, thread, is_main, is_current, stacks):
    name, native_id, daemon = _thread_attributes(thread)
    if is_main:
        # On Linux the main thread's id is the pid; the Thread object's copy may be the
        # parent's after a fork under gevent's patched threading.
        native_id = os.getpid()
    if is_current:
        native_id = threading.get_native_id()
        frames, cut = (), 0
    else:
        # The main thread's frames are those of the greenlet running in it, if any: their
        # call and locks are that greenlet's (_GreenletReader.add_waits).
        frames, cut = stacks.stack(top, stacks.main_thread if is_main else None)
    return ThreadInfo(name=name, ident=ident, native_id=native_id, daemon=daemon, is_main=is_main,
                      is_current=is_current, frames=frames, frames_cut=cut)


def _thread_attributes(thread):
    # Read from the instance's dict: a Thread subclass may override the `name` property.
    attributes = _instance_dict(thread) if thread is not None else {}
    name = attributes.get('_name')
    native_id = attributes.get('_native_id')
    daemon = attributes.get('_daemonic')
    return (name if type(name) is str else None, native_id if type(native_id) is int else None,
            daemon if type(daemon) is bool else None)


def _greenlet_reader(stacks):
    """A _GreenletReader, or None when the process has not imported greenlet (Rule 3)."""
    module = sys.modules.get('greenlet')
    base = _instance_dict(module).get('greenlet') if module is not None else None
    if not (type(base) is type and 'gr_frame' in base.__dict__):
        return None
    return _GreenletReader(base, stacks)


def collect_greenlets(stacks, reader=None):
    """Every greenlet of the process, of every thread, found by a gc scan (about 10 ms for 10,000)."""
    reader = reader if reader is not None else _greenlet_reader(stacks)
    if reader is None:
        return ()
    base = reader.base
    # Classes are compared by id: `in` on a set would hash them, which a metaclass may override.
    # The filter is all C iterators: no bytecode runs per object of the heap.
    kind_ids = {id(kind) for kind in _subclasses(base)}

    def greenlets_of(heap):
        return (functools.partial(list, itertools.compress(heap, map(kind_ids.__contains__,
                                                                     map(id, map(type, heap))))),)

    found, = _with_heap_held(greenlets_of, may_free=False)
    greenlets = (reader.describe(greenlet) for greenlet in found)
    return tuple(info for info in greenlets if info is not None)


def _subclasses(base):
    kinds, pending = {id(base): base}, [base]
    while pending:
        for kind in type.__subclasses__(pending.pop()):
            if id(kind) not in kinds:
                kinds[id(kind)] = kind
                pending.append(kind)
    return kinds.values()


def _count(threads, greenlets):
    counts = collections.Counter(greenlet.state for greenlet in greenlets)
    return {'threads': len(threads), 'greenlets': len(greenlets), **{state: counts[state] for state in STATES}}


class _StackReader:
    """Turns frame objects into FrameInfo; caches source lines and the stacks greenlets share."""

    def __init__(self, limits):
        self.limits = limits
        self._sources = {}
        self._bare = {}      # (code, line) -> FrameInfo without variables
        self._shared = {}    # sequence of (code, last instruction) -> frames without variables
        self._spawn_sites = {}  # sequence of (code, line) -> spawned_at tuple
        self._pending = []   # _Pending frames, whose variables read_variables() reads
        self._plans = {}     # (id(code), last instruction, innermost) -> (code, waits.Plan)
        self._code_kinds = {}  # id(code) -> (code, is a service call, is skipped, locals readable)
        self._sites = []     # (frame, waits.FrameSite or _CallFrame) whose locals read_variables() reads
        self.main_thread = _Found()  # what stack() found in the main thread's frames

    def stack(self, top, found=None):
        """(frames outermost first with their variables, how many outer frames were cut).

        With a _Found as `found`, fills it in from the frames (see _find()).
        """
        frames, cut, _ = self._walk(top)
        if found is not None:
            self._find(frames, found)
        return tuple(self._frame_info(frame, True) for frame in frames), cut

    def shared_stack(self, top, found=None):
        """Like stack(), plus the outermost frame; a stack seen before comes without variables (Rule 4)."""
        frames, cut, outermost = self._walk(top)
        if found is not None:
            self._find(frames, found)
        # f_lasti is a plain read where f_lineno is a table lookup: the key is cheap, and two
        # instructions on one line are still one group when render.py groups by line.
        key = tuple((frame.f_code, frame.f_lasti) for frame in frames)
        known = self._shared.get(key)
        if known is None:
            self._shared[key] = tuple(self._frame_info(frame, False) for frame in frames)
            known = tuple(self._frame_info(frame, True) for frame in frames)
        return known, cut, outermost

    def _find(self, frames, found):
        """The service call and the waits.FrameSites of a stack (outermost first), whose
        locals read_variables() reads: the innermost frame of a service call (calls.py); the
        frames that wait on something or hold a lock, innermost first. The greenlet waits in
        its innermost frame that is neither gevent's nor threading's (their waits are C calls
        or wrap the caller's lock); waits.py says on what."""
        # Cached by id(code), with the code object kept to check it is the same one: a code
        # object's hash is computed from its contents on every call, and 10,000 greenlets share
        # a few stacks.
        innermost = True
        for frame in reversed(frames):
            code = frame.f_code
            kind = self._code_kinds.get(id(code))
            if kind is None or kind[0] is not code:
                kind = self._code_kinds[id(code)] = (
                    code, id(code) in calls.CALL_CODE_IDS,
                    _is_gevent_file(code.co_filename) or code.co_filename in waits.SKIPPED_FILES,
                    not _is_class_body_with_cell(code))
            _, is_call, is_skipped, is_readable = kind
            if is_call and found.call is None and len(self._sites) < waits.MAX_SITES:
                found.call = _CallFrame(frame.f_globals)
                self._sites.append((frame, found.call))
            if is_skipped:
                continue
            lasti = frame.f_lasti
            planned = self._plans.get((id(code), lasti, innermost))
            if planned is None or planned[0] is not code:
                line = frame.f_lineno if innermost else None
                source = self._source_line(code.co_filename, line) if innermost else ''
                planned = self._plans[(id(code), lasti, innermost)] = (code, waits.plan(code, lasti, innermost, source))
            plan = planned[1]
            if plan is not waits.NO_PLAN:
                site = waits.FrameSite(plan, frame.f_globals)
                if plan.needs_locals and is_readable and len(self._sites) < waits.MAX_SITES:
                    self._sites.append((frame, site))
                found.sites.append(site)
            innermost = False

    def spawn_site(self, frame):
        """gevent's record of where a greenlet was spawned, as bare frames outermost first; shared."""
        key = []
        # Room for the frames pure-Python gevent records of its own spawn() before the caller's.
        while frame is not None and len(key) < self.limits.max_spawn_frames + 4:
            key.append((frame.f_code, frame.f_lineno))
            frame = frame.f_back
        key = tuple(key)
        site = self._spawn_sites.get(key)
        if site is None:
            frames = [self.bare_frame(code, line) for code, line in key if not _is_gevent_file(code.co_filename)]
            site = self._spawn_sites[key] = tuple(reversed(frames[:self.limits.max_spawn_frames]))
        return site

    def bare_frame(self, code, line):
        """A FrameInfo of a code object and line, without variables; shared between greenlets."""
        info = self._bare.get((code, line))
        if info is None:
            info = FrameInfo(code.co_filename, line or 0, code.co_qualname, self._source_line(code.co_filename, line))
            self._bare[(code, line)] = info
        return info

    def _walk(self, top):
        kept, cut, outermost = [], 0, top
        frame = top
        while frame is not None and cut < MAX_WALK:
            if len(kept) < self.limits.max_frames:
                kept.append(frame)
            else:
                cut += 1
            outermost, frame = frame, frame.f_back
        kept.reverse()
        return kept, cut, outermost

    def read_variables(self):
        """Reads the variables of every frame stack() and shared_stack() took so far (Rule 5).

        All the f_locals are read in one C iteration, with the heap held (_with_heap_held):
        f_locals refreshes the frame's own dict, and drops the last reference to an object
        that dict alone held (a value the frame had when someone last read f_locals or called
        locals() there), whose finalizer would otherwise run inside that C code. The frames
        were walked before: their threads may have returned from them since, which is safe
        (the frame object keeps what they held); the variables are those of the moment of the
        read. resolve() then puts the variables in.
        """
        pending, self._pending = self._pending, []
        sites, self._sites = self._sites, []
        readable = []
        for item in pending:
            if _is_class_body_with_cell(item.frame.f_code):
                item.result = dataclasses.replace(item.info, arguments=(), locals=(CLASS_BODY_NOTE,))
            else:
                readable.append(item)
        if not readable and not sites:
            return  # listing the heap costs 30 to 120 ns an object: not for nothing
        frames = [item.frame for item in readable] + [frame for frame, _ in sites]
        try:
            namespaces, = _with_heap_held(lambda heap: (functools.partial(list, map(_F_LOCALS, frames)),))
        except Exception as error:  # e.g. MemoryError: no variables then
            note = ('(not read)', f'<unreadable: {type_name(type(error))}>')
            for item in readable:
                item.result = dataclasses.replace(item.info, arguments=(), locals=(note,))
            return
        for (frame, site), namespace in zip(sites, namespaces[len(readable):]):
            # Copied in one C call, like _variables(); a module's top level has only globals.
            if type(namespace) is dict and namespace is not site.f_globals:
                site.namespace = dict.copy(namespace)
        for item, namespace in zip(readable, namespaces):
            try:
                arguments, local_variables, cut = _variables(item.frame, namespace, self.limits)
                item.result = dataclasses.replace(item.info, arguments=arguments, locals=local_variables,
                                                  variables_cut=cut)
            except Exception as error:  # the dump goes on
                item.result = FrameInfo('?', 0, f'<unreadable frame: {type_name(type(error))}>', '')

    def resolve(self, info):
        """A ThreadInfo or GreenletInfo with the variables read_variables() read put in its frames."""
        if not any(type(frame) is _Pending for frame in info.frames):
            return info
        return dataclasses.replace(info, frames=tuple(frame.result if type(frame) is _Pending else frame
                                                      for frame in info.frames))

    def _frame_info(self, frame, with_variables):
        try:
            info = self.bare_frame(frame.f_code, frame.f_lineno)
        except Exception as error:  # a frame torn down while read; the dump goes on
            return FrameInfo('?', 0, f'<unreadable frame: {type_name(type(error))}>', '')
        if not with_variables:
            return info
        pending = _Pending(frame, info)
        self._pending.append(pending)
        return pending

    def _source_line(self, file, line):
        text = self._sources.get((file, line))
        if text is None:
            try:
                text = linecache.getline(file, line or 0).strip()
            except Exception:
                text = ''
            # Redacted like text values (a literal password on the line): the text dump and
            # the record both show it.
            text = redact_text(text)
            text = text if len(text) <= MAX_SOURCE_LINE else f'{text[:MAX_SOURCE_LINE]}...'
            self._sources[(file, line)] = text
        return text


def _replaced(info, changes):
    """dataclasses.replace() of a frozen info, in a tenth of the time: 10,000 greenlets waiting
    on one Event all change. Copies the instance dict, as replace() would pass every field."""
    new = object.__new__(type(info))
    attributes = object.__getattribute__(new, '__dict__')
    attributes.update(object.__getattribute__(info, '__dict__'))
    attributes.update(changes)
    return new


class _Found:
    """What _StackReader._find() found in one stack: its service call, its waits.FrameSites."""

    __slots__ = ('call', 'sites')

    def __init__(self):
        self.call, self.sites = None, []


class _CallFrame:
    """The frame of a service call (calls.py), whose locals read_variables() puts in `namespace`."""

    __slots__ = ('f_globals', 'namespace')

    def __init__(self, f_globals):
        self.f_globals, self.namespace = f_globals, None


class _Pending:
    """A frame whose variables are read later, with every other frame's (read_variables)."""

    __slots__ = ('frame', 'info', 'result')

    def __init__(self, frame, info):
        self.frame, self.info, self.result = frame, info, None


def _is_class_body_with_cell(code):
    # f_locals of such a frame would delete '__class__' from the namespace being built, which
    # may be any mapping with code of its own (Rule 1).
    return not code.co_flags & inspect.CO_OPTIMIZED and bool(code.co_cellvars)


def _variables(frame, namespace, limits):
    """(arguments, locals, how many were not shown) of one frame, rendered and redacted.

    `namespace` is the frame's f_locals, read by _StackReader.read_variables() (Rule 5).
    """
    # A module's top level shows its globals, and exec() may pass any mapping: neither are variables.
    if type(namespace) is not dict or namespace is frame.f_globals:
        return (), (), 0
    # Copied in one C call: the owning thread's locals() and other readers refresh the same dict.
    values = dict.copy(namespace)
    argument_names = [name for name in _argument_names(frame.f_code) if name in values]
    local_names = [name for name in list(values) if name not in argument_names]
    shown = limits.max_variables
    arguments = tuple(_variable(name, values, limits) for name in argument_names[:shown])
    local_variables = tuple(_variable(name, values, limits) for name in local_names[:max(0, shown - len(arguments))])
    return arguments, local_variables, len(argument_names) + len(local_names) - len(arguments) - len(local_variables)


def _argument_names(code):
    count = code.co_argcount + code.co_kwonlyargcount
    count += bool(code.co_flags & inspect.CO_VARARGS) + bool(code.co_flags & inspect.CO_VARKEYWORDS)
    return code.co_varnames[:count]


def _variable(name, values, limits):
    value = values.get(name)
    name = name[:MAX_NAME] if type(name) is str else render_value(name, limits)
    return name, REDACTED if is_secret_name(name) else render_value(value, limits)


class _GreenletReader:
    """Reads greenlets through greenlet's own descriptors, so no subclass code runs (Rule 1)."""

    def __init__(self, base, stacks):
        self.base = base
        self.found = {}      # greenlet address -> _Found (call and waits.FrameSites) of a suspended one
        self.parents = {}    # greenlet address -> its parent's address (None for a thread's main greenlet)
        self.main_hubs = {}  # hub address -> the OS ident of its thread
        self._running = []   # addresses of the running greenlets, one per thread that has greenlets
        attributes = base.__dict__
        self._frame = attributes['gr_frame']
        self._dead = attributes['dead']
        self._parent = attributes['parent']
        self._run = attributes['run']
        self._is_active = attributes['__bool__']
        self._stacks = stacks
        self._plans = {}

    def describe(self, greenlet):
        """A GreenletInfo, or None when the greenlet cannot be read (it is then left out)."""
        try:
            frame = self._frame.__get__(greenlet)
            state = self._state(greenlet, frame)
            found = _Found() if state == SUSPENDED else None
            frames, cut, outermost = self._stacks.shared_stack(frame, found) if frame is not None else ((), 0, None)
            plan = self._plan(type(greenlet))
            parent = self._parent.__get__(greenlet)
            address = id(greenlet)
            attributes = _instance_dict(greenlet)
            if found is not None and (found.sites or found.call is not None):
                self.found[address] = found
            elif state == RUNNING:
                self._running.append(address)
            self.parents[address] = id(parent) if parent is not None else None
            if plan.is_hub and type(attributes.get('thread_ident')) is int:
                self.main_hubs[address] = attributes['thread_ident']
            return GreenletInfo(address=address, kind=plan.kind, state=state, is_main=parent is None,
                                runs=self._runs(greenlet, plan, outermost),
                                spawned_at=self._spawned_at(greenlet, plan), frames=frames, frames_cut=cut,
                                is_hub=plan.is_hub)
        except Exception:
            return None

    def add_waits(self, greenlets, running, main_thread):
        """(greenlets with their call, waits_on and holds, the Dump's objects) from what
        describe() found, after read_variables(). The greenlet `running` in the main thread
        (None when unknown) gets its call and locks from `main_thread`, the _Found of that
        thread's frames; it runs, so it waits on nothing."""
        found, self.found = self.found, {}
        if running is not None:
            found[running] = main_thread
        addresses = {info.address for info in greenlets}
        waits_on, holds, objects = waits.analyse({address: item.sites for address, item in found.items()},
                                                 addresses, running=(running,))
        changed = {}
        for address, item in found.items():
            call = calls.call_in(item.call.namespace) if item.call is not None else None
            if call is not None or address in waits_on or address in holds:
                changed[address] = {'call': call, 'waits_on': waits_on.get(address), 'holds': holds.get(address, ())}
        return tuple(_replaced(info, changed[info.address]) if info.address in changed else info
                     for info in greenlets), objects

    def running_in_main_thread(self, main_thread_ident):
        """The address of the greenlet running in the main thread, or None when unknown.

        That greenlet descends (by parent) from the main thread's main greenlet, which is the
        parent of the main thread's hub (gevent's hub records its thread's OS ident); each
        thread runs one greenlet at a time. None without a hub in the main thread.
        """
        hub = next((address for address, ident in self.main_hubs.items() if ident == main_thread_ident), None)
        root = self.parents.get(hub) if hub is not None else None
        if root is None:
            return None
        return next((address for address in self._running if self._root(address) == root), None)

    def _root(self, address):
        for _ in range(MAX_WALK):
            parent = self.parents.get(address)
            if parent is None:
                return address
            address = parent
        return None

    def _state(self, greenlet, frame):
        if self._dead.__get__(greenlet):
            return DEAD
        if not self._is_active(greenlet):
            return NOT_STARTED
        return RUNNING if frame is None else SUSPENDED

    def _plan(self, kind):
        plan = self._plans.get(id(kind))  # by id: see _C_DESCRIPTOR_IDS
        if plan is None:
            plan = self._plans[id(kind)] = _plan_of(kind)
        return plan

    def _runs(self, greenlet, plan, outermost):
        run = _instance_dict(greenlet).get('_run')  # gevent.spawn(function) keeps it here until it returns
        if run is not None:
            return describe_callable(run)
        if plan.run_method is not None:
            return plan.run_method
        try:
            return describe_callable(self._run.__get__(greenlet))  # greenlet(function), not started yet
        except AttributeError:
            pass
        return _function_of(outermost) if outermost is not None else None

    def _spawned_at(self, greenlet, plan):
        if plan.spawning_stack is None:
            return None
        return self._stacks.spawn_site(plan.spawning_stack.__get__(greenlet))


@dataclass(frozen=True)
class _Plan:
    kind: str                   # module.Qualname of the greenlet class
    run_method: str             # the class's own run()/_run(), e.g. gevent's Hub.run
    spawning_stack: object      # gevent's C descriptor, None for plain greenlets
    is_hub: bool = False        # a gevent hub (gevent.hub.Hub or a subclass)


def _plan_of(kind):
    run_method = spawning_stack = None
    for cls in type.__dict__['__mro__'].__get__(kind):
        attributes = type.__dict__['__dict__'].__get__(cls)
        if spawning_stack is None and id(type(attributes.get('spawning_stack'))) in _C_DESCRIPTOR_IDS:
            spawning_stack = attributes['spawning_stack']
        if run_method is None and not _is_gevent_greenlet_class(cls):
            run_method = _own_run_method(attributes)
    is_hub = any(type_name(cls) == HUB_CLASS for cls in type.__dict__['__mro__'].__get__(kind))
    return _Plan(type_name(kind), run_method, spawning_stack, is_hub)


# gevent's hub class, by name: this module imports no gevent (Rule 3).
HUB_CLASS = 'gevent.hub.Hub'


def _own_run_method(attributes):
    for name in ('_run', 'run'):
        if type(attributes.get(name)) is types.FunctionType:
            return describe_callable(attributes[name])
    return None


def _is_gevent_greenlet_class(cls):
    # gevent's Greenlet.run/_run only wrap what was spawned; they say nothing (pure-Python gevent).
    return type_name(cls) in ('gevent.greenlet.Greenlet', 'gevent._gevent_cgreenlet.Greenlet')


def _is_gevent_file(filename):
    return f'{os.sep}gevent{os.sep}' in filename


def _function_of(frame):
    module = frame.f_globals.get('__name__') if type(frame.f_globals) is dict else None
    return _qualified(module, frame.f_code.co_qualname)


def describe_callable(value):
    """'module.qualname' of a function, method or functools.partial; others as render_value() shows them."""
    kind = type(value)
    if kind is types.MethodType:
        value = value.__func__
        kind = type(value)
    if kind is functools.partial:
        return f'functools.partial({describe_callable(value.func)})'
    if kind is types.FunctionType or kind is types.BuiltinFunctionType:
        return _qualified(value.__module__, value.__qualname__)
    return _opaque(value, kind)


def _qualified(module, qualname):
    if type(module) is not str or module == 'builtins':
        return qualname
    return f'{module}.{qualname}'


# ---- bounded rendering of values (Rule 1 and Rule 4)

# Classes are looked up by id throughout: `kind in {...}` would hash and compare them, and a
# metaclass may define __hash__ and __eq__ (Rule 1).
_C_DESCRIPTOR_IDS = frozenset(map(id, (types.GetSetDescriptorType, types.MemberDescriptorType)))
_F_LOCALS = types.FrameType.__dict__['f_locals'].__get__
_CALLABLE_IDS = frozenset(map(id, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, functools.partial)))
_EXCEPTION_ARGS = BaseException.__dict__['args']


def render_value(value, limits=DEFAULT_LIMITS):
    """`value` as text of at most about limits.max_value characters, running none of its code.

    None, bool, numbers, str, bytes, bytearray, range and containers of them (list, tuple,
    dict, set, frozenset and their subclasses) show as repr() would show them, cut to `limits`
    with a note of what was cut; exceptions by type and args; a few stdlib types (datetime,
    Decimal, UUID, paths) by their repr; anything else as <module.Qualname at 0x...>.
    Through the redaction policy (zato_daemon/redaction.py): in a dict, the value of a
    secret-named key, or the values of a name/value pair naming a secret, is REDACTED, and
    so is the second item of a ('password', value) pair; text and bytes have their
    recognisable secrets replaced, and an HTTP message (a receive buffer) is summarised.
    """
    try:
        text = _render(value, limits, limits.max_depth)
    except Exception as error:  # e.g. a dict resized by another thread while read
        text = f'<{type_name(type(value))} at {id(value):#x}, unreadable: {type_name(type(error))}>'
    return _clip(text, limits.max_value)


def _render(value, limits, depth):
    kind = type(value)
    render = _SCALARS.get(id(kind))
    if render is not None:
        return render(value, limits)
    for base, render in _CONTAINERS:
        if issubclass(kind, base):
            return render(value, kind, base, limits, depth)
    if issubclass(kind, BaseException):
        return f'{type_name(kind)}({", ".join(_items(_EXCEPTION_ARGS.__get__(value), tuple, limits, depth))})'
    return _render_other(value, kind)


def _clip(text, limit):
    if len(text) <= limit:
        return text
    return f'{text[:limit]}... ({len(text) - limit} more characters)'


# Text is redacted on up to this many times max_string characters before it is cut, so that
# a cut cannot separate a secret from what marks it as one ('password=' from its value).
REDACTION_WINDOW = 4


def _render_str(value, limits):
    return _render_text(value, limits, is_bytes=False)


def _render_bytes(value, limits):
    return _render_text(value, limits, is_bytes=True)


def _render_text(value, limits, is_bytes):
    """A str, bytes or bytearray through the redaction policy's text rules: an HTTP message
    (a connection's receive buffer) as a summary without headers, query or body; other text
    with its recognisable secrets replaced; then cut to max_string."""
    window = value[:limits.max_string * REDACTION_WINDOW]
    text = bytes(window).decode('latin-1') if is_bytes else window
    summary = summarise_http(text)
    if summary is not None:
        return summary
    text = redact_text(text)
    shown = text[:limits.max_string]
    rendered = repr(shown.encode('latin-1', 'backslashreplace')) if is_bytes else repr(shown)
    if len(text) <= limits.max_string and len(window) == len(value):
        return rendered
    unit = 'bytes' if is_bytes else 'characters'
    return f'{rendered}... ({max(len(value) - limits.max_string, 1)} more {unit})'


def _render_int(value, limits):
    # Converting a huge int to text takes quadratic time, or raises past sys.get_int_max_str_digits().
    bits = value.bit_length()
    return repr(value) if bits <= 256 else f'<int of {bits} bits>'


def _render_plain(value, limits):
    return repr(value)


_SCALARS = {id(kind): render for kind, render in (
    (type(None), _render_plain), (bool, _render_plain), (float, _render_plain), (complex, _render_plain),
    (range, _render_plain), (type(Ellipsis), _render_plain), (type(NotImplemented), _render_plain),
    (int, _render_int), (str, _render_str), (bytes, _render_bytes), (bytearray, _render_bytes))}


def _items(value, base, limits, depth):
    """Rendered items of a container through its base class's C methods; stops at the limits."""
    size = base.__len__(value)
    parts, used = [], 0
    for item in itertools.islice(base.__iter__(value), limits.max_items):
        if used > limits.max_value:
            break
        parts.append(_render(item, limits, depth - 1))
        used += len(parts[-1]) + 2
    if size > len(parts):
        parts.append(f'... ({size - len(parts)} more)')
    return parts


def _render_sequence(value, kind, base, limits, depth):
    opening, closing = _BRACKETS[base]
    if base in (list, tuple) and _is_secret_pair(value, base):
        # ('password', 'hunter2'): a name/value pair of the redaction policy (Rule 3).
        text = f'{opening}{_render(base.__getitem__(value, 0), limits, depth - 1)}, {REDACTED}{closing}'
        return text if kind is base else f'{type_name(kind)}({text})'
    if depth <= 0:
        text = f'{opening}... ({base.__len__(value)} items){closing}'
    else:
        parts = _items(value, base, limits, depth)
        if not parts and base in (set, frozenset):
            return f'{type_name(kind)}()'
        text = f'{opening}{", ".join(parts)}{"," if base is tuple and len(parts) == 1 else ""}{closing}'
    return text if kind is base else f'{type_name(kind)}({text})'


def _render_dict(value, kind, base, limits, depth):
    if depth <= 0:
        text = f'{{... ({dict.__len__(value)} items)}}'
    else:
        text = f'{{{", ".join(_dict_items(value, limits, depth))}}}'
    return text if kind is dict else f'{type_name(kind)}({text})'


def _is_secret_pair(value, base):
    return base.__len__(value) == 2 and type(base.__getitem__(value, 0)) is str and is_secret_name(
        base.__getitem__(value, 0)[:MAX_NAME])


def _names_a_secret(value, limits):
    """True when a dict is a name/value pair of the redaction policy: {'name': 'password', ...}."""
    return any(names_a_secret(key, item) for key, item in itertools.islice(dict.items(value), limits.max_items))


def _dict_items(value, limits, depth):
    size = dict.__len__(value)
    parts, used = [], 0
    is_pair = _names_a_secret(value, limits)
    for key, item in itertools.islice(dict.items(value), limits.max_items):
        if used > limits.max_value:
            break
        is_secret = type(key) is str and (is_secret_name(key[:MAX_NAME]) or (
            is_pair and not is_naming_entry(key, item)))
        shown = REDACTED if is_secret else _render(item, limits, depth - 1)
        parts.append(f'{_render(key, limits, depth - 1)}: {shown}')
        used += len(parts[-1]) + 2
    if size > len(parts):
        parts.append(f'... ({size - len(parts)} more)')
    return parts


_BRACKETS = {list: ('[', ']'), tuple: ('(', ')'), set: ('{', '}'), frozenset: ('frozenset({', '})')}
_CONTAINERS = ((dict, _render_dict), (list, _render_sequence), (tuple, _render_sequence),
               (set, _render_sequence), (frozenset, _render_sequence))


def _render_other(value, kind):
    if id(kind) in _stdlib_type_ids():
        return repr(value)
    if id(kind) in _CALLABLE_IDS:
        return f'<function {describe_callable(value)}>'
    if issubclass(kind, type):
        return f'<class {type_name(value)}>'
    if kind is types.ModuleType:
        return f'<module {_instance_dict(value).get("__name__")!r}>'
    return _opaque(value, kind)


def _opaque(value, kind):
    return f'<{type_name(kind)} at {id(value):#x}>'


# Stdlib types whose repr is short and runs no code of the application. Only modules the
# process already imported are looked at (Rule 2); the set is rebuilt when sys.modules changes
# size. The cache holds the classes themselves too, so that their ids stay theirs.
_STDLIB_REPRS = (('datetime', ('datetime', 'date', 'time', 'timedelta', 'timezone')), ('decimal', ('Decimal',)),
                 ('uuid', ('UUID',)), ('pathlib', ('PosixPath', 'PurePosixPath')))
_stdlib_cache = (-1, (), frozenset())


def _stdlib_type_ids():
    global _stdlib_cache
    size, _, ids = _stdlib_cache
    if size != len(sys.modules):
        kinds = []
        for module_name, names in _STDLIB_REPRS:
            attributes = _instance_dict(sys.modules.get(module_name))
            kinds.extend(kind for kind in map(attributes.get, names) if type(kind) is type)
        ids = frozenset(map(id, kinds))
        _stdlib_cache = (len(sys.modules), tuple(kinds), ids)
    return ids
