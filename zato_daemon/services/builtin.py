"""Built-in services: health, server info, the service list and a service's source info.

They are reachable through the admin socket (the CLI uses them) and by `invoke()`
from services and startup callables; never over the TCP channel, except ping.
"""

import time

from zato_daemon import __version__
from zato_daemon.diagnostics.store import list_samples, list_slow
from zato_daemon.errors import HttpError
from zato_daemon.services.base import Service
from zato_daemon.status import read_status

BUILTIN_ORIGIN = 'zato_daemon.services.builtin'


class Ping(Service):
    """Answers {"pong": true}: the server and one of its workers are alive."""

    name = 'zato.ping'

    def handle(self):
        self.response.payload = {'pong': True, 'pid': self.server.pid}


class ServerInfo(Service):
    """What `zato-daemon info` prints: pids, version, directories, address, uptime, services."""

    name = 'zato.server.info'

    def handle(self):
        server = self.server
        status = read_status(server.server_dir.status_file) or {}
        started_at = status.get('started_at', server.started_at)
        main = server.server_config.main
        self.response.payload = {
            'master_proc_pid': status.get('master_proc_pid'),
            'worker_pids': [worker['pid'] for worker in status.get('workers', [])],
            'workers': status.get('workers', []),
            'answered_by_pid': server.pid,
            'version': __version__,
            'config_dir': str(server.server_dir.base),
            'state_dir': str(server.server_dir.state),
            'logs_dir': str(server.server_dir.logs),
            'runtime_dir': str(server.server_dir.runtime),
            'listen': status.get('listen', f'{main.host}:{main.port}'),
            'metrics': status.get('metrics'),
            # [cluster]: name, member, redacted URL, whether Redis answers, its last error.
            'cluster': status.get('cluster'),
            'started_at': started_at,
            'uptime_seconds': round(time.time() - started_at, 3),
            'services': server.store.describe(),
        }


class MetricsSnapshot(Service):
    """What `zato-daemon top` shows: the master's view of the last second (metrics/live.py),
    which it writes to the runtime directory, whichever worker answers."""

    name = 'zato.server.metrics'

    def handle(self):
        server = self.server
        if not server.server_config.metrics.enabled:
            self.response.status_code = 404
            self.response.payload = {'error': 'metrics are off on this server ([metrics] enabled in server.conf)'}
            return
        snapshot = read_status(server.server_dir.metrics_snapshot)
        if not isinstance(snapshot, dict):
            self.response.status_code = 503
            self.response.payload = {'error': 'the master has not published its first view yet; try again in a '
                                              'second'}
            return
        snapshot['age_seconds'] = round(max(0.0, time.time() - snapshot.get('time', 0)), 3)
        self.response.payload = snapshot


class ServiceList(Service):
    """The names of all deployed services with their module path and SHA-256."""

    name = 'zato.service.list'

    def handle(self):
        self.response.payload = self.server.store.describe()


class GetSourceInfo(Service):
    """Where one service's module came from: path, SHA-256 and when it was deployed."""

    name = 'zato.service.get-source-info'

    def handle(self):
        payload = self.request.payload
        name = payload.get('name') if isinstance(payload, dict) else payload
        deployed = self.server.store.services.get(name)
        if deployed is None:
            self.response.status_code = 404
            self.response.payload = {'error': f'no service named {name!r} is deployed'}
            return
        self.response.payload = dict(deployed.module.as_dict(), name=name)


class ListSlowCalls(Service):
    """{service?, since?, limit?} -> the stored slow calls, newest first (as `zato-daemon slow`)."""

    name = 'zato.diagnostics.slow.list'

    def handle(self):
        payload = self.request.payload or {}
        try:
            self.response.payload = list_slow(self.server.server_dir.diagnostics_database,
                                              payload.get('service'), payload.get('since'), payload.get('limit', 100))
        except ValueError as exc:
            raise HttpError(f'since: {exc}', 400) from None


class ListSamples(Service):
    """{service, limit?} -> the stored sample calls of a service, newest first (as `zato-daemon samples`)."""

    name = 'zato.diagnostics.samples.list'

    def handle(self):
        payload = self.request.payload or {}
        if not payload.get('service'):
            raise HttpError('service: required', 400)
        self.response.payload = list_samples(self.server.server_dir.diagnostics_database,
                                             payload['service'], payload.get('limit', 20))


BUILTIN_SERVICES = (Ping, ServerInfo, MetricsSnapshot, ServiceList, GetSourceInfo, ListSlowCalls, ListSamples)
