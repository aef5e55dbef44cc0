"""Where a dump goes: appended to server.log, one journal entry, stdout in --fg mode.

Runs in the dump thread (dump/trigger.py), so it uses no logging and no lock the main
thread may hold: server.log is opened for each dump with O_APPEND and written with
os.write (which also follows a rotation), the journal gets one entry through
logs.journal.sendv (which moves an entry of hundreds of KiB out of band, and lets the
other threads run while a slow journald makes it wait), and stdout gets plain os.write.
server.log comes first: the dump is on disk even while journald does not take entries.
"""

import os

from zato_daemon.dump.collect import collect
from zato_daemon.dump.render import journal_fields, render_text, write_text_to_fd
from zato_daemon.logs import journal


class DumpWriter:
    """The on_dump of a DumpTrigger: collects this process, renders it, writes it out.

    `before_dump` and `after_dump` (the dump, as data) are called around each dump, in
    the dump thread: the master forwards the request to its workers, a worker tells the
    master its dump is written.
    """

    def __init__(self, role, server_dir, server_log, budget_bytes, to_journal, to_stdout, before_dump=None,
                 after_dump=None):
        self.role = role
        self.server_dir = server_dir
        self.before_dump = before_dump
        self.after_dump = after_dump
        self.trigger = None
        self.configure(server_log, budget_bytes, to_journal, to_stdout)

    def configure(self, server_log, budget_bytes, to_journal, to_stdout):
        """Where and how big the next dumps are; a reload of the master calls it again.

        Each is one attribute assignment, so a dump in progress in the dump thread sees
        either value of each, never a broken one.
        """
        self.server_log = server_log
        self.budget_bytes = budget_bytes
        self.to_journal = to_journal and journal.is_available()
        self.to_stdout = to_stdout

    def __call__(self):
        if self.before_dump is not None:
            self.before_dump()
        dump = collect(self.trigger.main_thread_ident, self.role, str(self.server_dir))
        text = render_text(dump, self.budget_bytes)
        self.write_server_log(text)
        if self.to_stdout:
            write_text_to_fd(1, text)
        if self.to_journal:
            journal.sendv(*journal_fields(dump, text))
        # Last: the master kills a hung worker as soon as it hears its dump is written, so
        # everything must be out by then. A journald that has fallen behind delays that, up
        # to the master's HUNG_DUMP_WAIT, rather than lose the journal entry.
        if self.after_dump is not None:
            self.after_dump(dump)

    def write_server_log(self, text):
        fd = os.open(self.server_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            write_text_to_fd(fd, text)
        finally:
            os.close(fd)
