"""What start checks before it binds anything, beyond the configuration's own validation.

(Placeholder: filled in by the preflight work of issue 14.)
"""


def check(config, paths):
    """Raises a ZatoDaemonError (one line) when start would fail on `config` and `paths`."""
