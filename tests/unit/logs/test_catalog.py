"""The event table, the catalog and docs/logging.md stay one thing."""

import re
from pathlib import Path

import zato_daemon
from tests.conftest import REPO_ROOT
from zato_daemon.logs import catalog
from zato_daemon.logs.levels import EVENTS

# The modules imported, wherever they are: the source tree, or the installed package under autopkgtest.
PACKAGE = Path(zato_daemon.__file__).parent


def test_committed_catalog_is_current():
    committed = (REPO_ROOT / 'systemd' / 'zato-daemon.catalog').read_text()
    assert committed == catalog.render_catalog(), (
        'systemd/zato-daemon.catalog is stale: python -m zato_daemon.logs.catalog catalog > systemd/zato-daemon.catalog')


def test_committed_docs_are_current():
    committed = (REPO_ROOT / 'docs' / 'logging.md').read_text()
    assert committed == catalog.render_docs(), (
        'docs/logging.md is stale: python -m zato_daemon.logs.catalog docs > docs/logging.md')


def test_message_ids_are_unique_128_bit_hex():
    ids = [event.message_id for event in EVENTS]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r'[0-9a-f]{32}', message_id) for message_id in ids)


def test_every_event_is_logged_somewhere():
    code = '\n'.join(path.read_text() for path in PACKAGE.rglob('*.py') if path.name not in ('levels.py', 'catalog.py'))
    unused = [event.name for event in EVENTS if not re.search(rf'\b{event.name}\b', code)]
    assert not unused, f'events never logged: {unused}'
