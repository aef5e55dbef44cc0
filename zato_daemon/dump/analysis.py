"""From successive dump records (record.py's format) to findings: what is stuck, blocked, waiting, leaking.

Pure: records in, findings out, no I/O and no clock (the records' own times are the clock).
diagnose.py takes the dumps and prints what `analyse()` returns.

Each finding is decided per process on every record of it that the run took, in time order:
- deadlock: a cycle of greenlets, each waiting (in every dump) on an object the next one holds;
- hub_blocked: the same non-hub greenlet running in the main thread in every dump, or a
  heartbeat older than HEARTBEAT_LIMIT: nothing else in that worker runs meanwhile;
- stuck: a greenlet (by address, serving the same call) or a thread (by ident) on the same
  stack in every dump, up to its innermost frame of application code (Process.place);
- lock_wait: greenlets waiting on the same gevent lock, event or queue in every dump, grouped
  by object, with its holder when the dump knows it;
- growth: the greenlets spawned at one place, counted in every dump, rising every time, by
  MIN_GROWTH at least from the first dump to the last;
- in_flight: every call in progress in the last dump, oldest first (not a problem by itself).
Greenlets and threads in a known idle place (stacks.IDLE_FRAMES: the hub, the server's own
housekeeping loops, a keep-alive connection waiting for its next request) are never findings,
so an idle server reports nothing. A greenlet is named once, under its most severe finding.
"""

from zato_daemon.dump.stacks import (HUB_LOOP_FRAMES, SIGNAL_HANDLER_FRAMES, innermost_own, is_idle, is_in,
                                     is_library, where)

DEADLOCK = 'deadlock'
HUB_BLOCKED = 'hub_blocked'
STUCK = 'stuck'
LOCK_WAIT = 'lock_wait'
GROWTH = 'growth'
IN_FLIGHT = 'in_flight'
# Most important first: the order of the report.
SEVERITY = (DEADLOCK, HUB_BLOCKED, STUCK, LOCK_WAIT, GROWTH, IN_FLIGHT)
# Kinds that make `diagnose` exit 1; calls in flight alone are normal.
PROBLEMS = frozenset(SEVERITY) - {IN_FLIGHT}

# A worker's hub sends a heartbeat every second (worker/channel.py HEARTBEAT_INTERVAL); three
# missed ones is not a busy moment any more.
HEARTBEAT_LIMIT = 3.0

# A leak is more greenlets in the last dump than in the first by at least this: one more is
# a greenlet that started (a worker booting between two dumps of a reload), not a leak.
MIN_GROWTH = 2

def seconds(value):
    """'6 s', '0.4 s', '41 s', '2 min 5 s' for a report line."""
    if value < 10:
        return f'{value:.1f} s'.replace('.0 s', ' s')
    if value < 120:
        return f'{value:.0f} s'
    return f'{int(value // 60)} min {int(value % 60)} s'


# ---- one process's records

class Process:
    """The records of one pid, in time order, with lookups the rules share."""

    def __init__(self, records):
        self.records = sorted(records, key=lambda record: record['time'])
        self.last = self.records[-1]
        self.pid = self.last['pid']
        self.role = self.last['role']
        self.span = self.last['time'] - self.records[0]['time']
        self.greenlets = [{greenlet['address']: greenlet for greenlet in record['greenlets']}
                          for record in self.records]
        self._places = {}
        self._idle = {}
        # The last dump's objects by id, and who holds each by the greenlets' own account.
        self.objects = {item['id']: item for item in self.last.get('objects', [])}
        self.held_by = {}
        for greenlet in self.last['greenlets']:
            for held in greenlet.get('holds') or ():
                self.held_by.setdefault(held['object'], []).append((greenlet['address'], bool(held.get('exact'))))
        self.hub_addresses = {greenlet['address'] for by_address in self.greenlets
                              for greenlet in by_address.values() if greenlet.get('is_hub')}

    def stack(self, record, fingerprint):
        """The frames of a fingerprint, outermost first, without the dump's own signal handler."""
        frames = record['stacks'].get(fingerprint, [])
        for index, frame in enumerate(frames):
            if is_in(frame, SIGNAL_HANDLER_FRAMES):
                return frames[:index]
        return frames

    def is_idle(self, record, fingerprint):
        """is_idle() of a fingerprint's stack, once per stack: 10,000 greenlets share a few."""
        idle = self._idle.get(fingerprint)
        if idle is None:
            idle = self._idle[fingerprint] = is_idle(self.stack(record, fingerprint))
        return idle

    def place(self, record, fingerprint):
        """Where a stack is, as far as the application is concerned: its frames up to the innermost
        of the application's own (all of them when none is).

        What "the same stack in every dump" compares. The libraries' frames inside may differ from
        one dump to the next while the application waits on the same line: a greenlet sleeping in
        a loop is caught in gevent.sleep()'s `with loop.timer()` line now and then, and a dump
        reads a greenlet's state and its frame while the main thread runs on."""
        place = self._places.get(fingerprint)  # a fingerprint names the same stack in every record
        if place is None:
            frames = self.stack(record, fingerprint)
            own = [index for index, frame in enumerate(frames) if not is_library(frame['file'])]
            kept = frames[:own[-1] + 1] if own else frames
            place = tuple((frame['file'], frame['function'], frame['line']) for frame in kept)
            self._places[fingerprint] = place
        return place

    def in_every_dump(self, address):
        """The greenlet `address` in each record (a list), or None when a record lacks it or
        serves another call in one of them: a freed greenlet's address is soon another's (under
        load, the next call's, on the same line), and that is not one greenlet that stayed."""
        found = [by_address.get(address) for by_address in self.greenlets]
        if any(greenlet is None for greenlet in found):
            return None
        return found if len({(greenlet.get('call') or {}).get('cid') for greenlet in found}) == 1 else None

    def running_greenlet(self, record):
        """The greenlet running in the main thread when `record` was taken, or None."""
        for thread in record['threads']:
            if thread.get('is_main'):
                address = thread.get('running_greenlet')
                return None if address is None else {'address': address, 'thread': thread}
        return None

    def describe_greenlet(self, greenlet):
        """'greenlet 0x7f… serving crm.get, cid 1a2b' or 'greenlet 0x7f… (runs app.loop)'."""
        call = greenlet.get('call')
        if call:
            return f'greenlet {greenlet["address"]:#x} serving {call["service"]}, cid {call["cid"]}'
        runs = greenlet.get('runs')
        return f'greenlet {greenlet["address"]:#x}' + (f' (runs {runs})' if runs else '')


def _is_candidate(process, greenlet):
    """A greenlet that may be a finding at all: not the hub, not dead or never started."""
    return not greenlet.get('is_hub') and greenlet['address'] not in process.hub_addresses and \
        greenlet.get('state') in ('suspended', 'running')


def _call_fields(greenlet):
    call = greenlet.get('call') or {}
    return {'service': call.get('service'), 'cid': call.get('cid'), 'call_age': call.get('age')}


def _frame_fields(frames):
    frame, callee = innermost_own(frames)
    return {'file': frame['file'] if frame else None, 'line': frame['line'] if frame else None,
            'function': frame['function'] if frame else None, 'callee': callee, 'where': where(frames)}


# ---- the rules, one process at a time

def persistent_waits(process):
    """{greenlet address: object id} for greenlets waiting on the same lock-like object in every
    dump, outside idle places. Lock-like: the record lists it among its objects (a gevent lock,
    semaphore, event, result or queue); a wait on a socket is no lock wait (it may be stuck)."""
    waits = {}
    if len(process.records) < 2:
        return waits
    for greenlet in process.last['greenlets']:
        wait = greenlet.get('waits_on')
        if not wait or wait.get('object') not in process.objects or not _is_candidate(process, greenlet):
            continue
        everywhere = process.in_every_dump(greenlet['address'])
        if everywhere is None or any((seen.get('waits_on') or {}).get('object') != wait['object']
                                     for seen in everywhere):
            continue
        if process.is_idle(process.last, greenlet['stack']):
            continue
        waits[greenlet['address']] = wait['object']
    return waits


def holders(process, object_id):
    """[(greenlet address, exact)] holding `object_id` in the last dump: the object's owner as
    gevent records it, else the greenlets whose frames hold it."""
    item = process.objects.get(object_id)
    if item is not None and item.get('owner') is not None:
        return [(item['owner'], bool(item.get('owner_exact')))]
    return process.held_by.get(object_id, [])


def find_cycles(edges):
    """Every simple cycle of a graph {node: [next nodes]}, each once, starting at its smallest
    node; sorted. Small graphs only (waiting greenlets of one process)."""
    cycles = set()

    def walk(start, node, path, on_path):
        for following in edges.get(node, ()):
            if following == start:
                cycles.add(tuple(path))
            elif following not in on_path and following > start:
                on_path.add(following)
                walk(start, following, path + [following], on_path)
                on_path.discard(following)

    for start in sorted(edges):
        walk(start, start, [start], {start})
    return sorted(cycles)


def _object_label(process, object_id):
    item = process.objects.get(object_id, {})
    names = item.get('names') or []
    kind = item.get('kind') or 'object'
    return (f'{names[0]} ({kind} at {object_id})' if names else f'{kind} at {object_id}'), item


def deadlocks(process, waits):
    edges = {address: [holder for holder, _ in holders(process, object_id)]
             for address, object_id in waits.items()}
    by_address = process.greenlets[-1]
    findings = []
    for cycle in find_cycles(edges):
        steps, parts = [], []
        for index, address in enumerate(cycle):
            following = cycle[(index + 1) % len(cycle)]
            object_id = waits[address]
            exact = dict(holders(process, object_id)).get(following, False)
            label, _ = _object_label(process, object_id)
            greenlet = by_address[address]
            frames = process.stack(process.last, greenlet['stack'])
            steps.append({'greenlet': address, **_call_fields(greenlet), **_frame_fields(frames),
                          'waits_on': object_id, 'object': label, 'held_by': following, 'exact': exact})
            parts.append(f'{process.describe_greenlet(greenlet)} {where(frames)} waits on {label}, held '
                         f'{"" if exact else "probably "}by greenlet {following:#x}')
        findings.append(_finding(DEADLOCK, process, '; '.join(parts), greenlets=list(cycle), cycle=steps))
    return findings


def hub_blocked(process):
    """The worker's hub kept from running: the same greenlet running in every dump, or the
    heartbeat missed."""
    running = [process.running_greenlet(record) for record in process.records]
    heartbeats = [record.get('heartbeat_age') for record in process.records]
    oldest = max((age for age in heartbeats if age is not None), default=None)
    # A main thread in the hub's loop runs the hub, whichever greenlet the dump took for the
    # running one: it reads 10,000 greenlets' frames over 0.2 s while the main thread runs on,
    # and one read while it ran in that moment (a housekeeping loop) looks like it runs still.
    in_loop = [bool(item) and _in_hub_loop(process, record, item) for item, record in zip(running, process.records)]
    addresses = {item['address'] if item and not loop else None for item, loop in zip(running, in_loop)}
    same = (len(process.records) > 1 and len(addresses) == 1 and None not in addresses
            and not addresses & process.hub_addresses)
    late = oldest is not None and oldest > HEARTBEAT_LIMIT
    if not (same or late):
        return []
    # The greenlet named: the one running in every dump, else the one running when the
    # heartbeat was oldest, if it was not the hub.
    index = len(process.records) - 1 if same else max(
        range(len(heartbeats)), key=lambda at: heartbeats[at] if heartbeats[at] is not None else -1)
    item = running[index]
    record = process.records[index]
    frames = process.stack(record, item['thread']['stack']) if item else []
    greenlet = process.greenlets[index].get(item['address']) if item and not in_loop[index] else None
    if greenlet is not None and (greenlet.get('is_hub') or greenlet['address'] in process.hub_addresses):
        greenlet = None
    who = process.describe_greenlet(greenlet) if greenlet else 'the hub itself'
    reasons = []
    if same:
        reasons.append(f'running in all {len(process.records)} dumps over {seconds(process.span)}')
    if late:
        reasons.append(f'no heartbeat for {seconds(oldest)}')
    summary = f'{who} keeps the CPU {where(frames)}'.rstrip() + f': {", ".join(reasons)}'
    return [_finding(HUB_BLOCKED, process, summary, greenlets=[greenlet['address']] if greenlet else [],
                     greenlet=greenlet['address'] if greenlet else None,
                     **(_call_fields(greenlet) if greenlet else _call_fields({})), **_frame_fields(frames),
                     heartbeat_age=oldest, stack=frames)]


def _in_hub_loop(process, record, item):
    return any(is_in(frame, HUB_LOOP_FRAMES) for frame in process.stack(record, item['thread']['stack']))


def stuck_greenlets(process, skip):
    """Greenlets on the same stack in every dump. Those alike (same stack, same service or, without
    a call, same function) are one finding: 10,000 leaked greenlets are one line, not 10,000."""
    if len(process.records) < 2:
        return []  # one dump cannot show what does not move
    groups = {}
    for greenlet in process.last['greenlets']:
        address = greenlet['address']
        if address in skip or not _is_candidate(process, greenlet) or greenlet.get('state') != 'suspended':
            continue
        everywhere = process.in_every_dump(address)
        if everywhere is None or len({process.place(record, seen['stack'])
                                      for record, seen in zip(process.records, everywhere)}) != 1:
            continue
        frames = process.stack(process.last, greenlet['stack'])
        if not frames or process.is_idle(process.last, greenlet['stack']):
            continue
        service = (greenlet.get('call') or {}).get('service')
        key = (process.place(process.last, greenlet['stack']), service, None if service else greenlet.get('runs'))
        groups.setdefault(key, []).append(greenlet)
    return [_stuck_group(process, alike) for alike in groups.values()]


def _stuck_group(process, alike):
    # The oldest call first: its greenlet is the one the finding's single fields describe.
    alike.sort(key=lambda greenlet: (-((greenlet.get('call') or {}).get('age') or 0), greenlet['address']))
    first = alike[0]
    frames = process.stack(process.last, first['stack'])
    ages = [greenlet['call']['age'] for greenlet in alike if greenlet.get('call') and
            greenlet['call'].get('age') is not None]
    if len(alike) == 1:
        who = process.describe_greenlet(first)
    else:
        cids = [greenlet['call']['cid'] for greenlet in alike if greenlet.get('call')]
        service = (first.get('call') or {}).get('service')
        who = f'{len(alike)} greenlets' + (f' serving {service}, cids {_some(cids)}' if service else
                                          f' (runs {first["runs"]})' if first.get('runs') else '')
    started = ''
    if ages:
        started = f', started {seconds(max(ages))} ago' if len(ages) == 1 or min(ages) == max(ages) else \
            f', started {seconds(min(ages))} to {seconds(max(ages))} ago'
    summary = f'{who}, {where(frames)} for at least {seconds(process.span)}{started}'
    return _finding(STUCK, process, summary, greenlets=[greenlet['address'] for greenlet in alike],
                    subject='greenlet', greenlet=first['address'], count=len(alike), **_call_fields(first),
                    cids=[greenlet['call']['cid'] for greenlet in alike if greenlet.get('call')],
                    **_frame_fields(frames), stuck_for=process.span, stack=frames)


def _some(items, shown=5, total=None):
    """The first `shown` of `items`, then how many more (of `total`, when items is a prefix)."""
    total = len(items) if total is None else total
    return ', '.join(items[:shown]) + (f' and {total - shown} more' if total > shown else '')


def stuck_threads(process):
    findings = []
    if len(process.records) < 2:
        return findings
    threads = [{thread['ident']: thread for thread in record['threads']} for record in process.records]
    for thread in process.last['threads']:
        ident = thread['ident']
        # The main thread of a gevent process runs its greenlets: hub_blocked speaks for it.
        if thread.get('is_current') or (thread.get('is_main') and thread.get('running_greenlet') is not None):
            continue
        everywhere = [by_ident.get(ident) for by_ident in threads]
        if any(seen is None or seen.get('is_current') for seen in everywhere) or len(
                {process.place(record, seen['stack']) for record, seen in zip(process.records, everywhere)}) != 1:
            continue
        frames = process.stack(process.last, thread['stack'])
        if not frames or process.is_idle(process.last, thread['stack']):
            continue
        name = thread.get('name') or 'unnamed'
        summary = f'thread {name} (native id {thread.get("native_id")}) {where(frames)} for at least ' \
                  f'{seconds(process.span)}'
        findings.append(_finding(STUCK, process, summary, greenlets=[], subject='thread', thread=ident,
                                 thread_name=thread.get('name'), native_id=thread.get('native_id'),
                                 **_frame_fields(frames), stuck_for=process.span, stack=frames))
    return findings


def lock_waits(process, waits, skip):
    """One finding per object some greenlet has waited on in every dump (deadlocked ones aside)."""
    by_object = {}
    for address, object_id in waits.items():
        if address not in skip:
            by_object.setdefault(object_id, []).append(address)
    by_address = process.greenlets[-1]
    findings = []
    for object_id, waiting in sorted(by_object.items()):
        label, item = _object_label(process, object_id)
        found = holders(process, object_id)
        holder = None
        if found:
            address, exact = found[0]
            held = by_address.get(address)
            frames = process.stack(process.last, held['stack']) if held else []
            holder = {'greenlet': address, 'exact': exact, **(_call_fields(held) if held else _call_fields({})),
                      **_frame_fields(frames)}
            holder_text = (f'held {"" if exact else "probably "}by '
                           f'{process.describe_greenlet(held) if held else f"greenlet {address:#x}"}'
                           + (f' {holder["where"]}' if holder['where'] else ''))
        else:
            holder_text = 'holder unknown'
        waiters = []
        for address in sorted(waiting, key=lambda at: -((by_address[at].get('call') or {}).get('age') or 0)):
            greenlet = by_address[address]
            frames = process.stack(process.last, greenlet['stack'])
            waiters.append({'greenlet': address, 'operation': greenlet['waits_on'].get('operation'),
                            **_call_fields(greenlet), **_frame_fields(frames)})
        operations = sorted({waiter['operation'] for waiter in waiters if waiter['operation']})
        names = _some([_waiter_text(process, by_address[waiter['greenlet']]) for waiter in waiters[:6]],
                      total=len(waiters))
        calls = '/'.join(f'{operation}()' for operation in operations)
        summary = (f'{len(waiters)} waiting on {label}{" in " + calls if calls else ""} '
                   f'for at least {seconds(process.span)}, {holder_text}: {names}')
        findings.append(_finding(LOCK_WAIT, process, summary, greenlets=sorted(waiting), object=object_id,
                                 object_kind=item.get('kind'), object_names=item.get('names') or [],
                                 state=item.get('state'), holder=holder, waiters=waiters))
    return findings


def _waiter_text(process, greenlet):
    call = greenlet.get('call')
    if call:
        age = f' ({seconds(call["age"])})' if call.get('age') is not None else ''
        return f'{call["service"]} cid {call["cid"]}{age}'
    return process.describe_greenlet(greenlet)


def growth(process):
    """Spawn sites whose live, busy greenlets rose from each dump to the next."""
    if len(process.records) < 2:
        return []
    counts = []
    for record in process.records:
        per_site = {}
        for greenlet in record['greenlets']:
            if not _is_candidate(process, greenlet) or greenlet.get('is_main'):
                continue
            if process.is_idle(record, greenlet['stack']):
                continue
            site = spawn_site(greenlet)
            if site is not None:
                per_site[site] = per_site.get(site, 0) + 1
        counts.append(per_site)
    findings = []
    for site in sorted(counts[-1]):
        numbers = [per_site.get(site, 0) for per_site in counts]
        rising = all(later > earlier for earlier, later in zip(numbers, numbers[1:]))
        if rising and numbers[-1] - numbers[0] >= MIN_GROWTH:
            runs = sorted({greenlet['runs'] for greenlet in process.last['greenlets']
                           if greenlet.get('runs') and spawn_site(greenlet) == site})
            summary = f'greenlets spawned at {site}' + (f' running {", ".join(runs)}' if runs else '') + \
                      f' rose in every dump: {" → ".join(map(str, numbers))} in {seconds(process.span)}'
            findings.append(_finding(GROWTH, process, summary, greenlets=[], spawn_site=site, runs=runs,
                                     counts=numbers))
    return findings


def spawn_site(greenlet):
    """Where a greenlet was spawned, or what it runs when that is unknown (a plain greenlet)."""
    return greenlet.get('spawn_site') or (f'(runs {greenlet["runs"]})' if greenlet.get('runs') else None)


def in_flight(process):
    calls = sorted(process.last.get('calls') or [], key=lambda call: (-(call.get('age') or 0), call.get('cid') or ''))
    return [_finding(IN_FLIGHT, process, f'{call["service"]}, cid {call["cid"]}, running for {seconds(call["age"])}',
                     greenlets=[call['greenlet']] if call.get('greenlet') is not None else [],
                     service=call['service'], cid=call['cid'], call_age=call['age'], started=call.get('started'),
                     greenlet=call.get('greenlet'))
            for call in calls]


def _finding(kind, process, summary, greenlets, **fields):
    return {'kind': kind, 'pid': process.pid, 'role': process.role, 'summary': summary, 'greenlets': greenlets,
            **fields}


def analyse_process(records):
    """Every finding of one process, most important first. `records`: that pid's, any order."""
    process = Process(records)
    waits = persistent_waits(process)
    found = deadlocks(process, waits)
    named = {address for finding in found for address in finding['greenlets']}
    blocked = hub_blocked(process)
    named.update(address for finding in blocked for address in finding['greenlets'])
    # A waiter is reported under its lock (with its call and age), not again as stuck;
    # a holder that does not move is the cause, and stays a stuck finding of its own.
    waits_found = lock_waits(process, waits, named)
    waiting = {address for finding in waits_found for address in finding['greenlets']}
    stuck = stuck_greenlets(process, named | waiting) + stuck_threads(process)
    return found + blocked + stuck + waits_found + growth(process) + in_flight(process)


def analyse(records):
    """Findings of every process of the records, ordered by SEVERITY, then oldest call first,
    then by process (the master first). Returns {'findings', 'processes', 'problems'}."""
    by_pid = {}
    for record in records:
        by_pid.setdefault(record['pid'], []).append(record)
    findings, processes = [], []
    for pid in sorted(by_pid, key=lambda pid: (by_pid[pid][0]['role'] != 'master', by_pid[pid][0]['role'], pid)):
        process_records = sorted(by_pid[pid], key=lambda record: record['time'])
        findings.extend(analyse_process(process_records))
        processes.append({'pid': pid, 'role': process_records[-1]['role'], 'dumps': len(process_records),
                          'first': process_records[0]['time'], 'last': process_records[-1]['time'],
                          'greenlets': len(process_records[-1]['greenlets']),
                          'threads': len(process_records[-1]['threads'])})
    order = {kind: index for index, kind in enumerate(SEVERITY)}
    findings.sort(key=lambda finding: (order[finding['kind']], -(finding.get('call_age') or 0)))
    return {'findings': findings, 'processes': processes,
            'problems': sum(finding['kind'] in PROBLEMS for finding in findings)}
