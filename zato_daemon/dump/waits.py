"""What a suspended greenlet waits on and which locks it holds, from its frames' bytecode.

Debian's gevent 22.10 (and PyPI's) is compiled: a blocked Semaphore.acquire(), Event.wait() or
Queue.get() leaves no Python frame, and Semaphore._links is not readable from Python. So the
innermost frame that is not gevent's, threading's or queue's is where the greenlet waits, at the
line `with lock_b:`, `lock_b.acquire()`, `event.wait()`, `q.get()` or `sock.recv(10)`. Its
current instruction (frame.f_lasti) is the BEFORE_WITH or the CALL that blocks; the
instructions of the same line before it say what object it was called on, as a *path*: a
local or global name and attribute names (`self._lock`). The frames further out hold what
their enclosing `with X:` blocks entered, and what `X.acquire()` took earlier in the frame
without an `X.release()` after it (in bytecode order: an inference, `exact: false`).

The analysis of a code object is pure (plan(), site_at(), enclosing_withs(), acquired_before(),
site_from_source()), cached per (code, f_lasti) by collect.py, which reads the frames' locals
through _StackReader (Rule 5) and hands them to resolve(): dict lookups and instance __dict__
chains only, never getattr (no descriptor or __getattr__ of the application runs; Rule 1).
object_state() reads a recognised lock-like object's state from C descriptors of gevent's own
classes or its instance dict: plain data, no method of it runs. A socket read is a wait on
the socket (or its file), which gets no object entry. Like collect.py, this
runs in the dump thread: no locks, no logging, no imports after load.
"""

import collections
import dis
import queue
import re
import threading
import types
from dataclasses import dataclass

from zato_daemon.dump.plain import MISSING, class_dict, instance_dict, mro, type_name

# Method names whose call, as a suspended greenlet's current instruction, is a wait.
OPERATIONS = frozenset(('acquire', 'wait', 'get', 'put', 'join', 'recv', 'recv_into', 'recvfrom', 'recvfrom_into',
                        'read', 'readinto', 'readline', 'readlines', 'accept', 'send', 'sendall', 'peek',
                        'wait_read', 'wait_write', 'select', 'poll'))
ACQUIRE = 'acquire'
# At most this many objects in one dump; the greenlets' waits_on and holds still name the rest.
MAX_OBJECTS = 300
MAX_EXPRESSION = 200
# At most this many frames' locals are read for waits in one dump (10,000 greenlets, each in recv()).
MAX_SITES = 20_000
# A path with more attributes than this is not followed.
MAX_ATTRIBUTES = 8

_LOCAL = 'local'
_GLOBAL = 'global'


@dataclass(frozen=True)
class Path:
    """An expression the bytecode loaded: a local or global name, then attribute names."""

    root: str                   # _LOCAL or _GLOBAL
    name: str
    attributes: tuple = ()

    @property
    def expression(self):
        return '.'.join((self.name, *self.attributes))[:MAX_EXPRESSION]


@dataclass(frozen=True)
class Site:
    """A wait a frame is in, as found in its code: the operation and what it was called on."""

    operation: str
    path: Path                  # None when the object is not a name or attribute chain
    expression: str             # the source text of the object, as far as known


@dataclass(frozen=True)
class Plan:
    """What one (code, f_lasti) says: the wait it is in, the paths it holds."""

    site: Site                  # None when the instruction is no wait
    held: tuple                 # Paths of the `with` blocks around the instruction, and of acquire() calls before it
    needs_locals: bool = False  # a path starts at a local: the frame's locals must be read


def _plan_of(site, held):
    paths = ([site.path] if site is not None and site.path is not None else []) + list(held)
    return Plan(site, held, any(path.root == _LOCAL for path in paths))


@dataclass(frozen=True)
class Wait:
    """GreenletInfo.waits_on: the object (its address; None when not resolved), the operation."""

    object: int
    operation: str
    expression: str


@dataclass(frozen=True)
class Held:
    """One item of GreenletInfo.holds."""

    object: int
    exact: bool


@dataclass(frozen=True)
class WaitObject:
    """A lock-like object some greenlet waits on or holds (Dump.objects)."""

    address: int
    kind: str
    names: tuple                # the expressions greenlets used for it
    state: dict                 # locked, counter, is_set, size: None where not readable as plain data
    owner: int = None           # the address of the greenlet holding it
    owner_exact: bool = False   # True when the object itself says who owns it (RLock's _owner)


NO_PLAN = Plan(None, ())


# ---- the bytecode (pure functions of a code object and an offset)

def plan(code, lasti, is_innermost, source_line=''):
    """The Plan of a frame at instruction offset `lasti`; `is_innermost`: the frame where the
    greenlet waits, whose `source_line` is parsed when the bytecode says nothing of its call."""
    try:
        instructions = _instructions(code)
        index = _index_of(instructions, lasti)
        lasti = instructions[index].offset if index is not None else lasti
        site = site_at(code, lasti, instructions) if is_innermost else None
        if site is None and is_innermost and _is_call(instructions, lasti):
            site = site_from_source(source_line)
        held = enclosing_withs(code, lasti, instructions) + acquired_before(code, lasti, instructions)
    except Exception:  # bytecode this analysis does not know; the dump goes on without it
        return NO_PLAN
    if site is not None:
        held = tuple(path for path in held if path != site.path)
    return _plan_of(site, held) if site is not None or held else NO_PLAN


def _is_call(instructions, lasti):
    index = _index_of(instructions, lasti)
    return index is not None and instructions[index].opname in ('CALL', 'BEFORE_WITH', 'CALL_FUNCTION', 'CALL_METHOD')


def _instructions(code):
    return tuple(dis.get_instructions(code))


def site_at(code, lasti, instructions=None):
    """The Site of the call or `with` at offset `lasti`, or None when it is no wait."""
    instructions = instructions if instructions is not None else _instructions(code)
    index = _index_of(instructions, lasti)
    if index is None:
        return None
    call = _simulate(instructions, _statement_start(instructions, index), index)
    if call is None:
        return None
    operation, path = call
    if operation not in OPERATIONS:
        return None
    return Site(operation, path, path.expression if path is not None else '')


def enclosing_withs(code, lasti, instructions=None):
    """The Paths of the `with X:` blocks whose body holds offset `lasti`, outermost first.

    A with-body is the range of the exception table entries whose handler starts with
    WITH_EXCEPT_START (after PUSH_EXC_INFO): the BEFORE_WITH's cleanup. Handlers of a try inside
    the body, which the compiler puts after the function's code, are not in the range.
    """
    instructions = instructions if instructions is not None else _instructions(code)
    entries = dis.Bytecode(code).exception_entries
    by_offset = {instruction.offset: number for number, instruction in enumerate(instructions)}
    paths = []
    for number, instruction in enumerate(instructions):
        if instruction.opname != 'BEFORE_WITH' or instruction.offset >= lasti or number + 1 >= len(instructions):
            continue
        body_start = instructions[number + 1].offset
        target = next((entry.target for entry in entries if entry.start <= body_start < entry.end), None)
        if target is None or not _is_with_cleanup(instructions, by_offset.get(target)):
            continue
        ranges = [(entry.start, entry.end) for entry in entries if entry.target == target]
        if min(start for start, _ in ranges) <= lasti < max(end for _, end in ranges):
            call = _simulate(instructions, _statement_start(instructions, number), number)
            if call is not None and call[1] is not None:
                paths.append(call[1])
    return tuple(paths)


def _is_with_cleanup(instructions, index):
    if index is None:
        return False
    names = [instruction.opname for instruction in instructions[index:index + 3]]
    return 'WITH_EXCEPT_START' in names


def acquired_before(code, lasti, instructions=None):
    """The Paths of `X.acquire()` calls before offset `lasti` with no `X.release()` between (bytecode order)."""
    instructions = instructions if instructions is not None else _instructions(code)
    held = []
    for number, instruction in enumerate(instructions):
        if instruction.offset >= lasti:
            break
        if instruction.opname != 'CALL':
            continue
        call = _simulate(instructions, _statement_start(instructions, number), number)
        if call is None or call[1] is None:
            continue
        operation, path = call
        if operation == ACQUIRE and path not in held:
            held.append(path)
        elif operation == 'release' and path in held:
            held.remove(path)
    return tuple(held)


def _index_of(instructions, offset):
    # The instruction `offset` is in: a frame that called Python code has f_lasti on the last
    # inline cache entry of its CALL (3.11), which dis does not list as an instruction.
    found = None
    for number, instruction in enumerate(instructions):
        if instruction.offset > offset:
            break
        found = number
    return found


def _statement_start(instructions, index):
    # Back to the first instruction of the line, or past the last one that leaves the stack
    # empty in a simple way (a store or POP_TOP) on the same line: `x = q.get()` and
    # `a.acquire(); b.acquire()` both start where the wanted expression's loads start.
    line = _line(instructions[index])
    start = index
    while start > 0:
        previous = instructions[start - 1]
        if instructions[start].is_jump_target or _line(previous) not in (line, None) or (
                previous.opname in _STATEMENT_ENDS):
            break
        start -= 1
    if instructions[start].opname in _STATEMENT_ENDS:
        start += 1
    return start


_STATEMENT_ENDS = frozenset(('POP_TOP', 'STORE_FAST', 'STORE_NAME', 'STORE_GLOBAL', 'STORE_DEREF', 'RESUME', 'NOP',
                             'RETURN_VALUE', 'POP_EXCEPT', 'PUSH_EXC_INFO', 'JUMP_FORWARD', 'JUMP_BACKWARD'))


def _line(instruction):
    positions = instruction.positions
    return positions.lineno if positions is not None else None


_UNKNOWN = object()     # a stack item the simulation does not follow
_NULL = object()        # the NULL 3.11 pushes below a function it calls


def _simulate(instructions, start, stop):
    """(method name, Path of its object) of the call or `with` at `stop`, simulating the
    stack from `start`; (name, None) when the object is no path; None when not a call."""
    stack = []
    for instruction in instructions[start:stop]:
        if not _step(stack, instruction):
            return None
    last = instructions[stop]
    if last.opname == 'BEFORE_WITH':
        return (ACQUIRE, stack[-1]) if stack and type(stack[-1]) is Path else (ACQUIRE, None)
    if last.opname in ('CALL', 'CALL_FUNCTION', 'CALL_METHOD'):
        count = last.arg or 0
        if len(stack) < count + 2:
            return None
        head, below = stack[-count - 1], stack[-count - 2]
        if type(below) is tuple and below[0] == 'method':  # LOAD_METHOD: [method, self, args...]
            return below[2], below[1]
        if type(head) is Path and head.attributes:  # [NULL, obj.method, args...]
            return head.attributes[-1], Path(head.root, head.name, head.attributes[:-1])
        return None
    return None


def _step(stack, instruction):
    """Applies one instruction to the symbolic stack; False when it cannot be followed."""
    name, arg, value = instruction.opname, instruction.arg, instruction.argval
    if name in ('LOAD_FAST', 'LOAD_DEREF', 'LOAD_CLOSURE', 'LOAD_NAME'):
        stack.append(Path(_LOCAL, value))  # resolve() looks a local up in the globals too
    elif name == 'LOAD_GLOBAL':
        if arg is not None and arg & 1:
            stack.append(_NULL)
        stack.append(Path(_GLOBAL, value))
    elif name in ('LOAD_ATTR', 'LOAD_METHOD'):
        if not stack:
            return False
        base = stack.pop()
        attribute = Path(base.root, base.name, (*base.attributes, value)) if (
            type(base) is Path and len(base.attributes) < MAX_ATTRIBUTES) else _UNKNOWN
        if name == 'LOAD_METHOD':
            stack.append(('method', base if type(base) is Path else None, value))
            stack.append(base)
        else:
            stack.append(attribute)
    elif name in ('PRECALL', 'KW_NAMES', 'CACHE', 'EXTENDED_ARG', 'NOP', 'RESUME'):
        pass
    elif name == 'PUSH_NULL':
        stack.append(_NULL)
    elif name == 'CALL':
        count = (arg or 0) + 2
        if len(stack) < count:
            return False
        del stack[-count:]
        stack.append(_UNKNOWN)
    else:
        try:
            effect = dis.stack_effect(instruction.opcode, arg if instruction.opcode >= dis.HAVE_ARGUMENT else None,
                                      jump=False)
        except ValueError:
            return False
        if len(stack) < -effect:
            return False
        if effect < 0:
            del stack[effect:]
        stack.extend([_UNKNOWN] * max(effect, 0))
        if effect <= 0 and stack:
            stack[-1] = _UNKNOWN  # the result it makes, if any: not a path the simulation follows
    return True


_SOURCE_WITH = re.compile(r'^\s*(?:async\s+)?with\s+([A-Za-z_][\w.]*)\s*(?::|,|\s+as\b)')
_SOURCE_CALL = re.compile(r'([A-Za-z_][\w.]*)\.(\w+)\s*\(')


def site_from_source(source_line):
    """A Site from the text of a line, for bytecode the simulation cannot follow; None if no wait shows."""
    if type(source_line) is not str:
        return None
    match = _SOURCE_WITH.match(source_line)
    if match:
        return Site(ACQUIRE, _path_of_text(match.group(1)), match.group(1)[:MAX_EXPRESSION])
    for match in _SOURCE_CALL.finditer(source_line):
        if match.group(2) in OPERATIONS:
            return Site(match.group(2), _path_of_text(match.group(1)), match.group(1)[:MAX_EXPRESSION])
    return None


def _path_of_text(text):
    # A dotted name read from source: a local or a global, whichever the frame has (_LOCAL
    # tries both; see resolve()).
    first, *rest = text.split('.')
    return Path(_LOCAL, first, tuple(rest[:MAX_ATTRIBUTES]))


# ---- the objects (plain data reads only)

_MISSING = MISSING


def resolve(path, namespace, f_globals):
    """The object a Path names in a frame's locals (`namespace`, a dict copy) and globals, or _MISSING.

    Names are looked up in plain dicts; attributes only in instance __dicts__ that C code
    provides (plain.instance_dict): no property, descriptor or __getattr__ of the application
    runs; an object whose class makes __dict__ a property is not looked into.
    """
    value = _MISSING
    if path.root == _LOCAL and type(namespace) is dict:
        value = namespace.get(path.name, _MISSING)
    if value is _MISSING and type(f_globals) is dict:
        value = f_globals.get(path.name, _MISSING)
    for attribute in path.attributes:
        if value is _MISSING:
            break
        value = instance_dict(value).get(attribute, _MISSING)
    return value


# Kinds by the name of a class in their MRO. Names, not classes: this module imports no gevent.
_SEMAPHORES = ('gevent._gevent_c_semaphore.Semaphore', 'gevent.lock.Semaphore', 'gevent._semaphore.Semaphore')
_RLOCKS = ('gevent.lock.RLock', 'threading._RLock', 'threading.RLock')
_EVENTS = ('gevent._gevent_cevent.Event', 'gevent.event.Event', 'threading.Event')
_RESULTS = ('gevent._gevent_cevent.AsyncResult', 'gevent.event.AsyncResult')
_QUEUES = ('gevent._gevent_cqueue.Queue', 'gevent._gevent_cqueue.SimpleQueue', 'gevent.queue.Queue',
           'gevent.queue.SimpleQueue', 'gevent._gevent_cqueue.Channel', 'gevent.queue.Channel', 'queue.Queue')
_SOCKETS = ('socket.socket', 'gevent._socket3.socket', 'gevent._socketcommon.SocketMixin', 'socket.SocketIO',
            '_io.BufferedReader', '_io.BufferedWriter', '_io.BufferedRWPair', '_io.TextIOWrapper', 'ssl.SSLSocket')

SEMAPHORE, RLOCK, EVENT, RESULT, QUEUE, SOCKET = 'semaphore', 'rlock', 'event', 'result', 'queue', 'socket'
_FAMILIES = ((_SEMAPHORES, SEMAPHORE), (_RLOCKS, RLOCK), (_EVENTS, EVENT), (_RESULTS, RESULT), (_QUEUES, QUEUE),
             (_SOCKETS, SOCKET))


def family(kind):
    """SEMAPHORE, RLOCK, EVENT, RESULT, QUEUE or SOCKET for a class (by its MRO's names), else None."""
    names = [type_name(cls) for cls in mro(kind)]
    for members, name in _FAMILIES:
        if any(member in names for member in members):
            return name
    return None


def _descriptor_value(obj, name):
    """An attribute from a C slot or a getset of gevent's compiled classes, else one the
    instance itself holds; _MISSING when neither has it. No Python code runs."""
    for cls in mro(type(obj)):
        attribute = class_dict(cls).get(name, _MISSING)
        if attribute is not _MISSING:
            # A C slot is plain data; a getset runs C code, which only gevent's own classes'
            # are known to keep plain (a Cython property elsewhere may run anything).
            if type(attribute) is types.MemberDescriptorType or (
                    type(attribute) is types.GetSetDescriptorType and type_name(cls).startswith('gevent.')):
                try:
                    return attribute.__get__(obj)
                except Exception:
                    return _MISSING
            break
    return instance_dict(obj).get(name, _MISSING)



def _plain(value, *kinds):
    return value if type(value) in kinds else None


def object_state(obj, object_family):
    """(state dict, what the object says owns it or None) of a recognised object, from plain data."""
    state = {'locked': None, 'counter': None, 'is_set': None, 'size': None}
    owner = None
    if object_family == SEMAPHORE:
        counter = _plain(_descriptor_value(obj, 'counter'), int)
        state['counter'] = counter
        state['locked'] = None if counter is None else counter <= 0
    elif object_family == RLOCK:
        owner = _descriptor_value(obj, '_owner')
        count = _plain(_descriptor_value(obj, '_count'), int)
        state['counter'] = count
        state['locked'] = None if owner is _MISSING else owner is not None
    elif object_family == EVENT:
        state['is_set'] = _plain(_descriptor_value(obj, '_flag'), bool)
    elif object_family == QUEUE:
        items = _descriptor_value(obj, 'queue')
        if type(items) is collections.deque:
            state['size'] = collections.deque.__len__(items)
        elif type(items) is list:
            state['size'] = list.__len__(items)
        balance = _plain(_descriptor_value(obj, 'balance'), int)
        if balance is not None:
            state['counter'] = balance
    return state, (None if owner is _MISSING else owner)


def _one_slot(value):
    """A semaphore made with one slot (BoundedSemaphore keeps its initial value; a plain
    Semaphore does not say, and may have had more)."""
    return family(type(value)) == SEMAPHORE and _plain(_descriptor_value(value, '_initial_value'), int) == 1


def owner_address(owner, greenlet_addresses):
    """The greenlet address an RLock's _owner names: a greenlet itself (gevent.lock.RLock) or,
    for threading's RLock under patch_all, gevent's get_ident() of it, which is id(greenlet)."""
    if owner is None:
        return None
    if type(owner) is int:
        return owner if owner in greenlet_addresses else None
    return id(owner) if id(owner) in greenlet_addresses else None


# ---- putting it together (run by collect.py after the frames' locals are read)

@dataclass
class FrameSite:
    """One frame of a greenlet that plan() says waits or holds, with what resolve() needs."""

    plan: Plan
    f_globals: dict
    namespace: dict = None      # the frame's locals, filled in by _StackReader.read_variables
    source_line: str = ''


def analyse(sites_by_address, greenlet_addresses, running=()):
    """(waits_on by greenlet address, holds by greenlet address, the objects as WaitObjects)
    from each greenlet's FrameSites, innermost frame first; the greenlets in `running` run,
    and so wait on nothing. At most MAX_OBJECTS objects."""
    objects = {}    # address -> [object, family, names]
    waits, holds = {}, {}
    families = {}   # id(class) -> (class, family): a few classes, many greenlets

    def family_of(value):
        kind = type(value)
        known = families.get(id(kind))
        if known is None:
            known = families[id(kind)] = (kind, family(kind))
        return known[1]

    def remember(value, expression):
        address = id(value)
        entry = objects.get(address)
        if entry is None and len(objects) < MAX_OBJECTS and family_of(value) not in (None, SOCKET):
            entry = objects[address] = [value, family_of(value), []]
        if entry is not None and expression and expression not in entry[2] and len(entry[2]) < 8:
            entry[2].append(expression)
        return address

    for address, sites in sites_by_address.items():
        waited = None
        site = sites[0].plan.site if sites and address not in running else None
        if site is not None:
            value = resolve(site.path, sites[0].namespace, sites[0].f_globals) if site.path is not None else _MISSING
            waited = None if value is _MISSING else remember(value, site.expression)
            waits[address] = Wait(waited, site.operation, site.expression)
        held = []
        for frame_site in sites:
            for path in frame_site.plan.held:
                value = resolve(path, frame_site.namespace, frame_site.f_globals)
                if value is _MISSING or family_of(value) not in (SEMAPHORE, RLOCK):
                    continue
                object_address = remember(value, path.expression)
                # A greenlet waiting on X (an RLock taken again, a Semaphore(2)) is not said to hold it;
                # but a lock of one slot (threading.Lock, a BoundedSemaphore(1)) it entered further out
                # it holds, and waits on itself: `with lock:` again in a helper, a deadlock of one.
                if (object_address != waited or _one_slot(value)) and object_address not in held:
                    held.append(object_address)
        if held:
            holds[address] = {object_address: False for object_address in held}

    found = []
    for object_address, (value, object_family, names) in objects.items():
        state, owner = object_state(value, object_family)
        exact_owner = owner_address(owner, greenlet_addresses)
        if object_family == RLOCK and state['locked'] is not None:
            # The lock says who owns it: that hold is exact, and no other greenlet's inference stands.
            for address, held in holds.items():
                held.pop(object_address, None)
            if exact_owner is not None:
                holds.setdefault(exact_owner, {})[object_address] = True
            owner = exact_owner
        else:
            owner = next((address for address, held in holds.items() if object_address in held), None)
        found.append(WaitObject(object_address, type_name(type(value)), tuple(names), state, owner,
                                owner is not None and owner == exact_owner))
    holds = {address: tuple(Held(object_address, exact) for object_address, exact in held.items())
             for address, held in holds.items() if held}
    return waits, holds, tuple(found)


# The stdlib modules whose frames (RLock.acquire, Condition.wait, Queue.get) are skipped like
# gevent's: the wait is the caller's `with rlock:` or `q.get()`, not the lock inside.
SKIPPED_FILES = frozenset((threading.__file__, queue.__file__))
