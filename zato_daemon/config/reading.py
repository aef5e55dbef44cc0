"""Reads the text of one configuration file, whatever is in its place.

A configuration file must be a regular file of at most MAX_FILE_SIZE bytes of UTF-8. It is
checked with stat() before it is opened, opened without blocking and read up to that size,
so that a FIFO, a device or a directory in its place is a one-line ConfigError, never a hang
or a read without end (a FIFO with no writer blocks open(); /dev/zero never ends). A UTF-8
byte order mark at its start is dropped.
"""

import os
import stat

from zato_daemon.config.settings import MAX_FILE_SIZE
from zato_daemon.errors import ConfigError

# Windows editors start UTF-8 files with one; configparser would take it for part of a key.
UTF8_BOM = b'\xef\xbb\xbf'
_FILE_KINDS = ((stat.S_ISDIR, 'a directory'), (stat.S_ISFIFO, 'a FIFO (named pipe)'),
               (stat.S_ISSOCK, 'a socket'), (stat.S_ISCHR, 'a character device'),
               (stat.S_ISBLK, 'a block device'))


def read_text(path, required):
    """The text of one file, None when an optional one is missing; ConfigError otherwise."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        # A dangling symlink is a broken file, not an absent one.
        if path.is_symlink():
            raise ConfigError('cannot read the file: it is a symlink to nothing; point it at the '
                              'file or remove it', path=path) from None
        if required:
            raise ConfigError(f'file not found; a server directory must hold {path.name} (see the '
                              'shipped /etc/zato-daemon/ for a documented one)', path=path) from None
        return None
    except OSError as error:
        raise _unreadable(error, path) from None
    _check_kind(status.st_mode, path)
    return decode(_read_bounded(path), path)


def _read_bounded(path):
    # O_NONBLOCK: if a FIFO replaced the file since stat(), open() must not wait for a writer.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        raise _unreadable(error, path) from None
    try:
        _check_kind(os.fstat(fd).st_mode, path)
        chunks, size = [], 0
        while size <= MAX_FILE_SIZE:
            chunk = os.read(fd, MAX_FILE_SIZE + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise _unreadable(error, path) from None
    finally:
        os.close(fd)
    if size > MAX_FILE_SIZE:
        raise ConfigError(f'larger than {MAX_FILE_SIZE // 1024 // 1024} MiB, which no configuration '
                          'file is; check that this is the right file', path=path)
    return b''.join(chunks)


def file_kind_problem(mode):
    """What a file of this st_mode is when it is not a regular file ('a FIFO (named pipe)'),
    else None. Pure."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _FILE_KINDS if test(mode)), 'a file of another kind')


def _check_kind(mode, path):
    kind = file_kind_problem(mode)
    if kind is not None:
        raise ConfigError(f'not a regular file but {kind}; {path.name} must be a regular file',
                          path=path)


def _unreadable(error, path):
    return ConfigError(f'cannot read the file: {error.strerror or error}; check that it is a '
                       'readable file', path=path)


def decode(data, path):
    """The text of a file's bytes: UTF-8, a leading BOM dropped. Raises ConfigError naming the
    line of the first byte that is not UTF-8. Pure."""
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM):]
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as error:
        line = data.count(b'\n', 0, error.start) + 1
        column = error.start - (data.rfind(b'\n', 0, error.start) + 1) + 1
        raise ConfigError(f'not valid UTF-8 ({error.reason} at byte {column} of the line); save the '
                          'file as UTF-8', path=path, line=line) from None
