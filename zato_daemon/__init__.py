"""zato-daemon: a gevent service server that is a first-class citizen of a Debian system."""

__version__ = '0.1.0'

# Service authors write `from zato_daemon import Service`; importing it pulls in no gevent.
from zato_daemon.services.base import Service  # noqa: E402

__all__ = ['Service', '__version__']
