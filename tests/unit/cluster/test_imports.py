"""A single host never imports redis: not the master's modules, not a worker's, not the CLI."""

from tests.unit.test_import_guard import imported_from

MODULES = ['zato_daemon.cli', 'zato_daemon.master.arbiter', 'zato_daemon.master.launch', 'zato_daemon.worker.process',
           'zato_daemon.services.builtin', 'zato_daemon.config.settings', 'zato_daemon.cluster.settings',
           'zato_daemon.cluster.membership', 'zato_daemon.cluster.view']


def test_no_module_a_single_host_runs_imports_redis():
    assert imported_from(('redis',), MODULES) == '[]'
