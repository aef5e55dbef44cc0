"""Hot-deploy, the master's half: decides once, for every worker, what the pickup directory deploys.

A PickupDeployer runs in a thread of the master (a plain thread: the master has no
gevent). Each poll_interval it lists the pickup directory, imports new and changed files
in a disposable child (deploy/probe.py), and keeps the last-good set (deploy/manifest.py)
in the state directory: the accepted source of every file and the manifest the workers
follow (deploy/follower.py). So a file that ends or hangs whatever imports it only ever
ends a probe, and every worker, respawned or not, serves the same code for a name.

- A refused file (verdict.py says why) is one ERROR, DEPLOY_REFUSED; the set keeps the
  version accepted before, if any. The same content is not probed or reported again.
- A file refused because another holds one of its service names is judged again whenever
  the set changes (the other file left or dropped the name).
- A listing that fails changes nothing (one WARNING a minute, PICKUP_SCAN_FAILED): only a
  listing that succeeded removes a file from the set.
- At the first scan, an existing manifest is the starting set (copies that do not match
  it are dropped); without one (a server directory of an earlier version), the last good
  copies found there are probed and those that pass become the starting set.
"""

import dataclasses
import json
import os
import threading
import time

from zato_daemon.deploy.manifest import (MANIFEST_NAME, Entry, ManifestError, copy_name, copy_path,
                                         is_versioned_copy, manifest_path, read_manifest, write_atomically,
                                         write_manifest)
from zato_daemon.deploy.probe import (BUILTIN_HOLDER, BUILTIN_NAMES, IMPORT_TIME_LIMIT, ProbeCancelled, ProbeError,
                                      ProbeResult, Target, probe, probe_sys_path)
from zato_daemon.deploy.verdict import judge
from zato_daemon.errors import ServiceDeployError
from zato_daemon.logs.levels import DEPLOY_REFUSED, PICKUP_SCAN_FAILED, RUNTIME_REPAIRED
from zato_daemon.logs.throttle import Throttle
from zato_daemon.services.registry import sha256_of

CONFIGURED_HOLDER = 'a module configured in server.conf'
# In the deployed directory, beside the manifest: the pickup files refused now, with the
# content's hash and the reason, for `zato-daemon deploy` and cluster deploys to report.
# The manifest says what was accepted; this says what was not.
REFUSALS_NAME = 'refused.json'
DEPLOYED, UNDEPLOYED, REFUSED = 'deployed', 'undeployed', 'refused'


def is_pickup_file(name):
    """A .py file the pickup directory deploys: not hidden, not private (editors' and mv's temporaries)."""
    return name.endswith('.py') and not name.startswith(('.', '_'))


def is_presentable_name(name):
    """A file name that can be shown in a log line, `info` and JSON as it is: printable UTF-8.

    Not bytes that are not UTF-8 (they reach Python as surrogates, which no JSON answer can
    carry), and no control character (a newline in a name would forge log lines)."""
    try:
        name.encode('utf-8')
    except UnicodeEncodeError:
        return False
    return name.isprintable()


def _signature(stat):
    # Cheap change detection; the content's hash decides whether anything changed.
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A file's content that was refused, and the probe result it was refused on."""

    sha256: str
    result: ProbeResult
    is_clash: bool
    reason: str = ''


def local_outcome(entries, refusals, name, sha256):
    """What became of pickup file `name` at content `sha256` (None: undeployed, the file
    removed): (DEPLOYED|UNDEPLOYED|REFUSED, reason), or None while the pickup thread has not
    decided yet. `entries`: the manifest's {name: Entry}; `refusals`: read_refusals'. Pure."""
    entry = entries.get(name)
    if sha256 is None:
        return (UNDEPLOYED, '') if entry is None else None
    if entry is not None and entry.sha256 == sha256:
        return DEPLOYED, ''
    refusal = refusals.get(name)
    if refusal is not None and refusal.get('sha256') == sha256:
        return REFUSED, refusal.get('reason', '')
    return None


def read_refusals(deployed_dir):
    """{file name: {'sha256', 'reason'}} of the files refused now; {} when there is none to read."""
    try:
        refusals = json.loads((deployed_dir / REFUSALS_NAME).read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return {}
    return refusals if isinstance(refusals, dict) else {}


class PickupDeployer:
    """The last-good set of the pickup directory, kept by the master for every worker.

    `scan_once()` runs one pass (the master calls it before its first workers spawn, so
    they boot with the current set); `start()` runs passes in a daemon thread every
    poll_interval until `stop()`; `update()` takes a reload's settings, thread-safely.
    """

    def __init__(self, paths, poll_interval, configured_names, logger, import_time_limit=IMPORT_TIME_LIMIT,
                 on_outcome=lambda result: None):
        self.logger = logger
        # Called from the thread with 'deployed', 'undeployed' or 'refused' (the metrics).
        self.on_outcome = on_outcome
        self.import_time_limit = import_time_limit
        self.paths = None
        self.poll_interval = poll_interval
        self.configured_names = frozenset()
        # A reload's settings, taken at the start of the next scan.
        self._settings_lock = threading.Lock()
        self._pending = (paths, poll_interval, frozenset(configured_names), import_time_limit)
        self._scan_lock = threading.Lock()
        self._stopped = threading.Event()
        # Set once the first scan ended (whatever its outcome): the master waits for it, a
        # bounded time, before its first workers spawn, so they boot with the current set.
        self.first_scan_done = threading.Event()
        self._badly_named = set()
        # Accepted files whose copy could not be written yet (a full or missing directory):
        # written again at each scan, without probing them again.
        self._unsaved = {}
        self._thread = None
        self._is_loaded = False
        self._recheck_held_names = False
        self._must_save = False
        self.entries = {}           # file name -> Entry: the last-good set
        self._seen = {}             # file name -> signature of the version last looked at
        self._refused = {}          # file name -> Refusal
        self._written_refusals = None  # what refused.json holds, as last written
        self._scan_failures = Throttle()
        self._probe_failures = Throttle()
        self._errors = Throttle()

    # ---- the thread

    def start(self):
        """Runs scans in a daemon thread; raises RuntimeError when no thread can be started."""
        self._thread = threading.Thread(target=self._run, name='zato-daemon: pickup', daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        """Ends the thread; a probe running is killed."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def update(self, paths, poll_interval, configured_names, import_time_limit=None):
        """A reload's settings: applied at the next scan (a changed pickup directory is listed
        afresh; a name now configured evicts the pickup file that held it)."""
        with self._settings_lock:
            self._pending = (paths, poll_interval, frozenset(configured_names),
                             self.import_time_limit if import_time_limit is None else import_time_limit)

    def _run(self):
        # The first scan at once, the others every poll_interval.
        while True:
            try:
                self.scan_once()
            except Exception:  # noqa: BLE001 - the next scan tries again; the master goes on
                if self._errors.occurred(time.monotonic()):
                    self.logger.exception('The scan of the pickup directory %s failed', self.paths.pickup_dir)
            finally:
                self.first_scan_done.set()
            if self._stopped.wait(self.poll_interval):
                return

    # ---- one scan

    def scan_once(self):
        """One pass: probes new and changed files, drops removed ones, writes the set if it changed."""
        with self._scan_lock:
            try:
                self._scan()
            except ProbeCancelled:
                pass  # stopping: what this scan accepted is probed again at the next start

    def _scan(self):
        self._take_settings()
        if not self._is_loaded:
            self._load()
            if not self._is_loaded:
                return
        listing = self._list()
        if listing is None:
            return
        changed = self._evict_configured_clashes() if self._recheck_held_names else False
        changed = self._remove_missing(listing) or changed
        changed = self._write_unsaved() or changed
        self._restore_deleted_copies()
        changed = self._examine(listing) or changed
        if changed or self._recheck_held_names:
            # One file accepted or gone may free a name another was refused for, and so on.
            while self._retry_clashes():
                changed = True
        self._recheck_held_names = False
        if changed or self._must_save or not manifest_path(self.paths.deployed_dir).exists():
            self._save()
        self._save_refusals()

    def _save_refusals(self):
        """refused.json, when the refusals changed (after the manifest: a reader that sees a
        refusal gone sees the acceptance that replaced it)."""
        refusals = {name: {'sha256': refusal.sha256, 'reason': refusal.reason}
                    for name, refusal in sorted(self._refused.items())}
        if refusals == self._written_refusals:
            return
        path = self.paths.deployed_dir / REFUSALS_NAME
        try:
            if refusals:
                write_atomically(path, json.dumps(refusals, sort_keys=True).encode())
            else:
                path.unlink(missing_ok=True)  # none refused: the directory holds the set alone
        except OSError:
            return  # tried again at the next scan; only reports depend on it
        self._written_refusals = refusals

    def _take_settings(self):
        with self._settings_lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        paths, self.poll_interval, configured_names, self.import_time_limit = pending
        previous, self.paths = self.paths, paths
        if previous is None or previous.pickup_dir != paths.pickup_dir:
            self._seen.clear()
            self._make_pickup_dir()
        if previous is not None and previous.deployed_dir != paths.deployed_dir:
            self._is_loaded = False
        if configured_names != self.configured_names:
            self.configured_names = configured_names
            self._recheck_held_names = True

    def _make_pickup_dir(self):
        # Only when the directory is first used: made again at every scan, a directory renamed
        # away would come back empty, and an empty listing would undeploy every file.
        try:
            self.paths.pickup_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # the scan reports it

    def _list(self):
        """{file name: signature} of the pickup files, or None when the directory cannot be listed."""
        pickup_dir = self.paths.pickup_dir
        try:
            listing = {}
            with os.scandir(pickup_dir) as entries:
                for entry in entries:
                    if not is_pickup_file(entry.name):
                        continue
                    if not is_presentable_name(entry.name):
                        self._report_bad_name(pickup_dir, entry.name)
                        continue
                    if entry.is_file():
                        try:
                            listing[entry.name] = _signature(entry.stat())
                        except FileNotFoundError:
                            pass  # removed since it was listed
        except OSError as exc:
            count = self._scan_failures.occurred(time.monotonic())
            if count:
                self.logger.warning('Cannot list the pickup directory %s: %s; nothing is deployed or undeployed '
                                    'until a listing succeeds%s', pickup_dir, exc.strerror or exc,
                                    f' ({count} failed scans since the last report)' if count > 1 else '',
                                    extra=PICKUP_SCAN_FAILED.extra)
            return None
        return listing

    def _report_bad_name(self, pickup_dir, name):
        if name not in self._badly_named:
            self._badly_named.add(name)
            self.logger.error('Refused to deploy %r in %s: its name is not printable UTF-8 (a byte that is not '
                              'UTF-8, or a control character such as a newline); rename it', name, pickup_dir,
                              extra=DEPLOY_REFUSED.extra)

    def _examine(self, listing):
        """Probes the new and changed files; True when the set changed."""
        pickup_dir = self.paths.pickup_dir
        changed = False
        candidates = []
        for name, signature in sorted(listing.items()):
            if self._seen.get(name) == signature:
                continue
            try:
                source = (pickup_dir / name).read_bytes()
            except OSError:
                continue  # gone or unreadable since the listing: the next scan sees it again
            sha256 = sha256_of(source)
            entry = self.entries.get(name)
            refusal = self._refused.get(name)
            if entry is not None and entry.sha256 == sha256:
                # What serves already (touched, or the pickup directory moved with its files).
                self._seen[name] = signature
                self._refused.pop(name, None)
                if entry.source != str(pickup_dir / name):
                    self.entries[name] = dataclasses.replace(entry, source=str(pickup_dir / name))
                    changed = True
            elif refusal is not None and refusal.sha256 == sha256:
                self._seen[name] = signature  # refused and reported already
            else:
                candidates.append((name, signature, source, sha256))
        results = self._probe([Target('file', str(pickup_dir / name)) for name, _, _, _ in candidates]) or []
        for (name, signature, source, sha256), result in zip(candidates, results):
            if result.imported and result.sha256 != sha256:
                continue  # rewritten while it was probed: the next scan probes what is there then
            self._seen[name] = signature
            changed = self._decide(name, source, sha256, result) or changed
        return changed

    def _probe(self, targets):
        """The targets' probe results; None when no probe could run."""
        if not targets:
            return []
        try:
            return probe(targets, probe_sys_path(self.paths), self.import_time_limit, cancelled=self._stopped)
        except ProbeError as exc:
            # A process limit, say: not the files' fault, so nothing is refused; the next scan tries again.
            count = self._probe_failures.occurred(time.monotonic())
            if count:
                self.logger.warning('Cannot check new pickup files: %s; the next scan tries again', exc)
            return None

    def _decide(self, name, source, sha256, result):
        """Accepts or refuses one probed file; True when the set changed."""
        verdict = judge(result, self._holders(excluding=name))
        if verdict.accepted:
            return self._accept(name, source, sha256, result.services)
        path = self.paths.pickup_dir / name
        self._refused[name] = Refusal(sha256, result, verdict.is_clash,
                                      str(ServiceDeployError(verdict.reason, path, verdict.line)))
        previous = self.entries.get(name)
        keeps = (f'the version accepted before (sha256 {previous.sha256}) keeps serving' if previous is not None
                 else 'nothing of it is deployed')
        self.logger.error('Refused to deploy %s; %s', ServiceDeployError(verdict.reason, path, verdict.line), keeps,
                          extra=DEPLOY_REFUSED.extra)
        self.on_outcome('refused')
        return False

    def _accept(self, name, source, sha256, services):
        path = self.paths.pickup_dir / name
        copy = copy_name(name, sha256)
        try:
            self.paths.deployed_dir.mkdir(parents=True, exist_ok=True)
            write_atomically(copy_path(self.paths.deployed_dir, copy), source)
        except OSError as exc:
            # Written again at each scan (not probed again); reported once a minute.
            self._unsaved[name] = (source, sha256, tuple(services))
            if self._errors.occurred(time.monotonic()):
                self.logger.error('Cannot keep the accepted version of %s in %s: %s; it is not deployed until it '
                                  'can be', path, self.paths.deployed_dir, exc.strerror or exc)
            return False
        self._unsaved.pop(name, None)
        self.entries[name] = Entry(sha256, tuple(services), str(path), copy)
        self._refused.pop(name, None)
        self.logger.info('Accepted %s (sha256 %s) for the workers: %s', path, sha256, ', '.join(services))
        self.on_outcome('deployed')
        return True

    def _write_unsaved(self):
        """Accepted files whose copy could not be written: tried again; True when one now is."""
        changed = False
        for name, (source, sha256, services) in sorted(self._unsaved.items()):
            if self._seen.get(name) is None:
                self._unsaved.pop(name)  # gone from the pickup directory meanwhile
                continue
            changed = self._accept(name, source, sha256, services) or changed
        return changed

    def _restore_deleted_copies(self):
        """Copies of the set deleted by hand or a clean-up job: written again from the pickup
        file when it still holds that version, else that file is looked at afresh."""
        for name, entry in sorted(self.entries.items()):
            copy = copy_path(self.paths.deployed_dir, entry.copy)
            if copy.exists():
                continue
            try:
                source = (self.paths.pickup_dir / name).read_bytes()
            except OSError:
                source = b''
            if sha256_of(source) != entry.sha256:
                self._seen.pop(name, None)
                continue
            try:
                self.paths.deployed_dir.mkdir(parents=True, exist_ok=True)
                write_atomically(copy, source)
            except OSError as exc:
                if self._errors.occurred(time.monotonic()):
                    self.logger.error('Cannot write %s again: %s', copy, exc.strerror or exc)
                continue
            self.logger.warning('The copy %s of the accepted version of %s was deleted; written it again', copy,
                                entry.source, extra=RUNTIME_REPAIRED.extra)

    def _configured_holders(self):
        return {name: (BUILTIN_HOLDER if name in BUILTIN_NAMES else CONFIGURED_HOLDER)
                for name in self.configured_names}

    def _holders(self, excluding):
        """Who holds each service name, but for pickup file `excluding` (its previous version)."""
        holders = self._configured_holders()
        for file_name, entry in self.entries.items():
            if file_name != excluding:
                holders.update(dict.fromkeys(entry.services, file_name))
        return holders

    def _retry_clashes(self):
        """Judges again the files refused for a name another held; True when one was accepted."""
        changed = False
        for name, refusal in sorted(self._refused.items()):
            if not refusal.is_clash or judge(refusal.result, self._holders(excluding=name)).is_clash:
                continue
            try:
                source = (self.paths.pickup_dir / name).read_bytes()
            except OSError:
                source = b''
            if sha256_of(source) != refusal.sha256:
                # Changed since: looked at afresh by the next scan.
                self._refused.pop(name)
                self._seen.pop(name, None)
                continue
            changed = self._accept(name, source, refusal.sha256, refusal.result.services) or changed
        return changed

    def _evict_configured_clashes(self):
        """After a reload: a file holding a name a configured module now defines leaves the set."""
        changed = False
        for name, entry in sorted(self.entries.items()):
            result = ProbeResult(Target('file', entry.source), sha256=entry.sha256, services=entry.services)
            verdict = judge(result, self._configured_holders())
            if verdict.is_clash:
                del self.entries[name]
                self._refused[name] = Refusal(entry.sha256, result, True,
                                              str(ServiceDeployError(verdict.reason, entry.source)))
                self.logger.error('Refused to deploy %s; it leaves the workers', ServiceDeployError(
                    verdict.reason, entry.source), extra=DEPLOY_REFUSED.extra)
                self.on_outcome('refused')
                changed = True
        return changed

    def _remove_missing(self, listing):
        """Forgets the files a successful listing no longer shows; True when the set changed."""
        changed = False
        for name in (set(self.entries) | set(self._seen) | set(self._refused) | set(self._unsaved)) - set(listing):
            self._seen.pop(name, None)
            self._refused.pop(name, None)
            self._unsaved.pop(name, None)
            entry = self.entries.pop(name, None)
            if entry is not None:
                self.logger.info('Undeploying %s (file removed): %s', entry.source, ', '.join(entry.services))
                self.on_outcome('undeployed')
                changed = True
        return changed

    def _save(self):
        deployed_dir = self.paths.deployed_dir
        try:
            deployed_dir.mkdir(parents=True, exist_ok=True)
            write_manifest(deployed_dir, self.entries)
        except OSError as exc:
            # The workers keep following the previous manifest; the next scan writes it again.
            if self._errors.occurred(time.monotonic()):
                self.logger.error('Cannot write %s: %s; the workers keep the set they have',
                                  deployed_dir / MANIFEST_NAME, exc.strerror or exc)
            self._must_save = True
            return
        self._must_save = False
        self._remove_unreferenced_copies()

    def _remove_unreferenced_copies(self):
        """Copies no manifest names any more (and temporary files a crash left), once the manifest is written."""
        referenced = {entry.copy for entry in self.entries.values()}
        for name in self._copies(include_temporary=True):
            if name not in referenced:
                try:
                    copy_path(self.paths.deployed_dir, name).unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    self.logger.warning('Cannot remove %s: %s', copy_path(self.paths.deployed_dir, name),
                                        exc.strerror or exc)

    # ---- the starting set

    def _load(self):
        """The starting set: the manifest's entries whose copy matches, or the copies of an earlier version."""
        self._is_loaded = True
        self._recheck_held_names = True
        self._written_refusals = None
        self._must_save = True
        deployed_dir = self.paths.deployed_dir
        try:
            deployed_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.logger.error('Cannot create %s: %s; accepted pickup files cannot reach the workers',
                              deployed_dir, exc.strerror or exc)
        try:
            manifest = read_manifest(deployed_dir)
        except ManifestError as exc:
            self.logger.warning('Ignoring %s: %s; the pickup directory is checked afresh',
                                manifest_path(deployed_dir), exc)
            manifest = None
        if manifest is None:
            adopted = self._adopt_copies()
            if adopted is None:
                self._is_loaded = False  # no probe could run: the copies wait for the next scan
                adopted = {}
            self.entries = adopted
        else:
            self.entries = {name: entry for name, entry in manifest.items() if self._copy_matches(entry)}

    def _copies(self, include_temporary=False):
        """The names of the copies in the deployed directory (and of temporary files, if asked)."""
        try:
            names = os.listdir(self.paths.deployed_dir)
        except OSError:
            return []
        return sorted(name for name in names if name.endswith('.py')
                      or (include_temporary and name.startswith('.') and name.endswith('.tmp')))

    def _copy_matches(self, entry):
        try:
            return sha256_of(copy_path(self.paths.deployed_dir, entry.copy).read_bytes()) == entry.sha256
        except OSError:
            return False

    def _adopt_copies(self):
        """The last good copies an earlier version kept (named like their pickup file, without a
        manifest) that still probe clean; None when no probe could run."""
        names = [name for name in self._copies() if is_pickup_file(name) and not is_versioned_copy(name)]
        sources = {}
        for name in names:
            try:
                sources[name] = copy_path(self.paths.deployed_dir, name).read_bytes()
            except OSError:
                pass
        names = sorted(sources)
        results = self._probe([Target('file', str(copy_path(self.paths.deployed_dir, name))) for name in names])
        if results is None:
            return None
        adopted = {}
        for name, result in zip(names, results):
            holders = {service: name for entry in adopted.values() for service in entry.services}
            if result.imported and result.sha256 == sha256_of(sources[name]) and judge(result, holders).accepted:
                adopted[name] = Entry(result.sha256, result.services, str(self.paths.pickup_dir / name), name)
        return adopted
