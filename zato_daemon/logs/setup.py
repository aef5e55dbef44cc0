"""Configures the root logger of a master or worker process.

Called once in the master and again in each worker after fork (and after gevent's
patching, so handler locks are created patched). server.log goes through
WatchedFileHandler, which reopens the file when logrotate moves it.
"""

import logging
import logging.handlers
import sys

LINE_FORMAT = '%(asctime)s %(levelname)s {role}:%(process)d %(name)s - %(message)s'


def configure_logging(level, server_log, role, foreground):
    """Replaces the root logger's handlers with server.log and, in --fg mode, stdout."""
    formatter = logging.Formatter(LINE_FORMAT.format(role=role))
    handlers = []
    if server_log is not None:
        handlers.append(logging.handlers.WatchedFileHandler(server_log, encoding='utf-8'))
    if foreground:
        handlers.append(logging.StreamHandler(sys.stdout))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
