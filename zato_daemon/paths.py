"""Where a server keeps its config, state, logs and runtime files.

Under systemd the unit's StateDirectory=, LogsDirectory=, RuntimeDirectory= and
ConfigurationDirectory= arrive as $STATE_DIRECTORY and friends (systemd 240+), and
they win. A server directory under /etc/zato-daemon (the packaged one, or NAME/ of the
template unit) maps to the FHS locations even without those variables, so that
`zato-daemon info /etc/zato-daemon` run from a shell finds what systemd created.
Any other server directory (development, `start --fg`, a directory of one's own)
keeps everything in its own subfolders.
"""

import os
from pathlib import Path

from zato_daemon.errors import DirectoryError

DEFAULT_SERVER_DIR = Path('/etc/zato-daemon')
FHS_STATE = Path('/var/lib/zato-daemon')
FHS_LOGS = Path('/var/log/zato-daemon')
FHS_RUNTIME = Path('/run/zato-daemon')

PIDFILE_NAME = 'zato-daemon.pid'
ADMIN_SOCKET_NAME = 'admin.sock'
STATUS_FILE_NAME = 'master.json'
# The master's per-second view of its metrics, for `zato-daemon top` (metrics/live.py).
METRICS_SNAPSHOT_NAME = 'metrics.json'
SERVER_LOG_NAME = 'server.log'
# One JSON record per dump, what `zato-daemon diagnose` compares (dump/record.py).
DUMP_RECORDS_NAME = 'dumps'
DIAGNOSTICS_DATABASE_NAME = 'diagnostics.sqlite3'
EXTLIB = 'extlib'


def _from_env(name, fallback):
    # systemd may pass several colon-separated paths; the first one is ours.
    value = os.environ.get(name, '')
    return Path(value.split(':')[0]) if value else fallback


def _default_locations(base):
    if base == DEFAULT_SERVER_DIR:
        return FHS_STATE, FHS_LOGS, FHS_RUNTIME
    if base.parent == DEFAULT_SERVER_DIR:
        return FHS_STATE / base.name, FHS_LOGS / base.name, FHS_RUNTIME / base.name
    return base / 'state', base / 'logs', base / 'run'


class ServerDir:
    """The locations of one server, derived from its server (config) directory.

    Pure: computing a path creates nothing; `ensure()` creates the directories.
    """

    def __init__(self, base):
        self.base = Path(base).absolute()
        state, logs, runtime = _default_locations(self.base)
        self.state = _from_env('STATE_DIRECTORY', state)
        self.logs = _from_env('LOGS_DIRECTORY', logs)
        self.runtime = _from_env('RUNTIME_DIRECTORY', runtime)

    @property
    def pidfile(self):
        return self.runtime / PIDFILE_NAME

    @property
    def admin_socket(self):
        return self.runtime / ADMIN_SOCKET_NAME

    @property
    def status_file(self):
        return self.runtime / STATUS_FILE_NAME

    @property
    def metrics_snapshot(self):
        return self.runtime / METRICS_SNAPSHOT_NAME

    @property
    def dump_records(self):
        return self.runtime / DUMP_RECORDS_NAME

    @property
    def deployed_dir(self):
        """Last good copy of every hot-deployed module, so a restarted worker never loses one."""
        return self.state / 'deployed'

    def ensure(self):
        """Creates the state, logs and runtime directories if missing.

        Runs in the master (or the CLI) before anything is bound or forked.
        """
        for path in (self.state, self.logs, self.runtime, self.deployed_dir):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except PermissionError:
                raise  # the CLI's one line with EX_NOPERM (77), naming the path
            except OSError as exc:
                raise DirectoryError(f'cannot create {path}: {exc.strerror}; run as the user that owns '
                                     f'{self.base} or fix the permissions') from None

    def __repr__(self):
        return f'ServerDir({str(self.base)!r})'

    def resolve(self, config):
        """Every location of this server as `config` says, FS_CONFIG_ONLY's changes included."""
        def configured(value, default):
            return config.resolve_path(value) or default

        server_config = config.server_config
        return ServerPaths(
            base=self.base, state=self.state, logs=self.logs, runtime=self.runtime,
            server_log=configured(server_config.logging.server_log, self.logs / SERVER_LOG_NAME),
            diagnostics_database=configured(server_config.diagnostics.database,
                                            self.state / DIAGNOSTICS_DATABASE_NAME),
            pickup_dir=configured(config.pickup_config.hot_deploy.pickup_dir, self.state / 'pickup'),
            extlib=(self.base / EXTLIB, self.state / EXTLIB,
                    *(config.resolve_path(path) for path in server_config.misc.extra_paths)),
            service_paths=tuple(config.resolve_path(path) for path in server_config.services.paths),
        )


class ServerPaths(ServerDir):
    """Every path one server uses, resolved once after FS_CONFIG_ONLY (`ServerDir.resolve`).

    The master hands it to its workers and publishes it in master.json; the CLI reads it
    from there while the server runs (a startup callable may have moved a file), and
    resolves the configuration the same way when it does not.
    """

    # The keys of `as_dict()` that hold one path each, and those holding lists of them.
    SINGLE = ('base', 'state', 'logs', 'runtime', 'server_log', 'diagnostics_database', 'pickup_dir')
    MANY = ('extlib', 'service_paths')

    def __init__(self, **paths):  # pylint: disable=super-init-not-called
        for name in self.SINGLE:
            setattr(self, name, Path(paths[name]))
        for name in self.MANY:
            setattr(self, name, tuple(Path(path) for path in paths[name]))

    def as_dict(self):
        """Plain strings and lists, for master.json."""
        return {**{name: str(getattr(self, name)) for name in self.SINGLE},
                **{name: [str(path) for path in getattr(self, name)] for name in self.MANY}}

    @classmethod
    def from_dict(cls, data):
        """The inverse of `as_dict()`; raises KeyError or TypeError on anything else."""
        return cls(**{name: data[name] for name in (*cls.SINGLE, *cls.MANY)})

    def __eq__(self, other):
        return isinstance(other, ServerPaths) and self.as_dict() == other.as_dict()

    def __repr__(self):
        return f'ServerPaths({str(self.base)!r})'
