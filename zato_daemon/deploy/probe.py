"""Imports service modules in a disposable child process before any worker deploys them.

(Placeholder: filled in by the deploy work of issue 14.)
"""


def vet_configured(config, paths):
    """Raises ServiceDeployError when a configured service module would not deploy."""
