"""The last-good set on disk: the manifest's format, its atomic replacement, the copies' names."""

import os

import pytest

from zato_daemon.deploy.manifest import (MANIFEST_NAME, Entry, ManifestError, copy_name, format_manifest,
                                         is_versioned_copy, manifest_signature, parse_manifest, read_manifest,
                                         write_atomically, write_manifest)

SHA = 'a' * 64
ENTRIES = {
    'b.py': Entry(SHA, ('b.one', 'b.two'), '/srv/pickup/b.py', copy_name('b.py', SHA)),
    'a.py': Entry('b' * 64, ('a.one',), '/srv/pickup/a.py', copy_name('a.py', 'b' * 64)),
}


def test_format_and_parse_are_inverses():
    assert parse_manifest(format_manifest(ENTRIES)) == ENTRIES


def test_equal_sets_give_equal_text():
    assert format_manifest(ENTRIES) == format_manifest(dict(reversed(list(ENTRIES.items()))))


def test_no_manifest_is_none_not_an_empty_set(tmp_path):
    assert read_manifest(tmp_path) is None
    write_manifest(tmp_path, {})
    assert read_manifest(tmp_path) == {}


@pytest.mark.parametrize('text, message', [
    ('', 'not a manifest'),
    ('[]', 'not a manifest'),
    ('{"version": 2, "files": {}}', 'version 2, expected 1'),
    ('{"version": 1}', 'not a manifest'),
    ('{"version": 1, "files": {"a.py": {"sha256": "x"}}}', 'not a manifest'),
    ('{"version": 1, "files": []}', 'not a manifest'),
])
def test_anything_else_is_a_manifest_error(text, message):
    with pytest.raises(ManifestError, match=message):
        parse_manifest(text)


def test_an_unreadable_manifest_is_a_manifest_error(tmp_path):
    (tmp_path / MANIFEST_NAME).mkdir()
    with pytest.raises(ManifestError, match='cannot read it'):
        read_manifest(tmp_path)


def test_a_copy_name_in_a_manifest_cannot_leave_the_directory():
    text = format_manifest({'a.py': Entry(SHA, ('a',), '/srv/pickup/a.py', '../../etc/passwd')})
    assert parse_manifest(text)['a.py'].copy == 'passwd'


def test_replacing_the_manifest_gives_a_new_signature_and_leaves_no_temporary_file(tmp_path):
    write_manifest(tmp_path, ENTRIES)
    before = manifest_signature(tmp_path)
    write_manifest(tmp_path, ENTRIES)
    assert manifest_signature(tmp_path) != before  # a new inode, even with the same text
    assert sorted(os.listdir(tmp_path)) == [MANIFEST_NAME]


def test_a_failed_replacement_leaves_what_was_there_and_no_temporary_file(tmp_path):
    target = tmp_path / 'x.py'
    target.mkdir()  # os.replace cannot put a file over a directory
    (target / 'inside').write_text('kept')
    with pytest.raises(IsADirectoryError):
        write_atomically(target, b'new')
    assert (target / 'inside').read_text() == 'kept'
    assert sorted(os.listdir(tmp_path)) == ['x.py']


def test_copies_are_named_by_file_and_hash():
    assert copy_name('crm.py', '0123456789abcdef' + 'f' * 48) == 'crm.0123456789abcdef.py'
    assert is_versioned_copy('crm.0123456789abcdef.py')
    assert is_versioned_copy('crm.v2.0123456789abcdef.py')
    assert not is_versioned_copy('crm.py')  # a copy an earlier version kept
    assert not is_versioned_copy('crm.0123456789ABCDEF.py')
    assert not is_versioned_copy('crm.0123456789abcde.py')
