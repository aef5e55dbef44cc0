"""Hot-deploy, the workers' half: deploy the last-good set the master keeps, and nothing else.

The master probes and accepts pickup files (deploy/pickup.py) and writes the set to the
state directory (deploy/manifest.py). A worker deploys that set at boot and follows the
manifest as it changes: a stat every poll_interval, the manifest read only when it was
replaced. Each copy is deployed under its pickup path, so `info` and `verify` show the
file the operator dropped and the hash of what runs. An import that fails here anyway (the
worker's environment is not the probe's) is an ERROR naming the file; the version
deployed before keeps serving, and the worker goes on.

Runs in a worker; takes its sleep function from the caller, so this module stays free of
gevent and is testable without it.
"""

import time

from zato_daemon.deploy.manifest import ManifestError, copy_path, manifest_signature, read_manifest
from zato_daemon.logs.levels import DEPLOY_FAILED, SERVICE_DEPLOYED
from zato_daemon.logs.throttle import Throttle
from zato_daemon.services.registry import sha256_of


def plan(applied, desired):
    """What to undeploy and what to deploy to go from `applied` to `desired` ({file name: Entry}).

    Returns (names to undeploy, names to deploy), each sorted. A file whose pickup path
    changed is undeployed from the old path first. Pure.
    """
    undeploy = sorted(name for name, entry in applied.items()
                      if name not in desired or desired[name].source != entry.source)
    deploy = sorted(name for name, entry in desired.items() if applied.get(name) != entry)
    return undeploy, deploy


class ManifestFollower:
    """Keeps one worker's pickup services equal to the manifest's set."""

    def __init__(self, store, deployed_dir, logger):
        self.store = store
        self.deployed_dir = deployed_dir
        self.logger = logger
        self.applied = {}       # file name -> Entry deployed in this worker
        self._failed = {}       # file name -> Entry that failed to import here (reported once)
        self._signature = None  # of the manifest last read
        self._retry = False     # a copy could not be read: read the manifest again next time
        self._unreadable = {}   # file name -> Entry whose copy could not be read once

    def run(self, sleep, interval):
        """Follows the manifest forever, `interval` seconds apart; a failed pass is logged, not fatal."""
        failures = Throttle()
        while True:
            sleep(interval)
            try:
                self.sync()
            except Exception:  # noqa: BLE001 - the worker serves on; the next pass tries again
                if failures.occurred(time.monotonic()):
                    self.logger.exception('Following %s failed', self.deployed_dir)

    def sync(self):
        """One pass: when the manifest changed, deploys and undeploys what it changed."""
        try:
            signature = manifest_signature(self.deployed_dir)
        except OSError:
            return  # none yet, or deleted: keep what serves until the master writes one
        if signature == self._signature and not self._retry:
            return
        try:
            desired = read_manifest(self.deployed_dir)
        except ManifestError as exc:
            if signature != self._signature:
                self.logger.warning('Ignoring %s: %s', self.deployed_dir, exc)
            self._signature = signature
            return
        if desired is None:
            return
        self._signature = signature
        self._retry = False
        self._apply(desired)

    def _apply(self, desired):
        undeploy, deploy = plan(self.applied, desired)
        for name in undeploy:
            entry = self.applied.pop(name)
            info = self.store.undeploy_file(entry.source)
            if name not in desired and info is not None:
                self.logger.info('Undeployed %s (file removed): %s', entry.source, ', '.join(info.service_names))
        for name in set(self._failed) - set(desired):
            del self._failed[name]
        pending = [name for name in deploy if self._failed.get(name) != desired[name]]
        # A name may move from one file to another in one change: deploy in rounds, so the file
        # that takes the name is deployed once the one that gave it up was.
        errors = {}
        while pending:
            errors = {}
            for name in pending:
                error = self._deploy(name, desired[name])
                if error is not None:
                    errors[name] = error
            if len(errors) == len(pending):
                break
            pending = list(errors)
        for name, error in sorted(errors.items()):
            self._failed[name] = desired[name]
            self.logger.error('Cannot deploy %s in this worker, though it imported cleanly on its own: %s; the '
                              'version deployed before, if any, keeps serving', desired[name].source, error,
                              extra=DEPLOY_FAILED.extra)

    def _deploy(self, name, entry):
        """Deploys one entry from its copy; returns None, or the error (one line)."""
        try:
            source = copy_path(self.deployed_dir, entry.copy).read_bytes()
        except OSError as exc:
            if self._unreadable.get(name) == entry:
                return f'cannot read its copy {entry.copy}: {exc.strerror or exc}'
            # Most likely removed after a newer manifest replaced the one read: read that one.
            self._unreadable[name] = entry
            self._retry = True
            return None
        self._unreadable.pop(name, None)
        if sha256_of(source) != entry.sha256:
            return f'its copy {entry.copy} does not have the sha256 {entry.sha256} the manifest says'
        try:
            info = self.store.deploy_file(entry.source, source)
        except Exception as exc:  # noqa: BLE001 - ServiceDeployError, or anything the module raised
            return str(exc)
        self.applied[name] = entry
        self._failed.pop(name, None)
        self.logger.info('Hot-deployed %s (sha256 %s): %s', entry.source, info.sha256, ', '.join(info.service_names),
                         extra=SERVICE_DEPLOYED.extra)
        return None
