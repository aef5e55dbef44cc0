"""Deploys what the config names: built-in services, `[services] modules` and `paths`, and
creates the caches of `[caches]`.

Runs in each worker at boot. Any failure here is fatal (exit 78): a server whose
configured services do not deploy must not pretend to be ready.
"""

from pathlib import Path

from zato_daemon.errors import ServiceDeployError
from zato_daemon.logs.levels import SERVICE_DEPLOYED
from zato_daemon.services.builtin import BUILTIN_ORIGIN, BUILTIN_SERVICES
from zato_daemon.services.cache_builtin import CACHE_SERVICES, CACHE_SERVICES_ORIGIN


def service_files(path):
    """The .py files a configured path stands for: itself, or a directory's files, sorted."""
    path = Path(path)
    if path.is_dir():
        return sorted(child for child in path.glob('*.py')
                      if child.is_file() and not child.name.startswith(('_', '.')))
    if path.is_file():
        return [path]
    raise ServiceDeployError('no such file or directory; fix [services] paths in server.conf', path)


def create_configured_caches(caches, config):
    """Creates the caches `[caches]` in server.conf declares (validated when the config loaded)."""
    for name, fields in config.server_config.caches.items():
        caches.create(dict(fields, name=name))


def deploy_configured(store, config, service_paths, logger):
    """Deploys the built-in services, then configured modules, then configured paths (resolved)."""
    store.deploy_classes(BUILTIN_SERVICES, BUILTIN_ORIGIN)
    store.deploy_classes(CACHE_SERVICES, CACHE_SERVICES_ORIGIN)
    services = config.server_config.services
    deployed = []
    for dotted_name in services.modules:
        deployed.append(store.deploy_module(dotted_name))
    for configured in service_paths:
        for path in service_files(configured):
            deployed.append(store.deploy_file(path))
    for info in deployed:
        logger.info('Deployed %s (sha256 %s): %s', info.path, info.sha256, ', '.join(info.service_names),
                    extra=SERVICE_DEPLOYED.extra)
    return deployed
