"""Every configuration setting, in one table: file, section, name, validator, default and doc.

Rule 1: a key exists only if it has an entry in SETTINGS (or lives in a dynamic section in
SECTIONS). The loader, the in-place assignments of startup callables, docs/config.md and the
tests that check the shipped etc/zato-daemon/*.conf all read this table, so adding a key here
is the whole job.

Rule 2: defaults are written as INI text, exactly as they appear in the shipped files, and
every default goes through its own validator like any value read from a file.

Rule 3: every numeric value has a minimum and a maximum (its validator says which, and the
docs and the shipped files show them), so no value start or a reload cannot use gets past the
loader.

The validators are in validators.py: each turns INI text (or, for in-place assignments, a
native Python value) into the typed value, or raises InvalidValue saying what was expected.
"""

from dataclasses import dataclass
from inspect import cleandoc

from zato_daemon.config.validators import (
    Boolean, Buckets, CacheFields, Choice, FilePath, Integer, ListOf, Port, RedisUrl, Seconds, Size, Text,
    Unsupported, Validator, WebOrigin, Workers, cluster_name, dotted_name, service_name, url_path)

CONFIG_FILES = ('server.conf', 'pickup.conf', 'simple-io.conf', 'sso.conf')
REQUIRED_FILES = ('server.conf',)
# A configuration file is a few KiB (the shipped server.conf, all comments, is under 20):
# anything much larger is the wrong file, and is not read into memory whole.
MAX_FILE_SIZE = 1024 * 1024

# The table ####################################################################################


@dataclass(frozen=True)
class Setting:
    """One key of one section of one file, with its validator, INI-text default and doc.

    The first line of `doc` is the short help; the rest is the full explanation.
    """

    file: str
    section: str
    name: str
    validator: Validator
    default: str
    doc: str

    @property
    def type(self):
        """The type's name as the docs show it."""
        return self.validator.type_name

    @property
    def key(self):
        """The key as error messages name it: '[section] name'."""
        return f'[{self.section}] {self.name}'

    @property
    def short_doc(self):
        """The doc's first line."""
        return self.doc.splitlines()[0]

    def default_value(self):
        """Returns the default, typed. Computed on each call: 'auto' depends on the machine."""
        return self.validator(self.default)


@dataclass(frozen=True)
class SectionSpec:
    """One section of one file. A dynamic section has no fixed keys: any key passing
    `key_validator` may appear, with a value passing `value_validator`."""

    file: str
    name: str
    doc: str
    key_validator: Validator = None
    value_validator: Validator = None

    @property
    def is_dynamic(self):
        """True if the section's keys are free-form rather than declared in SETTINGS."""
        return self.key_validator is not None


def _doc(text):
    return cleandoc(text)


# Bounds several keys share. Nothing the server times needs more than a day: a longer timeout
# means the server never gives up on anything, and only hides a stuck client or worker.
DAY = 86400
DAY_MS = DAY * 1000
KIB, MIB, GIB = 1024, 1024 ** 2, 1024 ** 3
# Beyond a few workers per CPU, more only add memory and contention; 256 covers the largest
# machines auto can count while keeping a typo (2000) from forking a server to death.
MAX_WORKERS = 256
# A worker holds a whole request body in memory (and the JSON parsed from it): past 1G, one
# request can take a worker down by itself.
MAX_BODY = GIB
# Histogram buckets: each is a series per service.
MAX_BUCKETS = 50


FILE_DOCS = {
    'server.conf': _doc("""
        The server's own settings: where it listens, how many workers it runs, which services it
        deploys and which URL paths call them. The only file a server directory must have."""),
    'pickup.conf': _doc("""
        Hot deployment: where service modules are dropped to be deployed without a restart."""),
    'simple-io.conf': _doc("""
        How responses are serialized. Named after Zato's Simple IO (SIO) layer."""),
    'sso.conf': _doc("""
        Zato's single sign-on. Not part of this server: the file exists only so that startup
        callables receive `sso_config` as they do in Zato."""),
}

SECTIONS = (
    SectionSpec('server.conf', 'main', 'Listening socket, worker processes and their limits.'),
    SectionSpec('server.conf', 'component_enabled', 'Optional components, each on or off.'),
    SectionSpec('server.conf', 'services', 'Service modules deployed at start.'),
    SectionSpec('server.conf', 'channels', _doc("""
        HTTP channels: one line per URL path, `/path = service.name`.

        Each key is a URL path starting with '/', each value the name of the service a request
        to that path invokes. Only '=' separates a key from its value, so paths may hold ':'.
        Empty by default: no channel, no HTTP endpoint. For example: /echo = demo.echo"""),
        key_validator=url_path(), value_validator=service_name()),
    SectionSpec('server.conf', 'logging', 'What the server logs, and where.'),
    SectionSpec('server.conf', 'loggers', _doc("""
        Levels of single loggers: one line per logger, `dotted.name = LEVEL`.

        Each key is a logger name (a service logs as zato_daemon.service.<service name>, the
        HTTP layer as zato_daemon.http), each value one of DEBUG, INFO, WARNING, ERROR or
        CRITICAL. A logger set here logs at its own level whatever [logging] level says;
        records still need a destination. Empty by default. For example:
        zato_daemon.http = DEBUG"""),
        key_validator=dotted_name(), value_validator=Choice('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')),
    SectionSpec('server.conf', 'caches', _doc("""
        Built-in caches created at start: one line per cache, `name = field=value, ...`.

        The fields are those of zato.cache.builtin.create: is_default, max_size (entries),
        max_item_size (bytes of JSON), extend_expiry_on_get, extend_expiry_on_set,
        sync_method (no-sync: each worker its own; in-background: a change is seen by every
        worker within 100 ms), persistent_storage (no-persistent-storage, or sql: kept in the
        state directory across restarts), is_active, cache_type (builtin), scope (local: this
        host's; cluster: kept in the cluster's Redis, shared by every member and worker; needs
        [cluster] redis_url). Omitted fields take their defaults; every worker creates the
        caches before it deploys services. Services use them as self.caches['name']
        (self.cache is the default one). For example:
        sessions = max_size=50000, sync_method=in-background, persistent_storage=sql"""),
        key_validator=service_name(), value_validator=CacheFields()),
    SectionSpec('server.conf', 'diagnostics', 'Sample and slow calls kept for troubleshooting.'),
    SectionSpec('server.conf', 'slow_thresholds', _doc("""
        Slow thresholds of single services: one line per service, `name = milliseconds`.

        Overrides the service class's own slow_threshold attribute and [diagnostics]
        slow_threshold, and has the same range: from 1 to 86400000 (a day). For example:
        crm.customer.get = 250"""),
        key_validator=service_name(), value_validator=Integer(1, DAY_MS)),
    SectionSpec('server.conf', 'metrics', 'Prometheus metrics, served by the master on a port of their own.'),
    SectionSpec('server.conf', 'cluster', 'Membership of a cluster of servers sharing one Redis (docs/cluster.md).'),
    SectionSpec('server.conf', 'misc', 'Startup callables and where user code is imported from.'),
    SectionSpec('pickup.conf', 'hot_deploy', 'The pickup directory and how it is watched.'),
    SectionSpec('simple-io.conf', 'json', 'JSON serialization of responses.'),
    SectionSpec('sso.conf', 'main', 'Single sign-on, which this server does not provide.'),
)

# Order per entry: file, section, name, validator (also gives the type), default as INI text, doc.
SETTINGS = (
    Setting('server.conf', 'main', 'host', Text(), '127.0.0.1', _doc("""
        Address to listen on.

        An IPv4 or IPv6 address, or a host name resolved once at start. 127.0.0.1 accepts
        connections from this machine only; 0.0.0.0 (or ::) listens on every interface, which
        normally belongs behind a firewall or a reverse proxy. A name must resolve, and every
        address must be one of this machine's: start, reload and check-config refuse others.""")),
    Setting('server.conf', 'main', 'port', Port(), '17010', _doc("""
        TCP port to listen on.

        Ports below 1024 need the CAP_NET_BIND_SERVICE capability, which the unprivileged zato
        user the server runs as does not have. Each server directory needs its own port.""")),
    Setting('server.conf', 'main', 'workers', Workers(MAX_WORKERS), 'auto', _doc("""
        Number of worker processes; auto means one per CPU.

        Each worker is a separate process with its own gevent hub and its own copy of every
        deployed service, and all of them accept connections on the shared socket. auto counts
        the CPUs this process may run on (its CPU affinity, which systemd's CPUAffinity= and
        AllowedCPUs= narrow), not all the CPUs of the machine, and at most 256. A worker runs
        Python code on one CPU at a time, so more workers than CPUs rarely helps.""")),
    Setting('server.conf', 'main', 'graceful_timeout', Seconds(DAY), '30', _doc("""
        Seconds in-flight requests may take to finish on stop or reload.

        On stop (SIGTERM) and reload (SIGHUP) a worker stops accepting connections and lets the
        requests it has started finish. After this many seconds it is killed and requests still
        running are lost. The systemd unit's TimeoutStopSec= must be longer than this.""")),
    Setting('server.conf', 'main', 'keep_alive_timeout', Seconds(DAY), '60', _doc("""
        Seconds an idle keep-alive connection is kept open.

        After a response, the connection waits this long for the client's next request, then
        the server closes it; bytes that start no request do not count. A client that stops
        reading a response is closed after this long too. A proxy or client pooling
        connections to this server should use a shorter idle timeout, or it may send a
        request on a connection the server is just closing.""")),
    Setting('server.conf', 'main', 'max_request_size', Size(1, MAX_BODY), '1M', _doc("""
        Largest request body accepted, in bytes.

        A plain number of bytes or a number with a K, M or G suffix, in binary multiples
        (1K = 1024, 1M = 1048576). A request with a bigger body is answered with 413 Content
        Too Large and no service is invoked. The whole body is held in memory, so this also
        bounds the memory a single request can take, and it is at most 1G.""")),
    Setting('server.conf', 'main', 'header_timeout', Seconds(DAY), '20', _doc("""
        Seconds a client has to send a request's whole header section.

        Counted from the first byte of the request, however the bytes trickle in: a client
        that sends the request line and headers a byte at a time is answered with 408 Request
        Timeout and the connection is closed. The time before that first byte is the idle
        time keep_alive_timeout bounds.""")),
    Setting('server.conf', 'main', 'body_timeout', Seconds(DAY), '30', _doc("""
        Seconds a client has to send a request's body, plus time earned by body_min_rate.

        Counted from the end of the header section. Each body_min_rate bytes received add one
        second, so a client that sends at least body_min_rate bytes a second is never cut
        off, whatever the size of its body; a body that receives nothing for body_timeout is
        cut off whatever it earned. Either way the client gets 408 Request Timeout and the
        connection is closed.""")),
    Setting('server.conf', 'main', 'body_min_rate', Size(1, MAX_BODY), '8K', _doc("""
        Bytes of request body that earn a slow client one more second (see body_timeout).

        A plain number of bytes or one with a K, M or G suffix. With the defaults, a 1M body
        may take 30 s plus 128 s; a client sending one byte every few seconds is cut off
        after 30 s.""")),
    Setting('server.conf', 'main', 'max_connections', Integer(1, 1048576), '1000', _doc("""
        Open client connections per worker; more get 503 Service Unavailable.

        A worker past this many connections answers each new one with 503 and Retry-After
        and closes it, and goes on serving the connections it has; a WARNING says so (at
        most once a minute, with the count). Each connection holds a file descriptor: the
        server raises its soft descriptor limit to the hard one at start (the packaged
        units set LimitNOFILE=65536), and warns at start when the limit is too low for
        this many connections in every worker. The admin socket is not counted. At most
        1048576, the most open files Linux gives one process by default (fs.nr_open).""")),
    Setting('server.conf', 'main', 'max_json_depth', Integer(1, 500), '64', _doc("""
        Deepest nesting of arrays and objects accepted in a JSON request body.

        A body nested deeper is answered with 400 Bad Request naming the limit, and no
        service is invoked. Deep nesting costs stack depth in every piece of code that walks
        the payload (json, logging, redaction), so the limit keeps one request from making
        them fail.""")),
    Setting('server.conf', 'main', 'allowed_origins', ListOf(WebOrigin()), '', _doc("""
        Web origins whose pages may call services from a browser; empty means none.

        Browsers send an Origin header with the cross-site requests a web page makes, and
        they send JSON POSTs only after asking with an OPTIONS preflight. A request carrying
        an Origin not listed here is answered with 403 Forbidden, and so is its preflight,
        so no web page can call services on this server (on 127.0.0.1 included) unless its
        origin is listed. Each entry is scheme://host[:port], for instance
        https://portal.example.com, compared as browsers send it (lower case, no default
        port); there is no wildcard. Clients other than browsers (curl, other servers) send
        no Origin and are not affected.""")),
    Setting('server.conf', 'main', 'backlog', Integer(1, 65535), '2048', _doc("""
        Listen backlog: connections the kernel queues before the server accepts them.

        Passed to listen(2), at most 65535. Linux silently caps it at net.core.somaxconn
        (4096 on Debian 12). When a burst of new connections exceeds it, clients see dropped
        connection attempts and retry after a delay.""")),
    Setting('server.conf', 'main', 'cluster_id', Integer(1, 2 ** 31 - 1), '1', _doc("""
        Cluster ID that services see as server.cluster_id.

        This server forms no cluster; the number is only handed to services, as Zato does, for
        code that passes it on (for instance to zato.cache.builtin.* services). At most
        2147483647, so that it fits the 32-bit columns Zato's own databases keep it in.""")),
    Setting('server.conf', 'main', 'worker_boot_timeout', Seconds(DAY), '60', _doc("""
        Seconds a new worker has to deploy its services and start serving.

        Counted from the moment the worker is forked. A worker that takes longer is killed and
        treated as having failed to boot, so that a start or reload fails instead of waiting
        forever. Raise it if services do slow work when imported or in AFTER_STARTED startup
        callables.""")),
    Setting('server.conf', 'main', 'hang_timeout', Seconds(DAY, minimum=2), '30', _doc("""
        Seconds without a heartbeat after which a worker counts as hung.

        Each worker's gevent hub sends the master a heartbeat every second. A hub that sends
        none for this long is blocked (a service spinning the CPU without yielding, a call
        gevent does not make cooperative): the master logs an ERROR, has the worker write a
        dump of its threads and greenlets (which needs no hub), then kills it and starts a
        new one. The other workers keep serving. At least 2: with less, one late heartbeat
        would count a healthy worker as hung.""")),
    Setting('server.conf', 'main', 'max_requests', Integer(0, 10 ** 9), '0', _doc("""
        Requests a worker serves before it is replaced; 0 means never.

        A worker past its limit is replaced the way a reload replaces workers: a new worker
        starts and serves first, then the old one finishes its requests and exits, so no
        request is lost. This bounds what a slow leak in a service can grow to. See
        max_requests_jitter, so that workers are not all replaced at once.""")),
    Setting('server.conf', 'main', 'max_requests_jitter', Integer(0, 100), '10', _doc("""
        Percent by which each worker's max_requests is raised at random.

        Each worker draws its own limit between max_requests and max_requests plus this
        share of it, so that workers started together are not replaced together.""")),
    Setting('server.conf', 'main', 'max_worker_memory', Size(0, 1024 * GIB), '1G', _doc("""
        Resident memory above which a worker is replaced; 0 means no limit.

        A plain number of bytes or one with a K, M or G suffix. The master reads each
        worker's resident set size every second; a worker over the limit is replaced the
        way a reload replaces workers (the new one serves first, the old one finishes its
        requests), at most once every 10 seconds per worker, and a WARNING names it. This
        is a ceiling for leaks, not a hard limit: a service that allocates without bound
        inside one call is stopped only by the kernel, or by MemoryMax= in the unit.""")),
    Setting('server.conf', 'component_enabled', 'hot_deploy', Boolean(), 'true', _doc("""
        Watch the pickup directory and deploy service modules dropped into it.

        When true, a .py file that appears or changes in the pickup directory (see pickup.conf)
        is deployed without a restart: the master imports it first in a disposable process,
        and every worker then deploys the same accepted version. Set it to false where
        services must change only through [services] and a restart or reload.""")),
    Setting('server.conf', 'component_enabled', 'samples', Boolean(), 'true', _doc("""
        Keep sample requests and responses of every service.

        Each worker stores the last calls of each service (at most one a sample_interval,
        and failed ones on their own clock) in the diagnostics database, redacted and size-capped, written in the
        background: compare them between environments with `zato-daemon samples DIR SERVICE
        --json`. See [diagnostics].""")),
    Setting('server.conf', 'component_enabled', 'slow_responses', Boolean(), 'true', _doc("""
        Keep the requests and responses of calls slower than their threshold.

        A call that takes longer than its service's slow_threshold (milliseconds) is stored
        in the diagnostics database and logged as a WARNING; `zato-daemon slow DIR` lists
        them. See [diagnostics] and [slow_thresholds].""")),
    Setting('server.conf', 'services', 'paths', ListOf(FilePath()), '', _doc("""
        Files or directories of service modules to deploy at start.

        Separate entries with commas or line breaks (indent continuation lines). A directory
        stands for the .py files in it. A relative path is relative to the server directory.
        Each entry must exist: start, reload and check-config refuse a missing one.""")),
    Setting('server.conf', 'services', 'modules', ListOf(dotted_name()), '', _doc("""
        Importable modules holding services, by dotted name.

        Separate entries with commas or line breaks (indent continuation lines), for instance
        zato_daemon.examples.echo. They are imported from the Python path like any installed
        package, so they suit services shipped as Debian or Python packages.""")),
    Setting('server.conf', 'logging', 'level', Choice('DEBUG', 'INFO', 'WARNING', 'ERROR',
                                                      'CRITICAL'), 'INFO', _doc("""
        Lowest level of the records logged.

        One of DEBUG, INFO, WARNING, ERROR or CRITICAL, in any case. It applies to every log
        destination alike. DEBUG adds tracebacks and details meant for developers.""")),
    Setting('server.conf', 'logging', 'journal', Choice('AUTO', 'YES', 'NO'), 'auto', _doc("""
        Whether records go to the systemd journal: auto, yes or no.

        auto sends them when systemd started the server (it sets JOURNAL_STREAM or
        NOTIFY_SOCKET), which is what the packaged units do. Each record becomes one journal
        entry with fields admins filter on: PRIORITY, ZATO_CID, ZATO_SERVICE, ZATO_WORKER and,
        for the events docs/logging.md lists, MESSAGE_ID. When records go to the journal,
        nothing is written to stdout, which systemd also sends there.""")),
    Setting('server.conf', 'logging', 'server_log', FilePath(allow_empty=True), '', _doc("""
        Path of server.log; empty means server.log in the logs directory.

        The logs directory is /var/log/zato-daemon (or /var/log/zato-daemon/NAME) under the
        packaged units, logs/ in the server directory otherwise. A relative path is relative
        to the server directory. The file is reopened when logrotate moves it, with no
        restart. Its directory must exist, unless it is the logs directory, which start
        creates.""")),
    Setting('server.conf', 'logging', 'secret_names', ListOf(Text()), '', _doc("""
        More names whose values are secret, in logs, dumps, samples and slow calls.

        Comma-separated parts of names, compared as the built-in ones are: in lower case with
        '-', '_', '.' and spaces left out, anywhere in the name; for instance iban,
        card_number makes `customer_iban` and `CardNumber` secret. The built-in ones
        (password, secret, token, api_key, auth, cookie, session, credentials, private_key,
        signature, dsn, key, pin ...) always apply; docs/logging.md lists them and the other
        rules. Empty by default.""")),
    Setting('server.conf', 'logging', 'dump_max_size', Size(KIB, 64 * MIB), '512K', _doc("""
        Largest size of one thread and greenlet dump, in bytes (K, M, G suffixes).

        SIGURG (or `zato-daemon dump`) makes every process of the server write a dump to
        server.log and one journal entry: every thread and greenlet with its frames,
        arguments and local variables, identical stacks grouped. A dump that would be larger
        stops at this size and says what it left out. At least 1K, room for that note; at
        most 64M, since the whole dump is held in memory and sent as one journal entry.""")),
    Setting('server.conf', 'diagnostics', 'database', FilePath(allow_empty=True), '', _doc("""
        Path of the diagnostics database; empty means diagnostics.sqlite3 in the state directory.

        A SQLite file all workers write to in the background (samples and slow calls), which
        the CLI reads, also while the server is stopped. A relative path is relative to the
        server directory. It is kept across restarts and package upgrades.""")),
    Setting('server.conf', 'diagnostics', 'slow_threshold', Integer(1, DAY_MS), '2000', _doc("""
        Milliseconds after which a call counts as slow, for services that set no threshold.

        A service class may set its own (`slow_threshold = 500`), and [slow_thresholds]
        overrides both.""")),
    Setting('server.conf', 'diagnostics', 'slow_keep', Integer(1, 100_000), '100', _doc("""
        Slow calls kept per service; older ones are deleted.

        Counted over all workers: the database keeps the newest ones of each service.""")),
    Setting('server.conf', 'diagnostics', 'samples_keep', Integer(1, 100_000), '20', _doc("""
        Sample calls kept per service; older ones are deleted.

        Counted over all workers: the database keeps the newest ones of each service.""")),
    Setting('server.conf', 'diagnostics', 'sample_interval', Integer(0, DAY_MS), '1000', _doc("""
        Milliseconds between two samples of one service in one worker (0 keeps every call).

        A quiet service has every call sampled; a busy one is not stored on every call. Failed
        calls are sampled on their own clock, so the last failures are kept even when
        successful calls were sampled just before.""")),
    Setting('server.conf', 'diagnostics', 'max_size', Size(256 * KIB, 64 * GIB), '64M', _doc("""
        Largest size of the diagnostics database; the oldest calls go first beyond it.

        A plain number of bytes or one with a K, M or G suffix, from 256K to 64G. The database
        is cut back to it after each write, whatever the per-service limits allow; its
        write-ahead log beside it adds up to a quarter of it (at most 4 MiB).""")),
    Setting('server.conf', 'metrics', 'enabled', Boolean(), 'true', _doc("""
        Count what the server does and serve it at /metrics for Prometheus.

        Each worker counts its calls, responses and cache uses and reports them to the master
        once a second; the master keeps the totals across workers that are replaced, recycled
        or killed (a worker killed with SIGKILL loses at most its last second), serves them
        in the Prometheus text format at http://host:port/metrics, and feeds zato-daemon top.
        Off: nothing is counted, no port is opened, and top has nothing to show.""")),
    Setting('server.conf', 'metrics', 'host', Text(), '127.0.0.1', _doc("""
        Address the metrics listener binds to.

        127.0.0.1 lets only this machine scrape. The metrics name services and caches but
        carry no payload; a Prometheus server on another machine needs an address it
        reaches, which normally belongs behind a firewall.""")),
    Setting('server.conf', 'metrics', 'port', Port(), '17011', _doc("""
        TCP port of the metrics listener.

        Separate from [main] port: scrapes never wait behind service calls, and the answer
        does not depend on the worker the kernel picks. Each server directory needs its own
        port; a port in use stops the start (exit status 69) and refuses a reload.""")),
    Setting('server.conf', 'metrics', 'buckets', Buckets(DAY, MAX_BUCKETS),
            '0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10', _doc("""
        Upper bounds of the zato_service_duration_seconds histogram buckets, in seconds.

        Increasing numbers; a +Inf bucket is always added. Each bound is one series per
        service, so a few well-placed bounds around your latency objectives serve better than
        many. After a reload that changes them, the counts of the workers before it are
        merged into the new bounds, each into the smallest new bound at least its own.""")),
    Setting('server.conf', 'cluster', 'redis_url', RedisUrl(), '', _doc("""
        The Redis of the cluster this server is a member of; empty: a single host.

        redis://[:PASSWORD@]HOST[:PORT][/DB], rediss://... for TLS, or unix:///PATH/TO/SOCKET
        (Redis 7 or Valkey). Empty, the server is a single host and never loads the Redis
        client. Set, the master registers this member in Redis with a heartbeat (zato-daemon
        cluster DIR lists the members and compares their services); a Redis that cannot be
        reached does not stop the server, which retries with a growing delay up to 30 s.
        Logs, info and errors show the URL with its credentials redacted; a password is
        better kept in password_file than here.""")),
    Setting('server.conf', 'cluster', 'password_file', FilePath(allow_empty=True), '', _doc("""
        File holding the Redis password on its first line; empty: none, or the URL's own.

        A relative path is relative to the server directory. Read at start, at each reload
        and by check-config and zato-daemon cluster; a file that cannot be read is a
        configuration error. Make it readable by the server's user only (0640, root:zato
        when installed). Its content is never logged or shown. A password in redis_url as
        well is a configuration error.""")),
    Setting('server.conf', 'cluster', 'name', cluster_name(), 'default', _doc("""
        Name of the cluster: members with the same Redis and name form one cluster.

        Part of every key the cluster keeps in Redis (zato:NAME:...), so one Redis can hold
        several clusters, production and staging say. Letters, digits, '_', '.' and '-'.""")),
    Setting('server.conf', 'cluster', 'host_name', cluster_name(allow_empty=True), '', _doc("""
        Name of this member in the cluster; empty: the machine's host name.

        Unique within the cluster: two servers under one name overwrite each other's
        record. Two servers on one machine, each in its own directory, need a name each.""")),
    Setting('server.conf', 'cluster', 'heartbeat_ttl', Seconds(300, minimum=3), '15', _doc("""
        Seconds a member stays listed after its last heartbeat.

        The master refreshes this member's record every third of it, from a thread of its
        own; a member that stops or dies (kill -9, a host that goes down) is gone from
        zato-daemon cluster within this long. Shorter notices a dead member sooner, at more
        writes to Redis.""")),
    Setting('server.conf', 'cluster', 'key_file', FilePath(allow_empty=True), 'cluster.key', _doc("""
        File holding the cluster key that signs and verifies modules deployed to the cluster.

        A module published with zato-daemon deploy carries an HMAC-SHA256 made with this key;
        a member deploys only modules whose signature verifies with its own copy, so write
        access to Redis alone does not let anyone run code on the hosts. Every member needs
        the same key: at least 32 random bytes, e.g. head -c 32 /dev/urandom | base64 >
        cluster.key; mode 0640, owner root, group zato. A relative path is relative to the
        server directory. Without the file, this member neither publishes nor accepts
        cluster deploys, and says so.""")),
    Setting('server.conf', 'cluster', 'cache_timeout', Seconds(60), '0.5', _doc("""
        Seconds a call on a cluster cache may wait for Redis before it fails.

        A cache defined as cluster lives in Redis; a get, set or delete that has no answer
        within this long raises the cache error services already handle, so a slow or
        unreachable Redis never holds a request longer than this.""")),
    Setting('server.conf', 'misc', 'startup_callable', ListOf(dotted_name()), '', _doc("""
        Callables invoked at startup, by dotted name, in this order.

        Comma-separated, line breaks allowed, e.g. my_startup.update_fs_config,
        my_startup.create_cache. Each is called with a PhaseCtx at every phase and decides
        itself which phases it acts on. FS_CONFIG_ONLY runs in the master, once per start and
        once per reload, before any socket is bound, with kwargs server_config,
        pickup_config, sio_config, sso_config and base_dir; changes made to those objects are
        what the server then uses. AFTER_STARTED runs in every worker each time one starts
        (at start, after a restart, at reload), once its services are deployed and it
        serves, with kwargs server and worker_number. Modules are looked up on the Python
        path, which includes the extlib directories (see extra_paths).""")),
    Setting('server.conf', 'misc', 'startup_callable_failure', Choice('FAIL', 'WARN'), 'fail', _doc("""
        What a failing startup callable does to the start: fail or warn.

        fail (the default) stops the start with an error naming the callable, the phase and
        the cause: exit status 78 when a name does not import or has no such attribute, 70
        when the callable raised (which a restart may cure). warn logs a WARNING and starts
        anyway, as Zato does. At reload, fail refuses the reload.""")),
    Setting('server.conf', 'misc', 'startup_callable_timeout', Seconds(3600, minimum=1), '30', _doc("""
        How long FS_CONFIG_ONLY callables may run, at start and at each reload, in seconds.

        Each callable gets this long. One still running after it is an error naming it and
        the phase: the start fails, or the reload is refused and the workers running go on
        serving. Meanwhile the master goes on replacing workers that exit and answers stop.
        A callable that waits for a slow service at startup needs a longer time here.""")),
    Setting('server.conf', 'misc', 'extra_paths', ListOf(FilePath()), '', _doc("""
        More directories put on the Python path, after the two extlib directories.

        The extlib folder of the server directory and the extlib folder of the state
        directory (/var/lib/zato-daemon/extlib under systemd) are always on the path, before
        the first startup phase, so modules dropped there are importable by startup callables
        and services. A relative path is relative to the server directory.""")),
    Setting('pickup.conf', 'hot_deploy', 'pickup_dir', FilePath(allow_empty=True), '', _doc("""
        Directory watched for hot-deployed service modules.

        Empty means the pickup folder under the state directory (/var/lib/zato-daemon/pickup
        under systemd). A relative path is relative to the server directory. Watched only when
        hot_deploy under [component_enabled] in server.conf is true.""")),
    Setting('pickup.conf', 'hot_deploy', 'poll_interval', Seconds(3600, minimum=0.05), '1.0', _doc("""
        Seconds between two scans of the pickup directory.

        A new or changed module is deployed within about this long (plus its import in the
        disposable process). The master's scan only looks at file sizes and modification
        times, and each worker checks one file (the manifest of the accepted set) as often,
        so a short interval costs little; but at least 0.05, since more often is a busy loop.""")),
    Setting('pickup.conf', 'hot_deploy', 'import_timeout', Seconds(600, minimum=1), '10', _doc("""
        Seconds a new or changed service module may take to import, in a disposable process.

        Before the workers deploy a module, a disposable process imports it to check it, so
        that a module that exits, hangs or crashes at import never reaches them. A module
        still importing after this long is refused with an ERROR naming the file, and the
        version deployed before keeps serving.""")),
    Setting('simple-io.conf', 'json', 'sort_keys', Boolean(), 'false', _doc("""
        Sort the keys of JSON objects in responses.

        Sorted output is stable from one response to the next, which makes responses easier to
        compare, at a small cost per response.""")),
    Setting('simple-io.conf', 'json', 'indent', Integer(0, 16), '0', _doc("""
        Indentation of JSON responses, in spaces; 0 means compact.

        0 writes a response on one line without optional spaces, the smallest form. A positive
        number puts each member on its own line, indented by that many spaces per level, for
        humans reading responses.""")),
    Setting('simple-io.conf', 'json', 'ensure_ascii', Boolean(), 'false', _doc("""
        Escape every non-ASCII character as \\uXXXX.

        false writes text as UTF-8, the charset responses declare. true keeps responses pure
        ASCII, for clients that mishandle UTF-8.""")),
    Setting('sso.conf', 'main', 'is_enabled', Unsupported('SSO'), 'false', _doc("""
        Must stay false: single sign-on is not part of this server.

        Zato's SSO needs Zato's database, which this server does not have. The key exists so
        that a sso.conf copied from Zato loads; true is a configuration error.""")),
)

_SETTINGS_BY_KEY = {(s.file, s.section, s.name): s for s in SETTINGS}
_SECTIONS_BY_KEY = {(s.file, s.name): s for s in SECTIONS}


def find_setting(file, section, name):
    """Returns the Setting for a key, or None if no setting declares it."""
    return _SETTINGS_BY_KEY.get((file, section, name))


def find_section(file, section):
    """Returns the SectionSpec of a section, or None if the file has no such section."""
    return _SECTIONS_BY_KEY.get((file, section))


def sections_of(file):
    """Returns the SectionSpecs of a file, in declaration order."""
    return [spec for spec in SECTIONS if spec.file == file]


def settings_of(file, section):
    """Returns the Settings of one section, in declaration order."""
    return [s for s in SETTINGS if s.file == file and s.section == section]
