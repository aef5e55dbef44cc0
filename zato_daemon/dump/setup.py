"""Installs the SIGURG dump in a master or a worker: the trigger, its writer, faulthandler.

faulthandler.enable() is part of it: a fatal signal, including the SIGABRT systemd's
watchdog sends to a hung master, then leaves a C-level traceback of every thread on
stderr, which is the journal under systemd.
"""

import faulthandler

from zato_daemon.dump.sink import DumpWriter
from zato_daemon.dump.trigger import DumpTrigger
from zato_daemon.logs.setup import server_log_path, wants_journal, writes_stdout


def install_dump(config, server_dir, role, foreground, start_thread, after_dump=None, before_dump=None):
    """Installs and returns the DumpTrigger of this process. Runs in its main thread."""
    settings = config.server_config.logging
    use_journal = wants_journal(settings.journal)
    writer = DumpWriter(role, server_dir.base, server_log_path(config, server_dir), settings.dump_max_size,
                        to_journal=use_journal, to_stdout=writes_stdout(foreground, use_journal),
                        after_dump=after_dump)

    def on_dump():
        if before_dump is not None:
            before_dump()
        writer()

    trigger = DumpTrigger(on_dump, start_thread)
    writer.trigger = trigger
    faulthandler.enable()
    trigger.install()
    return trigger
