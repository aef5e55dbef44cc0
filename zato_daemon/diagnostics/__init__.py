"""The troubleshooting store: slow calls and sample calls of each service.

store.py records them off the request path into SQLite in the state directory and reads
them back; report.py renders what was read as tables for people or JSON for diff. No
gevent here: the worker passes its sleep function to `DiagnosticsStore.run()`.
"""

from zato_daemon.diagnostics.report import format_json, format_samples, format_slow, format_table
from zato_daemon.diagnostics.store import (DATABASE_NAME, ROW_KEYS, Call, DiagnosticsReadError, DiagnosticsStore,
                                           Sampler, describe_error, list_samples, list_slow, render_payload)

__all__ = ['DATABASE_NAME', 'ROW_KEYS', 'Call', 'DiagnosticsReadError', 'DiagnosticsStore', 'Sampler',
           'describe_error', 'format_json', 'format_samples', 'format_slow', 'format_table', 'list_samples',
           'list_slow', 'render_payload']
