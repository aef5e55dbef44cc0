"""The level convention and the events an admin may filter on by MESSAGE_ID.

One table is the source of truth: the code logs events from it, the journald catalog
(systemd/zato-daemon.catalog) and docs/logging.md are rendered from it, and a test
fails when either rendered file is stale.

The convention, for an admin watching `journalctl -u zato-daemon -p warning`:
CRITICAL - the server stopped or cannot start: act now;
ERROR    - something failed and stays failed until someone acts (a service raised,
           a module did not deploy, a reload was refused);
WARNING  - deserves a look: the server recovered by itself, but something is off
           (a worker died and was restarted, the last good copy of a module serves);
INFO     - lifecycle: start, ready, reload, deploy, stop; nothing to do;
DEBUG    - developer detail: each request and response.
"""

import logging
from dataclasses import dataclass, field

LEVEL_MEANINGS = (
    ('CRITICAL', 2, 'crit', 'The server stopped, or cannot start. Act now.'),
    ('ERROR', 3, 'err', 'Something failed and stays failed until someone acts: a service raised, a module '
                        'did not deploy, a reload was refused.'),
    ('WARNING', 4, 'warning', 'Deserves a look: the server recovered by itself, but something is off (a worker '
                              'died and was restarted, an old version of a module still serves).'),
    ('INFO', 6, 'info', 'Lifecycle: start, ready, reload, deploy, stop. Nothing to do.'),
    ('DEBUG', 7, 'debug', 'Developer detail: each request and response (redacted).'),
)

def priority_of(levelno):
    """The journal PRIORITY (syslog) of a Python level; levels between two map to the lower one."""
    for threshold, priority in ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
                                (logging.INFO, 6)):
        if levelno >= threshold:
            return priority
    return 7


@dataclass(frozen=True)
class Event:
    """An admin-relevant event: its level, its MESSAGE_ID and its catalog text."""

    name: str
    level: int
    message_id: str
    subject: str
    body: str
    extra: dict = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        # Built once: `extra=EVENT.extra` on a logging call costs nothing more.
        object.__setattr__(self, 'extra', {'message_id': self.message_id})


def _event(name, level, message_id, subject, body):
    return Event(name, level, message_id, subject, ' '.join(body.split()))


SERVER_READY = _event('SERVER_READY', logging.INFO, '1bc8a9360d524389bb9216693d45b034', 'zato-daemon is serving', '''
    Every worker of the server @ZATO_SERVER_DIR@ deployed its services and accepts requests.
    Nothing to do.''')
SERVER_STOPPED = _event('SERVER_STOPPED', logging.INFO, 'd87eef5519424bfea8a6f92d20713af1', 'zato-daemon stopped', '''
    The server stopped on request; in-flight requests were given graceful_timeout to finish.''')
SERVER_HALTED = _event('SERVER_HALTED', logging.CRITICAL, '598c7b7a70bd4b078d13e2963b41d223',
                       'zato-daemon stopped on an error', '''
    The server could not go on, for instance because a worker could not deploy its services.
    The entries before this one say why. Fix the cause, then start the server again;
    with exit status 78 systemd does not restart it by itself.''')
START_FAILED = _event('START_FAILED', logging.CRITICAL, 'da7317b58bbe40ca9652bf80adaae938',
                      'zato-daemon could not start', '''
    The server refused to start: its configuration does not validate (the message names the
    file, line and key), its port is in use, or another server runs in the same directory.
    Nothing was started. `zato-daemon check-config DIR` checks a fixed configuration.''')
RELOAD_COMPLETE = _event('RELOAD_COMPLETE', logging.INFO, '9bcf3e67c3c7467ebff5d1778e82ed09',
                         'zato-daemon reloaded', '''
    A new generation of workers serves the configuration read at reload; the previous workers
    finish their requests and exit. Nothing to do.''')
RELOAD_REFUSED = _event('RELOAD_REFUSED', logging.ERROR, '14811b4c01b843f79d61bbdae5dc6f88',
                        'zato-daemon refused to reload', '''
    The configuration read at reload does not validate, or its new address cannot be bound.
    The server keeps serving the previous configuration. Fix the file the message names and
    reload again; `zato-daemon check-config DIR` checks it first.''')
RELOAD_FAILED = _event('RELOAD_FAILED', logging.ERROR, '3ae0098c86064d588777a988a8136cd1',
                       'zato-daemon reload failed', '''
    The new workers did not start (see the entries before this one), so they were stopped and
    the previous workers go on serving the previous configuration.''')
WORKER_EXITED = _event('WORKER_EXITED', logging.WARNING, '1a6dfa718cd742058f846686432a9540',
                       'zato-daemon worker died and was restarted', '''
    A worker process exited or was killed while serving; the requests it was serving failed.
    The master starts a new one, waiting longer after each quick failure (up to 30 s). Look
    for what killed it: an out-of-memory kill, a crash in a C extension, a signal.''')
WORKER_BOOT_FAILED = _event('WORKER_BOOT_FAILED', logging.ERROR, '7fcb5d80f1d44a298467cc9498c1c074',
                            'zato-daemon worker could not start', '''
    A worker could not deploy the services its configuration names; the message gives the
    file and line. Fix the module or [services] in server.conf.''')
WORKER_BOOT_TIMEOUT = _event('WORKER_BOOT_TIMEOUT', logging.ERROR, 'e8671bde8e224036b73e3f8912c28fa7',
                             'zato-daemon worker was too slow to start', '''
    A worker did not report ready within worker_boot_timeout and was killed. A service module
    that blocks at import time (a network call, a lock) is the usual cause.''')
WORKERS_KILLED = _event('WORKERS_KILLED', logging.WARNING, '2f1e8f8be66e4e12ad5f4461dc20f4c7',
                        'zato-daemon killed workers at stop', '''
    Workers still ran when the stop deadline passed and were killed; requests they were
    serving were lost. A service that takes longer than graceful_timeout is the usual cause.''')
SERVICE_FAILED = _event('SERVICE_FAILED', logging.ERROR, 'a3ba752d3ae247048e96a09fba799009',
                        'zato-daemon service raised an exception', '''
    The service @ZATO_SERVICE@ raised (any exception, KeyboardInterrupt and SystemExit
    included) while serving the call @ZATO_CID@, or returned a response that cannot be sent
    (a payload that is not JSON, a status outside 200-599, a header with a line break); the
    client got a 500 with that cid and the worker went on serving. The entry holds the
    traceback and the input (secrets redacted).
    `journalctl ZATO_CID=@ZATO_CID@` shows everything that call logged.''')
DEPLOY_FAILED = _event('DEPLOY_FAILED', logging.ERROR, 'cbb1dabe233f4309b17815c8e33d55e5',
                       'zato-daemon could not deploy a module', '''
    A module the master had accepted (it imported cleanly in a disposable process) failed to
    import in a worker anyway: the worker's environment differs (a path, a variable, a file
    the module reads at import). The version deployed before, if any, keeps serving in that
    worker. The entry names the file and the line.''')
SERVICE_DEPLOYED = _event('SERVICE_DEPLOYED', logging.INFO, '175f3e1480774a2586c29a5e76d57374',
                          'zato-daemon deployed a module', '''
    A service module was deployed; the message gives its path, its SHA-256 and its services.
    Compare the hash with `sha256sum FILE` of a local copy to know which version runs.''')

DUMP_WRITTEN = _event('DUMP_WRITTEN', logging.INFO, '66729019367b4defa9a8bcb3610d37a0',
                      'zato-daemon wrote a thread and greenlet dump', '''
    The process @ZATO_DUMP_PID@ (@ZATO_ROLE@) of the server @ZATO_SERVER_DIR@ wrote the stack of
    each of its threads and greenlets, with the arguments and local variables of every frame
    (values of secret-named variables redacted), because it received SIGURG (`zato-daemon dump
    DIR`, `systemctl kill -s SIGURG zato-daemon`) or because the master found it hung. Greenlets
    with the same stack are shown once, with their count. Read it with
    `journalctl -u zato-daemon ZATO_DUMP_ID=@ZATO_DUMP_ID@` (add `-o cat --all` to print it whole);
    the same text is in server.log, between lines naming the dump id @ZATO_DUMP_ID@.''')

WORKER_HUNG = _event('WORKER_HUNG', logging.ERROR, 'cc04eaaad461431c83651d39845d54b8',
                     'zato-daemon worker hung and was replaced', f'''
    A worker's gevent hub sent no heartbeat for hang_timeout seconds: something blocks it,
    such as a service spinning the CPU without yielding or a blocking call gevent does not
    patch. The master had it write a dump of its threads and greenlets (the entry with
    MESSAGE_ID {DUMP_WRITTEN.message_id} from the same pid shows the frame that
    blocked), then killed it and started a new one. The requests it was serving failed.''')

SLOW_RESPONSE = _event('SLOW_RESPONSE', logging.WARNING, '65c5540ab07a4e47b44b5ad167bb38c5',
                       'zato-daemon service answered slowly', '''
    The service @ZATO_SERVICE@ took longer than its slow threshold to serve the call
    @ZATO_CID@. Its request and response are stored: `zato-daemon slow DIR @ZATO_SERVICE@`
    lists them, so calls that are slow can be compared with ones that are not.''')

ACCEPT_FAILED = _event('ACCEPT_FAILED', logging.WARNING, '91ae3677c88741ab83820289ef52d47a',
                       'zato-daemon worker could not accept connections', '''
    A worker's accept() failed, most often because the process ran out of file descriptors
    (EMFILE) or the system did (ENFILE). New clients wait in the listen backlog, or are refused
    once it is full, while the worker keeps serving the connections it has; it tries again
    by itself within a quarter of a second. The entry gives the error, how often it happened
    since the last such entry, the open connections and the descriptor limit. Raise
    LimitNOFILE= in the unit, or lower max_connections so that connections past it get a 503
    instead.''')
CONNECTIONS_LIMITED = _event('CONNECTIONS_LIMITED', logging.WARNING, '83d678737660437c8f87429ef6ac3132',
                             'zato-daemon worker refused connections over max_connections', '''
    A worker had max_connections client connections open and answered new ones with
    503 Service Unavailable, closing them; the connections it had were served as usual. The
    entry says how many were refused since the last such entry. Many idle or slow clients
    (or an attack) hold the connections: see header_timeout, body_timeout and
    keep_alive_timeout, or raise max_connections and the unit's LimitNOFILE=.''')
WORKER_RECYCLED = _event('WORKER_RECYCLED', logging.INFO, '6fd4068351f847a59299f43cabcf2b36',
                         'zato-daemon worker replaced after max_requests', '''
    A worker served its share of max_requests and was replaced as a reload replaces
    workers: the new one serves first, then the old one finishes its requests and exits. No
    request is lost. Nothing to do.''')
WORKER_MEMORY_RECYCLED = _event('WORKER_MEMORY_RECYCLED', logging.WARNING, 'a5bf7f5eb37f4c04891568a72979e0e8',
                                'zato-daemon worker replaced over max_worker_memory', '''
    A worker's resident memory grew past max_worker_memory, so it was replaced as a reload
    replaces workers: the new one serves first, then the old one finishes its requests and
    exits. No request is lost, but something grows: a cache without a size limit, or a leak
    in a service. Compare `zato-daemon dump` output of an old and a new worker, or raise the
    limit if the memory is expected.''')

DEPLOY_REFUSED = _event('DEPLOY_REFUSED', logging.ERROR, '266d67c0b29c47e29d728e08365b8162',
                        'zato-daemon refused to deploy a service module', '''
    A new or changed module (in the pickup directory, or configured in server.conf) was
    imported first in a disposable process, and failed there: it raised, exited, was still
    importing after the time limit, defines no service, or defines a service name another
    module already holds. Nothing changed in the workers: the version deployed before, if
    any, keeps serving. The entry names the file and the reason; fix the file and it is
    tried again.''')
PICKUP_SCAN_FAILED = _event('PICKUP_SCAN_FAILED', logging.WARNING, 'f95631560ba647d792ddc3fbc57eb54f',
                            'zato-daemon could not list its pickup directory', '''
    Listing the pickup directory failed (a permission, a missing directory, no file
    descriptors left). Nothing was deployed or undeployed because of it: what serves keeps
    serving, and the next scan tries again. Repeats are counted into one entry a minute.''')
SPAWN_FAILED = _event('SPAWN_FAILED', logging.ERROR, 'd47c54888638447faf9b7477a0c2204d',
                      'zato-daemon could not start a worker process', '''
    fork() of a new worker failed, most often for a process or memory limit (EAGAIN,
    ENOMEM: see TasksMax= and LimitNPROC= of the unit). The master keeps serving with the
    workers it has and tries again with a growing delay; the entry says when. Once the limit
    lifts, the worker starts and nothing more is needed.''')
STARTUP_CALLABLE_FAILED = _event('STARTUP_CALLABLE_FAILED', logging.ERROR, '39a204e062fa4a8bac29cae122fefa16',
                                 'zato-daemon startup callable failed', '''
    A callable of [misc] startup_callable raised, exited or was still running after
    startup_callable_timeout in the phase named. At start the server does not start; at a
    reload the reload is refused and the previous configuration keeps serving, and the
    master went on supervising its workers meanwhile.''')
RUNTIME_REPAIRED = _event('RUNTIME_REPAIRED', logging.WARNING, '470ab23b5725403592c2e5c3105fac1e',
                          'zato-daemon recreated a runtime or state file', '''
    A file the server keeps (the admin socket, the pidfile, master.json, a database) or its
    directory was deleted while the server ran, by hand or by a clean-up job (tmpfiles.d,
    rm -rf of /run). The server noticed and recreated it; the entry names it. Requests were
    served meanwhile; whatever the deleted database held is gone. Find out what deletes it.''')
CLUSTER_JOINED = _event('CLUSTER_JOINED', logging.INFO, '131f5712f9eb4e15993bf708eba096c2',
                        'zato-daemon registered as a member of its cluster', '''
    The master reached the cluster's Redis ([cluster] redis_url, shown with its credentials
    redacted) and registered this member, at start or after Redis could not be reached;
    it refreshes the record every third of heartbeat_ttl. zato-daemon cluster DIR lists the
    members. Nothing to do.''')
CLUSTER_UNREACHABLE = _event('CLUSTER_UNREACHABLE', logging.WARNING, 'c31cd86aaed64f198d87c987cfee4853',
                             'zato-daemon cannot reach the cluster\'s Redis', '''
    The master could not register this member in the cluster's Redis: it is down, does not
    answer within 2 s, refuses the password, or the URL names the wrong place. The entry
    gives the URL (credentials redacted) and the error. The server goes on serving what it
    has deployed; other members stop listing it once its last heartbeat expires. The master
    tries again after 1 s, doubling to every 30 s, says nothing more while it fails, and
    logs CLUSTER_JOINED when it succeeds; zato-daemon info shows the state and the last
    error meanwhile.''')
CLUSTER_DEPLOY_ACCEPTED = _event('CLUSTER_DEPLOY_ACCEPTED', logging.INFO, '37f6891237cb4919a259cb6b5124fa4b',
                                 'zato-daemon took a module deployed to its cluster', '''
    A module published with zato-daemon deploy (or removed with zato-daemon undeploy)
    carried a signature that verifies with this member's cluster key ([cluster] key_file).
    The master wrote it into the pickup directory (or removed it from there), where it is
    checked in a disposable process like any pickup file: DEPLOY_REFUSED follows if it
    does not import cleanly. The command that published it reports each member's outcome.
    Nothing to do.''')
CLUSTER_DEPLOY_REFUSED = _event('CLUSTER_DEPLOY_REFUSED', logging.ERROR, 'e35038d7e5d840979d2be6e7f91ab23d',
                                'zato-daemon could not take a module deployed to its cluster', '''
    A module published to the cluster verified, but this member could not write it into
    (or remove it from) its pickup directory; the entry gives the path and the error. The
    version it had keeps serving. Fix the directory (permissions, space) and deploy again.''')
CLUSTER_SIGNATURE_REFUSED = _event('CLUSTER_SIGNATURE_REFUSED', logging.ERROR, '6c5f3382c34e4af9962c866ce7f76195',
                                   'zato-daemon refused a cluster module whose signature does not verify', '''
    A module record in the cluster's Redis did not verify with this member's cluster key
    ([cluster] key_file): signed with another key, altered after it was signed, or written
    by something else than zato-daemon deploy. Nothing of it was written or run. If every
    member refuses it, whoever has write access to Redis wrote it: check who can reach
    Redis. If only this member refuses, its key file differs from the publisher's: give
    every member the same key and deploy again.''')

DUMP_FAILED = _event('DUMP_FAILED', logging.WARNING, '184a80d0c20c40a4b4776f054b51cc74',
                     'zato-daemon could not write part of a dump', '''
    A dump of the process @ZATO_DUMP_PID@ could not be written to one of its places
    (server.log, the journal, or the dump record `zato-daemon diagnose` reads); the entry
    names which and the error. The other places still got it: each is written on its own.
    A full or read-only disk and a missing logs directory are the usual causes. Said at most
    once a minute per place, with the number of failures since; every failure is counted in
    zato_dump_failures_total.''')
CLUSTER_DUMP_REQUESTED = _event('CLUSTER_DUMP_REQUESTED', logging.INFO, '0032c47bec0a4b71909f873ad27a0b02',
                                'zato-daemon dumps because its cluster asked', f'''
    zato-daemon dump DIR --cluster, run on some member, asked every member of the cluster
    to dump its threads and greenlets. This member did: its dump entries (MESSAGE_ID
    {DUMP_WRITTEN.message_id}) follow, and the command printed where to find them on each host.
    Nothing to do.''')

CLUSTER_LEFT = _event('CLUSTER_LEFT', logging.INFO, '954d26a5e46a42c1b7d9f2b857b5f155',
                      'zato-daemon left its cluster', '''
    This member stopped, or a reload emptied [cluster] redis_url: it removed its record from the cluster's Redis, so zato-daemon cluster no
    longer lists it; when Redis did not answer, the record expires after heartbeat_ttl
    instead. Modules deployed to the cluster stay in its pickup directory and keep serving.''')
CLUSTER_CATCHING_UP = _event('CLUSTER_CATCHING_UP', logging.INFO, '6609f8f6ee8d4dd0875f0c2deddae996',
                             'zato-daemon is taking the cluster deploys it missed', '''
    At start, or after Redis could not be reached, this member compared the latest version of
    every module kept in the cluster's Redis with its pickup directory, and found modules to
    deploy or remove (deployed or undeployed while it was away). The entry gives their
    numbers; CLUSTER_DEPLOY_ACCEPTED follows for each. Nothing to do.''')

CLUSTER_DUMP_REFUSED = _event('CLUSTER_DUMP_REFUSED', logging.WARNING, 'e333ae8043224ac0ab2cbef9daffedf6',
                              'zato-daemon ignored a dump request of its cluster', '''
    A request on the cluster's dump stream (written by zato-daemon dump DIR --cluster) did
    not verify with this member's cluster key ([cluster] key_file), was too old, or this
    member has no key; nothing was dumped. The entry gives the reason, and how many were
    ignored since the last such entry (one a minute at most). If only this member refuses,
    give it the same key as the others; if every member refuses, something other than
    zato-daemon writes to Redis: check who can reach it.''')
CLUSTER_DIAGNOSTICS_UNREADABLE = _event('CLUSTER_DIAGNOSTICS_UNREADABLE', logging.WARNING, '46ce04963ef0461bb79e40fcaf0ff10c',
                                        'zato-daemon cannot ship its slow calls and samples to its cluster', '''
    The master's cluster thread could not read this member's diagnostics database, so its
    slow calls and samples are not shipped to the cluster's Redis (zato-daemon slow
    --cluster and samples --cluster do not show them). The entry gives the error; the
    thread tries again every few seconds and says when it can read the database again.
    Requests are served meanwhile.''')

CLUSTER_REDIS_REFUSED = _event('CLUSTER_REDIS_REFUSED', logging.WARNING, 'f09fe6055fbd46abb7457592be73afb0',
                               'zato-daemon: the cluster\'s Redis refused a command', '''
    The cluster's Redis answered one of this member's threads with an error: it is full
    (maxmemory with the noeviction policy), a read-only replica, or one of the cluster's keys
    holds another type than zato-daemon writes there (something else wrote it). The entry says
    which command and the error; it is said at most once a minute per command, with the count.
    The member keeps its connection and goes on with the rest: shipping diagnostics, taking
    dump requests, or taking deploys, whichever still works. Give Redis memory, point
    redis_url at the primary, or remove the foreign key.''')

EVENTS = (SERVER_READY, SERVER_STOPPED, SERVER_HALTED, START_FAILED, RELOAD_COMPLETE, RELOAD_REFUSED,
          RELOAD_FAILED, WORKER_EXITED, WORKER_BOOT_FAILED, WORKER_BOOT_TIMEOUT, WORKERS_KILLED,
          SERVICE_FAILED, DEPLOY_FAILED, SERVICE_DEPLOYED, WORKER_HUNG, DUMP_WRITTEN, SLOW_RESPONSE,
          ACCEPT_FAILED, CONNECTIONS_LIMITED, WORKER_RECYCLED, WORKER_MEMORY_RECYCLED, DEPLOY_REFUSED,
          PICKUP_SCAN_FAILED, SPAWN_FAILED, STARTUP_CALLABLE_FAILED, RUNTIME_REPAIRED,
          CLUSTER_JOINED, CLUSTER_UNREACHABLE, CLUSTER_DEPLOY_ACCEPTED, CLUSTER_DEPLOY_REFUSED,
          CLUSTER_SIGNATURE_REFUSED, DUMP_FAILED, CLUSTER_DUMP_REQUESTED,
          CLUSTER_LEFT, CLUSTER_CATCHING_UP, CLUSTER_DUMP_REFUSED, CLUSTER_DIAGNOSTICS_UNREADABLE,
          CLUSTER_REDIS_REFUSED)
