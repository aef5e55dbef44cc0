"""The services deployed in one worker, and the modules they came from.

Deploying a module is all or nothing: it is compiled and executed first, its
services validated, and only then swapped in. A module that fails leaves whatever
was deployed before it serving.
"""

import hashlib
import importlib
import linecache
import sys
import time
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path

from zato_daemon.errors import ServiceDeployError, ServiceNotFound
from zato_daemon.services.base import Service

# Hot-deployed files are not on sys.path; they live in sys.modules under this prefix so
# that code looking a class's module up by name (dataclasses, typing) finds it. They are
# not importable by that name.
DEPLOYED_MODULE_PREFIX = 'zato_deployed.'


@dataclass
class ModuleInfo:
    """One deployed module: where it came from and the SHA-256 of the source that runs."""

    path: str
    sha256: str
    deployed_at: float
    module_name: str
    service_names: list = field(default_factory=list)

    def as_dict(self):
        return {
            'path': self.path,
            'sha256': self.sha256,
            'deployed_at': self.deployed_at,
            'module': self.module_name,
            'services': list(self.service_names),
        }


@dataclass
class DeployedService:
    service_class: type
    module: ModuleInfo


def sha256_of(data):
    """The hex SHA-256 of bytes: the form `info` shows and `hash` prints."""
    return hashlib.sha256(data).hexdigest()


def _error_line(exc, path):
    """The line in `path` where an exception raised at import time came from."""
    if isinstance(exc, SyntaxError):
        return exc.lineno
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == path:
            line = frame.lineno
    return line


def _services_in(module):
    """The Service subclasses a module defines itself (not the ones it imports)."""
    found = []
    for value in vars(module).values():
        if (isinstance(value, type) and issubclass(value, Service) and value is not Service
                and value.__module__ == module.__name__):
            found.append(value)
    return found


class ServiceStore:
    """Services by name and modules by path, for one worker process."""

    def __init__(self):
        self.services = {}
        self.modules = {}

    def get(self, name):
        """The service class deployed under `name`; raises ServiceNotFound."""
        try:
            return self.services[name].service_class
        except KeyError:
            raise ServiceNotFound(name) from None

    def __contains__(self, name):
        return name in self.services

    def deploy_file(self, path, source=None, module_name=None):
        """Compiles and executes a .py file, then registers its services.

        `source` is the file's bytes when the caller already read them (so the hash is of
        exactly what runs). Raises ServiceDeployError naming the file and line.
        """
        path = str(path)
        if source is None:
            source = _read_source(path)
        module_name = module_name or self._module_name_for(path)
        module = self._execute(path, source, module_name)
        info = ModuleInfo(path, sha256_of(source), time.time(), module_name)
        self._register(module, info)
        # Only now that it serves: a module that failed validation must not replace the
        # one still serving, in sys.modules or in the source lines tracebacks show.
        sys.modules[module_name] = module
        _pin_source(path, source)
        return info

    def _module_name_for(self, path):
        # Two files of one name in different directories must not share a module.
        name = DEPLOYED_MODULE_PREFIX + Path(path).stem
        taken = {info.module_name: info.path for info in self.modules.values()}
        if taken.get(name, path) != path:
            name += '_' + hashlib.sha1(path.encode()).hexdigest()[:8]
        return name

    def deploy_module(self, dotted_name):
        """Imports an installed module by its dotted name and registers its services."""
        try:
            module = importlib.import_module(dotted_name)
        except Exception as exc:
            raise ServiceDeployError(f'cannot import module {dotted_name!r}: {exc!r}') from exc
        except SystemExit as exc:
            # As for a file: a module's sys.exit() is its failure, not the end of the process.
            raise ServiceDeployError(f'module {dotted_name!r} called sys.exit({exc.code!r}) while importing') from exc
        path = getattr(module, '__file__', None) or dotted_name
        source = _read_source(path) if path.endswith('.py') else b''
        info = ModuleInfo(path, sha256_of(source), time.time(), dotted_name)
        self._register(module, info)
        return info

    def deploy_classes(self, classes, origin):
        """Registers service classes defined in the package itself (the built-in ones)."""
        module = types.SimpleNamespace(__name__=origin)
        info = ModuleInfo(origin, '', time.time(), origin)
        self._check_and_swap(classes, info, module)
        return info

    def undeploy_file(self, path):
        """Removes a module's services, as when its file leaves the pickup directory."""
        info = self.modules.pop(str(path), None)
        if info is None:
            return None
        for name in info.service_names:
            self.services.pop(name, None)
        sys.modules.pop(info.module_name, None)
        return info

    def _execute(self, path, source, module_name):
        try:
            code = compile(source, path, 'exec')
        except (SyntaxError, ValueError) as exc:
            raise ServiceDeployError(f'syntax error: {getattr(exc, "msg", exc)}', path,
                                     getattr(exc, 'lineno', None)) from exc
        module = types.ModuleType(module_name)
        module.__file__ = path
        # In sys.modules while it executes (dataclasses look the module up by name), then
        # back to what was there: deploy_file installs it once it passed validation.
        previous = sys.modules.get(module_name)
        sys.modules[module_name] = module
        try:
            exec(code, module.__dict__)
        except Exception as exc:
            raise ServiceDeployError(f'exception while importing: {exc!r}', path,
                                     _error_line(exc, path)) from exc
        except SystemExit as exc:
            raise ServiceDeployError(f'called sys.exit({exc.code!r}) while importing', path,
                                     _error_line(exc, path)) from exc
        finally:
            _restore_module(module_name, previous)
        return module

    def _register(self, module, info):
        classes = _services_in(module)
        if not classes:
            raise ServiceDeployError('defines no Service subclass with a name', info.path)
        self._check_and_swap(classes, info, module)

    def _check_and_swap(self, classes, info, module):
        names = []
        for service_class in classes:
            name = service_class.name
            if not isinstance(name, str) or not name.strip():
                raise ServiceDeployError(
                    f'service class {service_class.__name__} has no `name` (a non-empty string)', info.path)
            owner = self.services.get(name)
            if owner is not None and owner.module.path != info.path:
                raise ServiceDeployError(
                    f'service name {name!r} is already deployed from {owner.module.path}', info.path)
            if name in names:
                raise ServiceDeployError(f'service name {name!r} is defined twice', info.path)
            names.append(name)
        old = self.modules.get(info.path)
        if old is not None:
            for name in old.service_names:
                self.services.pop(name, None)
        info.service_names = names
        self.modules[info.path] = info
        for service_class in classes:
            self.services[service_class.name] = DeployedService(service_class, info)

    def describe(self):
        """Each deployed service with its module's path and SHA-256, sorted by name."""
        return [
            {'name': name, 'path': deployed.module.path, 'sha256': deployed.module.sha256,
             'deployed_at': deployed.module.deployed_at}
            for name, deployed in sorted(self.services.items())
        ]


def _read_source(path):
    try:
        with open(path, 'rb') as source_file:
            return source_file.read()
    except OSError as exc:
        raise ServiceDeployError(f'cannot read: {exc.strerror}', path) from exc


def _restore_module(module_name, previous):
    if previous is None:
        sys.modules.pop(module_name, None)
    else:
        sys.modules[module_name] = previous


def _pin_source(path, source):
    # Tracebacks and the SIGURG dump then show the lines that actually run, even after
    # the file on disk is replaced by a version that failed to deploy. An entry with no
    # mtime is never invalidated by linecache.checkcache().
    text = source.decode('utf-8', 'replace')
    lines = text.splitlines(keepends=True)
    linecache.cache[path] = (len(text), None, lines, path)
