"""Everything before the master's main loop: validate, lock, bind; then run the arbiter.

Order matters: a broken config, a second start on the same directory or a port in
use must each fail with one clear line before anything is bound or forked, and
before `start` daemonizes, so the operator sees the error in the terminal.
"""

import logging
import os
from dataclasses import dataclass

from zato_daemon import preflight
from zato_daemon.cache.definition import check_configured_scopes
from zato_daemon.cluster import settings as cluster_settings
from zato_daemon.config import load_config
from zato_daemon.deploy.probe import vet_configured
from zato_daemon.errors import ConfigError
from zato_daemon.logs.setup import check_server_log, configure_logging
from zato_daemon.master.arbiter import Arbiter, bind_metrics
from zato_daemon.paths import ServerDir, ServerPaths
from zato_daemon.pidfile import PidFile
from zato_daemon.rlimits import RESERVED_DESCRIPTORS, is_enough_for, raise_open_files_limit
from zato_daemon.activation import Choice, activated_listener
from zato_daemon.sockets import bind_tcp, bind_unix
from zato_daemon.master.preparation import prepare_blocking
from zato_daemon.startup import prepare_callables

logger = logging.getLogger('zato_daemon.master')


@dataclass
class Prepared:
    """A server that passed every check and holds its lock and sockets, not yet serving."""

    config: object
    server_dir: ServerPaths
    callables: list
    pidfile: PidFile
    listener: object
    admin_listener: object
    configured_names: frozenset = frozenset()
    # What systemd passed, if anything (socket activation), and what to log about it.
    activation: Choice = Choice()
    # /metrics, served by the master; None when [metrics] is off.
    metrics_listener: object = None

    @property
    def is_activated(self):
        return self.activation.fd is not None

    def preserved_fds(self):
        """The descriptors daemonizing must keep open."""
        fds = [self.pidfile.fd, self.listener.fileno(), self.admin_listener.fileno()]
        return fds + ([self.metrics_listener.fileno()] if self.metrics_listener is not None else [])


# Bits no file or directory the server creates may grant: group write and anything for
# others. server.log holds dumps and failed calls' input, the databases samples of requests.
PRIVATE_UMASK = 0o027


def prepare(base_dir):
    """Loads and validates the config, runs FS_CONFIG_ONLY, takes the lock, binds the sockets."""
    # Whatever umask the caller had (022 in a shell): files 0640 or tighter, directories 0750.
    # The unit sets UMask=0027 too; a tighter umask is kept.
    os.umask(os.umask(PRIVATE_UMASK) | PRIVATE_UMASK)
    # FS_CONFIG_ONLY in a thread with its time limit: a callable that hangs fails the start
    # with one line instead of hanging it without a word.
    config, callables, server_dir, configured_names = prepare_blocking(base_dir, check_before_binding)
    server_dir.ensure()
    check_server_log(server_dir.server_log)
    pidfile = PidFile(server_dir.pidfile).acquire()
    main = config.server_config.main
    bound = []
    try:
        # A socket systemd passed (zato-daemon.socket) wins; without one, bind as configured.
        listener, activation = activated_listener(main.host, main.port)
        if listener is None:
            listener = bind_tcp(main.host, main.port, main.backlog)
        bound.append(listener)
        admin_listener = bind_unix(server_dir.admin_socket)
        bound.append(admin_listener)
        metrics = config.server_config.metrics
        metrics_listener = bind_metrics(metrics) if metrics.enabled else None
    except BaseException:
        for sock in bound:
            sock.close()
        pidfile.release()
        raise
    return Prepared(config, server_dir, callables, pidfile, listener, admin_listener, configured_names,
                    activation, metrics_listener)


def check_before_binding(config, paths):
    """What start checks between FS_CONFIG_ONLY and taking the lock; check-config too (and
    every reload: a password file gone refuses it)."""
    preflight.check(config, paths)
    cluster_settings.from_config(config)
    refused = check_configured_scopes(config.server_config.caches, bool(config.server_config.cluster.redis_url))
    if refused is not None:
        name, reason = refused
        raise ConfigError(reason, key=f'[caches] {name}')
    return vet_configured(config, paths)


def check_configuration(base_dir):
    """`check-config`: start's checks up to the lock, without running any startup callable
    (they are code with side effects; they are resolved, so a name that does not resolve
    fails here as at start). Returns the config; raises a ZatoDaemonError."""
    config = load_config(base_dir)
    prepare_callables(config)
    check_before_binding(config, ServerDir(config.base_dir).resolve(config))
    return config


def serve(prepared, foreground, on_ready=None, on_halt=None, private_fds=()):
    """Runs the master until it stops; returns the exit status. Releases the lock at the end."""
    try:
        configure_logging(prepared.config, prepared.server_dir, 'master', foreground)
        for line in prepared.activation.infos:
            logger.info('%s', line)
        for line in prepared.activation.warnings:
            logger.warning('%s', line)
        check_open_files_limit(prepared.config.server_config.main.max_connections)
        prepared.pidfile.write_pid()
        arbiter = Arbiter(prepared.server_dir, prepared.config, prepared.listener, prepared.admin_listener,
                          prepared.callables, foreground=foreground, on_ready=on_ready, on_halt=on_halt,
                          private_fds=(prepared.pidfile.fd, *private_fds), pidfile=prepared.pidfile,
                          check=check_before_binding, configured_names=prepared.configured_names,
                          activated=prepared.is_activated, metrics_listener=prepared.metrics_listener)
        return arbiter.run()
    finally:
        prepared.pidfile.release()
        logging.shutdown()


def check_open_files_limit(max_connections):
    """Raises the open-files limit the workers inherit; warns when it is too low for max_connections."""
    limit = raise_open_files_limit()
    if not is_enough_for(limit, max_connections):
        logger.warning('The open files limit is %d, below max_connections (%d) plus %d for a worker\'s own files: '
                       'connections past it cannot be accepted. Raise LimitNOFILE= in the unit (or ulimit -n), '
                       'or lower max_connections', limit, max_connections, RESERVED_DESCRIPTORS)
