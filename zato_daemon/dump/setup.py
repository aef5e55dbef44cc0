"""Installs the SIGURG dump in a master or a worker: the trigger, its writer, faulthandler.

faulthandler.enable() is part of it: a fatal signal, including the SIGABRT systemd's
watchdog sends to a hung master, then leaves a C-level traceback of every thread on
stderr, which is the journal under systemd.
"""

import faulthandler

from zato_daemon.dump.collect import os_thread_ident
from zato_daemon.dump.sink import DumpWriter
from zato_daemon.dump.trigger import DumpTrigger
from zato_daemon.logs.setup import wants_journal, writes_stdout


def install_dump(config, server_dir, role, foreground, start_thread, after_dump=None, before_dump=None,
                 count_failure=None):
    """Installs and returns the DumpTrigger of this process. Runs in its main thread.

    `count_failure()` is called once for each part of a dump that fails (sink.DumpWriter),
    in the dump thread: the master's and the workers' dump failures in the metrics.
    """
    # Read here, in the main thread: under gevent's patch_all threading.main_thread().ident
    # is a greenlet's, and collect() needs the OS thread's.
    writer = DumpWriter(role, server_dir.base, os_thread_ident(), server_dir.dump_records,
                        **_writer_settings(config, server_dir, foreground),
                        before_dump=before_dump, after_dump=after_dump, count_failure=count_failure)
    trigger = DumpTrigger(writer, start_thread, on_error=lambda error: writer.failed('dump', error))
    faulthandler.enable()
    trigger.install()
    return trigger


def reconfigure_dump(trigger, config, server_dir, foreground):
    """After a reload: the next dumps follow the new [logging] server_log, dump_max_size, journal."""
    trigger.on_dump.configure(**_writer_settings(config, server_dir, foreground))


def _writer_settings(config, server_dir, foreground):
    settings = config.server_config.logging
    use_journal = wants_journal(settings.journal)
    return dict(server_log=server_dir.server_log, budget_bytes=settings.dump_max_size,
                to_journal=use_journal, to_stdout=writes_stdout(foreground, use_journal))
