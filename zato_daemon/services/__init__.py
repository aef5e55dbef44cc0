"""The public API for service authors: a service is a class with a `name` and `handle()`."""

from zato_daemon.services.base import Request, Response, Service

__all__ = ['Request', 'Response', 'Service']
