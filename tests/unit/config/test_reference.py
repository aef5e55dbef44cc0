"""Tests of zato_daemon.config.reference: docs/config.md must equal what settings.py renders."""

import runpy
import warnings
from pathlib import Path

from zato_daemon.config import reference, settings

REPO = Path(__file__).parents[3]
COMMITTED = REPO / 'docs' / 'config.md'


def test_committed_reference_is_up_to_date():
    committed = COMMITTED.read_text(encoding='utf-8')
    assert committed == reference.render(), (
        f'docs/config.md is stale: regenerate it with `{reference.REGENERATE}` (from {REPO})')


def test_reference_opens_with_generated_notice():
    first = reference.render().splitlines()[0]
    assert 'zato_daemon/config/settings.py' in first
    assert reference.REGENERATE in first


def test_reference_documents_every_key():
    text = reference.render()
    for file in settings.CONFIG_FILES:
        assert f'\n## {file}\n' in text
    for spec in settings.SECTIONS:
        assert spec.doc.splitlines()[0] in text
    for setting in settings.SETTINGS:
        assert f'- **`{setting.name}`** ({setting.type}, default ' in text
        for line in setting.doc.splitlines():
            assert line in text


def test_module_prints_the_reference(capsys):
    # runpy runs `python -m zato_daemon.config.reference` in this process (unit tests do not
    # fork); it warns that the module is already imported, which is expected here.
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        runpy.run_module('zato_daemon.config.reference', run_name='__main__')
    assert capsys.readouterr().out == reference.render()
