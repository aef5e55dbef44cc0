import pytest

from tests.integration.helpers import ServerProcess, free_port, write_server_dir


@pytest.fixture
def server_factory(tmp_path):
    """Makes servers in their own directories under tmp_path; stops them all at the end."""
    servers = []

    def make(name='server', workers=1, start=True, **options):
        port = free_port()
        server_dir = write_server_dir(tmp_path / name, port, workers=workers, **options)
        server = ServerProcess(server_dir, port)
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(server_factory):
    """One running server with one worker and the example services."""
    return server_factory()
