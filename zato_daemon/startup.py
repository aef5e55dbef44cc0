"""Startup callables: user code run at the phases FS_CONFIG_ONLY and AFTER_STARTED.

Which process runs what, and how often (docs/startup.md says the same to users):
- the extlib directories go on sys.path in the master before anything else, so workers
  inherit them;
- names in `[misc] startup_callable` are resolved in the master before the first phase
  (a name that does not resolve is a configuration error, exit 78, also reported by
  `check-config`);
- FS_CONFIG_ONLY runs in the master, once per start and once per reload, before any
  socket is bound; changes callables make to the config objects are what the server uses;
- AFTER_STARTED runs in every worker, each time one starts, after its services are
  deployed and it serves, before it reports ready (so a failing callable fails the start).

Failure policy, `[misc] startup_callable_failure`: fail (default) stops the start with
one error naming the callable, the phase and the cause; warn logs a WARNING and goes on.
"""

import importlib
import logging
import sys
import time
import traceback

from zato_daemon.common import SERVER_STARTUP
from zato_daemon.config import load_config
from zato_daemon.errors import EXIT_SOFTWARE, StartupCallableError
from zato_daemon.paths import ServerDir

logger = logging.getLogger('zato_daemon.startup')

FS_CONFIG_ONLY = SERVER_STARTUP.PHASE.FS_CONFIG_ONLY
AFTER_STARTED = SERVER_STARTUP.PHASE.AFTER_STARTED


class PhaseCtx:
    """What a startup callable receives: the phase, and the objects of that phase in kwargs."""

    def __init__(self, phase, args=(), kwargs=None):
        self.phase = phase
        self.args = args
        self.kwargs = kwargs if kwargs is not None else {}

    @property
    def worker_number(self):
        """1 to N in AFTER_STARTED (so `== 1` picks one worker), None in FS_CONFIG_ONLY."""
        return self.kwargs.get('worker_number')

    def __repr__(self):
        return f'PhaseCtx(phase={self.phase!r}, kwargs={sorted(self.kwargs)})'


def extend_sys_path(paths):
    """Appends the directories not on sys.path yet: after the standard library, so that a
    user module named like a stdlib one cannot shadow it."""
    for path in map(str, paths):
        if path not in sys.path:
            sys.path.append(path)


def resolve_callables(config, progress=None):
    """The callables `[misc] startup_callable` names, as (name, callable) pairs, in order.

    Importing their modules runs user code too: `progress` says which, as run_phase does.
    """
    progress = {} if progress is None else progress
    resolved = []
    for name in config.server_config.misc.startup_callable:
        progress['running'] = (f'{name} (importing its module)', 'FS_CONFIG_ONLY', time.monotonic())
        try:
            resolved.append((name, _resolve(name)))
        finally:
            progress.pop('running', None)
    return resolved


def _resolve(dotted_name):
    module_name, _, attribute = dotted_name.rpartition('.')
    if not module_name:
        raise StartupCallableError(f'startup callable {dotted_name}: write it as module.callable; '
                                   'fix [misc] startup_callable in server.conf')
    try:
        module = importlib.import_module(module_name)
    except SystemExit as exc:
        # Not the process's exit status with no word: the module is user code.
        raise StartupCallableError(f'startup callable {dotted_name}: module {module_name} called '
                                   f'sys.exit({exc.code!r}) while importing; fix it or [misc] startup_callable '
                                   'in server.conf', details=traceback.format_exc()) from None
    except Exception as exc:
        raise StartupCallableError(f'startup callable {dotted_name}: cannot import module {module_name}: {exc!r}; '
                                   'put it in an extlib directory or fix [misc] startup_callable in server.conf',
                                   details=traceback.format_exc()) from None
    target = getattr(module, attribute, None)
    if not callable(target):
        what = 'has no attribute' if target is None else 'has a non-callable attribute'
        raise StartupCallableError(f'startup callable {dotted_name}: module {module_name} {what} {attribute!r}; '
                                   'fix [misc] startup_callable in server.conf')
    return target


def run_phase(callables, ctx, policy, progress=None):
    """Calls each callable with `ctx`; on failure raises (policy FAIL) or logs a WARNING (WARN).

    `progress`, a dict, says which callable runs and since when (monotonic), for whoever
    enforces the phase's time limit from another thread (master/preparation.py).
    """
    progress = {} if progress is None else progress
    for name, function in callables:
        progress['running'] = (name, _phase_name(ctx.phase), time.monotonic())
        try:
            function(ctx)
        except (Exception, SystemExit) as exc:
            message = f'startup callable {name} failed in phase {_phase_name(ctx.phase)}: {exc!r}'
            if policy == 'WARN':
                logger.warning('%s; starting anyway ([misc] startup_callable_failure = warn)', message,
                               exc_info=True)
                continue
            raise StartupCallableError(message, EXIT_SOFTWARE, traceback.format_exc()) from None
        finally:
            progress.pop('running', None)


def run_fs_config_only(config, callables, progress=None):
    """FS_CONFIG_ONLY: runs in the master before anything is bound; callables may change `config`."""
    kwargs = {'server_config': config.server_config, 'pickup_config': config.pickup_config,
              'sio_config': config.sio_config, 'sso_config': config.sso_config, 'base_dir': str(config.base_dir)}
    run_phase(callables, PhaseCtx(FS_CONFIG_ONLY, kwargs=kwargs), config.server_config.misc.startup_callable_failure,
              progress)
    for config_file in (config.server_config, config.pickup_config, config.sio_config, config.sso_config):
        for key in config_file.unknown_assignments:
            logger.warning('A startup callable set %s.%s, which no setting declares: the server ignores it',
                           config_file.name, key)


def run_after_started(callables, host, worker_number):
    """AFTER_STARTED: runs in a worker once it serves, before it reports ready."""
    ctx = PhaseCtx(AFTER_STARTED, kwargs={'server': host, 'worker_number': worker_number})
    run_phase(callables, ctx, host.config.server_config.misc.startup_callable_failure)


def prepare_callables(config, progress=None):
    """Puts the extlib directories on sys.path and resolves the configured callables."""
    extend_sys_path(ServerDir(config.base_dir).resolve(config).extlib)
    return resolve_callables(config, progress)


def load_config_and_run_fs_config_only(base_dir, progress=None):
    """Reads the config and lets the FS_CONFIG_ONLY callables change it: at start and at reload.

    Returns the config, the callables and every path resolved from what the callables left.
    `progress` (a dict) gets the phase's time limit once the config is read, and the
    callable running (see run_phase).
    """
    progress = {} if progress is None else progress
    config = load_config(base_dir)
    progress['time_limit'] = callable_time_limit(config)
    callables = prepare_callables(config, progress)
    run_fs_config_only(config, callables, progress)
    return config, callables, ServerDir(config.base_dir).resolve(config)


def callable_time_limit(config):
    """How long one FS_CONFIG_ONLY callable may run: [misc] startup_callable_timeout."""
    return config.server_config.misc.startup_callable_timeout


def _phase_name(phase):
    return {FS_CONFIG_ONLY: 'FS_CONFIG_ONLY', AFTER_STARTED: 'AFTER_STARTED'}.get(phase, phase)

