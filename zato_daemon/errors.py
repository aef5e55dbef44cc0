"""The exception hierarchy and the process exit codes.

Rule: this module imports nothing from the package, so every layer can raise these.
Errors are raised deep and translated to an exit status once, in `cli.main()` or in
a forked worker's entry point.
"""

import os

# Exit statuses are the BSD codes systemd.exec(5) documents, so `systemctl status`
# names them. 78 is listed in the unit's RestartPreventExitStatus=: restarting a
# server whose configuration is wrong cannot help.
EXIT_OK = os.EX_OK                    # 0: clean stop
EXIT_USAGE = os.EX_USAGE              # 64: bad command line
EXIT_NOINPUT = os.EX_NOINPUT          # 66: DIR is not a server directory (no server.conf)
EXIT_UNAVAILABLE = os.EX_UNAVAILABLE  # 69: already running, port in use, server not answering
EXIT_SOFTWARE = os.EX_SOFTWARE        # 70: a bug: an exception nobody expected
EXIT_CANTCREAT = os.EX_CANTCREAT      # 73: a state, logs or runtime directory or file cannot be written
EXIT_NOPERM = os.EX_NOPERM            # 77: this user may not: not root, not in the server's group
EXIT_CONFIG = os.EX_CONFIG            # 78: bad config, a service that will not deploy


class ZatoDaemonError(Exception):
    """Base of every error this package raises on purpose; `exit_status` says how the process ends."""

    exit_status = EXIT_SOFTWARE


class ConfigError(ZatoDaemonError):
    """A configuration file, section, key or value is wrong.

    The message is one line naming the file, the line where known, the key and what was expected.
    """

    exit_status = EXIT_CONFIG

    def __init__(self, message, path=None, line=None, key=None):
        self.path = path
        self.line = line
        self.key = key
        self.reason = message
        super().__init__(self._format())

    def _format(self):
        where = ''
        if self.path:
            where = str(self.path)
            if self.line:
                where += f':{self.line}'
            where += ': '
        key = f'{self.key}: ' if self.key else ''
        return f'{where}{key}{self.reason}'


class UsageError(ZatoDaemonError):
    """The command line is wrong (a payload that is not JSON, say)."""

    exit_status = EXIT_USAGE


class StartupCallableError(ZatoDaemonError):
    """A startup callable could not be found (exit 78: the config names it wrong) or raised
    (exit 70: its code failed, which a restart may cure, so systemd may restart on it)."""

    def __init__(self, message, exit_status=EXIT_CONFIG, details=''):
        super().__init__(message)
        self.exit_status = exit_status
        self.details = details


class DirectoryError(ZatoDaemonError):
    """A directory or file the server must write cannot be created or opened."""

    exit_status = EXIT_CANTCREAT


class ServiceDeployError(ZatoDaemonError):
    """A service module could not be imported, or holds no valid service."""

    exit_status = EXIT_CONFIG

    def __init__(self, message, path=None, line=None):
        self.path = path
        self.line = line
        self.reason = message
        where = f'{path}:{line}: ' if path and line else (f'{path}: ' if path else '')
        super().__init__(f'{where}{message}')


class ServiceNotFound(ZatoDaemonError):
    """No service of that name is deployed."""

    def __init__(self, name):
        self.name = name
        super().__init__(f'no service named {name!r} is deployed')


class AlreadyRunning(ZatoDaemonError):
    """Another server already holds this server directory's pidfile lock."""

    exit_status = EXIT_UNAVAILABLE


class NotRunning(ZatoDaemonError):
    """The CLI found no running server for a server directory."""

    exit_status = EXIT_UNAVAILABLE


class AddressInUse(ZatoDaemonError):
    """The listening address could not be bound."""

    exit_status = EXIT_UNAVAILABLE


class NotAServerDirectory(ZatoDaemonError):
    """The CLI was given a directory without server.conf (or no directory at all)."""

    exit_status = EXIT_NOINPUT


class NoPermission(ZatoDaemonError):
    """The user running the CLI may not read a server's file or signal its master."""

    exit_status = EXIT_NOPERM


class AdminCallError(ZatoDaemonError):
    """The admin socket answered with an error, or did not answer."""

    exit_status = EXIT_UNAVAILABLE


class HaltServer(BaseException):
    """Stops the master's main loop with a reason, an exit status and how to stop workers.

    A BaseException so that code catching Exception cannot swallow a shutdown.
    `graceful` lets in-flight requests finish; otherwise workers are told to quit now.
    """

    def __init__(self, reason, exit_status=EXIT_OK, graceful=True):
        super().__init__(reason)
        self.reason = reason
        self.exit_status = exit_status
        self.graceful = graceful


class ConnectionAborted(BaseException):
    """Thrown into a connection's greenlet by the server itself, to end it (a drain deadline).

    A BaseException, and one the router lets through: a service's own failures, whatever
    their class, become 500s, but this one must end the connection.
    """


class HttpError(ZatoDaemonError):
    """A request cannot be served; `status` is the HTTP status the client gets."""

    status = 500

    def __init__(self, message, status=None):
        if status is not None:
            self.status = status
        self.reason = message
        super().__init__(message)
