"""The last-good set of hot-deployed modules, on disk in the state directory's deployed/.

The master's PickupDeployer writes it, every worker follows it (deploy/follower.py). It
holds the accepted source of every pickup file as a copy, and a manifest, `manifest.json`,
listing file name -> {sha256, services, source, copy}: `source` is the file's path in the
pickup directory, the path a worker deploys the copy under, so that `info` and `verify`
show it; `copy` the name of the copy.

A copy's name holds its hash (`version.0123456789abcdef.py`), so a new version never
overwrites the copy an older manifest names: copies are written before the manifest that
names them, the manifest is replaced atomically (a temporary file, then os.replace), and
copies are removed only after a manifest that no longer names them. A reader sees one
manifest or the next, and the copies it names, whatever it reads when.
"""

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

MANIFEST_NAME = 'manifest.json'
MANIFEST_VERSION = 1
COPY_HASH_LENGTH = 16


class ManifestError(Exception):
    """The manifest exists but cannot be read or is not one this version writes."""


@dataclass(frozen=True)
class Entry:
    """One file of the last-good set: its accepted source's hash, its services, its pickup path."""

    sha256: str
    services: tuple
    source: str
    copy: str

    def as_dict(self):
        return {'sha256': self.sha256, 'services': list(self.services), 'source': self.source, 'copy': self.copy}


def copy_name(name, sha256):
    """The name of the copy of pickup file `name` whose source has this hash."""
    return f'{name[:-len(".py")]}.{sha256[:COPY_HASH_LENGTH]}.py'


def is_versioned_copy(name):
    """Whether `name` is a copy_name() (and not a copy an earlier version named like its file)."""
    return re.fullmatch(rf'.+\.[0-9a-f]{{{COPY_HASH_LENGTH}}}\.py', name) is not None


def manifest_path(deployed_dir):
    return Path(deployed_dir) / MANIFEST_NAME


def copy_path(deployed_dir, copy):
    return Path(deployed_dir) / copy


def manifest_signature(deployed_dir):
    """What changes whenever the manifest is replaced (a new inode each time); raises OSError."""
    stat = manifest_path(deployed_dir).stat()
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def parse_manifest(text):
    """{file name: Entry} from the manifest's text; raises ManifestError on anything else."""
    try:
        data = json.loads(text)
        if data.get('version') != MANIFEST_VERSION:
            raise ManifestError(f'version {data.get("version")!r}, expected {MANIFEST_VERSION}')
        return {name: Entry(str(fields['sha256']), tuple(map(str, fields['services'])), str(fields['source']),
                            Path(str(fields['copy'])).name)
                for name, fields in data['files'].items()}
    except ManifestError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ManifestError(f'not a manifest: {exc!r}') from None


def format_manifest(entries):
    """The manifest's text for {file name: Entry}, sorted so that equal sets give equal text."""
    return json.dumps({'version': MANIFEST_VERSION,
                       'files': {name: entries[name].as_dict() for name in sorted(entries)}},
                      indent=2, sort_keys=True) + '\n'


def read_manifest(deployed_dir):
    """The last-good set, or None when there is no manifest; raises ManifestError."""
    try:
        text = manifest_path(deployed_dir).read_text(encoding='utf-8')
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f'cannot read it: {getattr(exc, "strerror", None) or exc}') from None
    return parse_manifest(text)


def write_manifest(deployed_dir, entries):
    """Replaces the manifest atomically; raises OSError."""
    write_atomically(manifest_path(deployed_dir), format_manifest(entries).encode())


def write_atomically(path, data):
    """Writes `data` to a temporary file next to `path`, then renames it over `path`."""
    path = Path(path)
    temporary = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    try:
        with open(temporary, 'wb') as stream:
            stream.write(data)
            stream.flush()
            # On disk before the rename: after a crash, the old version or the new one, never an empty file.
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            temporary.unlink()
        except OSError:
            pass
        raise
