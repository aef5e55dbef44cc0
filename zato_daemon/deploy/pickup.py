"""Hot-deploy: watch the pickup directory and (re)deploy changed .py files.

Every worker watches the directory itself, so no message passing is needed and a
worker started later deploys the same files. A file that fails to deploy is
reported with its line and the version deployed before keeps serving. The last
good source of every file is also kept in the state directory, so that a worker
started while a broken file sits in the pickup directory still serves the last good
version instead of nothing.

Runs in a worker; takes its sleep function from the caller, so this module stays
free of gevent and is testable without it.
"""

import os
from pathlib import Path

from zato_daemon.errors import ServiceDeployError
from zato_daemon.logs.levels import DEPLOY_FAILED, SERVICE_DEPLOYED


def _signature(path):
    # Cheap change detection; the source hash decides whether to redeploy.
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


class PickupWatcher:
    """Keeps one worker's services in step with the pickup directory."""

    def __init__(self, store, pickup_dir, deployed_dir, logger):
        self.store = store
        self.pickup_dir = Path(pickup_dir)
        self.deployed_dir = Path(deployed_dir)
        self.logger = logger
        self._signatures = {}
        self._attempted = {}
        # Files whose last attempt failed; retried whenever the set of deployed services
        # changes, since a failure may come from another file (a service name it held).
        self._failed = set()

    def deploy_at_boot(self):
        """Deploys every file in the pickup directory, using last good copies for broken ones."""
        self.pickup_dir.mkdir(parents=True, exist_ok=True)
        for path in self._pickup_files():
            if not self._deploy(path) and not self._deploy_last_good(path):
                self.logger.error('No version of %s could be deployed', path)

    def scan(self):
        """One pass: deploys new and changed files and undeploys removed ones."""
        current = set(self._pickup_files())
        changed = False
        for path in sorted(current):
            try:
                signature = _signature(path)
            except OSError:
                continue
            if self._signatures.get(path) != signature:
                self._signatures[path] = signature
                changed = self._deploy(path) or changed
        for path in set(self._signatures) - current:
            changed = self._remove(path) or changed
        if changed:
            self._retry_failed()

    def _retry_failed(self):
        for path in sorted(self._failed):
            self._attempted.pop(path, None)
            self._deploy(path)

    def run(self, sleep, interval):
        """Scans forever, `interval` seconds apart; a scan that fails is logged, not fatal."""
        while True:
            sleep(interval)
            try:
                self.scan()
            except Exception:
                self.logger.exception('Pickup directory scan of %s failed', self.pickup_dir)

    def _pickup_files(self):
        try:
            return sorted(path for path in self.pickup_dir.glob('*.py')
                          if not path.name.startswith(('.', '_')))
        except OSError:
            return []

    def _deploy(self, path):
        try:
            self._signatures[path] = _signature(path)
            source = path.read_bytes()
        except OSError as exc:
            self.logger.warning('Cannot read %s: %s', path, exc.strerror)
            return False
        if self._attempted.get(path) == source:
            return False
        self._attempted[path] = source
        try:
            info = self.store.deploy_file(path, source)
        except ServiceDeployError as exc:
            self._failed.add(path)
            self.logger.error('Hot-deploy failed, the previous version keeps serving: %s', exc,
                              extra=DEPLOY_FAILED.extra)
            return False
        self._failed.discard(path)
        self._keep_last_good(path, source)
        self.logger.info('Hot-deployed %s (sha256 %s): %s', path, info.sha256, ', '.join(info.service_names),
                         extra=SERVICE_DEPLOYED.extra)
        return True

    def _deploy_last_good(self, path):
        copy = self.deployed_dir / path.name
        try:
            source = copy.read_bytes()
        except OSError:
            return False
        try:
            info = self.store.deploy_file(path, source)
        except ServiceDeployError as exc:
            self.logger.error('The last good copy %s does not deploy either: %s', copy, exc)
            return False
        self.logger.warning('Serving the last good version of %s (sha256 %s) until the file is fixed',
                            path, info.sha256)
        return True

    def _keep_last_good(self, path, source):
        copy = self.deployed_dir / path.name
        temporary = copy.with_name(f'.{copy.name}.{os.getpid()}.tmp')
        try:
            self.deployed_dir.mkdir(parents=True, exist_ok=True)
            temporary.write_bytes(source)
            os.replace(temporary, copy)
        except OSError as exc:
            self.logger.warning('Cannot keep a copy of %s in %s: %s', path, self.deployed_dir, exc.strerror)

    def _remove(self, path):
        """Undeploys a file that left the directory; True if it had services deployed."""
        self._signatures.pop(path, None)
        self._attempted.pop(path, None)
        self._failed.discard(path)
        info = self.store.undeploy_file(path)
        try:
            (self.deployed_dir / path.name).unlink()
        except OSError:
            pass
        if info is not None:
            self.logger.info('Undeployed %s (file removed): %s', path, ', '.join(info.service_names))
        return info is not None
