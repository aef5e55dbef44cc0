"""`[cluster]` of a loaded configuration, as the cluster code uses it. No redis import.

`from_config` is the one place that reads the password file: at start, at each reload and in
check-config (so a missing or unreadable file is exit 78 before anything binds), and in
`zato-daemon cluster`. The password never reaches a log record, master.json, `info` or a
dump: ClusterSettings keeps it out of its repr, and everything shows `shown_url`.
"""

import socket
from dataclasses import dataclass, field

from zato_daemon.cluster.urls import has_password, shown_url
from zato_daemon.errors import ConfigError

PASSWORD_FILE_KEY = '[cluster] password_file'
# A password file is one line; anything larger is the wrong file.
MAX_PASSWORD_FILE = 4096


@dataclass(frozen=True)
class ClusterSettings:
    """What a member needs to join: where Redis is, how to log in, which cluster, which member."""

    url: str = field(repr=False)
    name: str
    host_name: str
    heartbeat_ttl: float
    password: str = field(default=None, repr=False)

    @property
    def shown_url(self):
        return shown_url(self.url)

    def describe(self):
        """For master.json and `info`: nothing secret."""
        return {'name': self.name, 'host_name': self.host_name, 'redis_url': self.shown_url,
                'heartbeat_ttl': self.heartbeat_ttl}


def from_config(config):
    """The ClusterSettings of a configuration, or None for a single host (redis_url empty).
    Raises ConfigError when the password file cannot be read."""
    section = config.server_config.cluster
    if not section.redis_url:
        return None
    password = None
    if section.password_file and has_password(section.redis_url):
        raise ConfigError('redis_url holds a password and password_file names one too: keep only one, '
                          'password_file preferably', key=PASSWORD_FILE_KEY)
    if section.password_file:
        password = read_password(config.resolve_path(section.password_file))
    return ClusterSettings(url=section.redis_url, name=section.name, host_name=section.host_name or machine_name(),
                           heartbeat_ttl=section.heartbeat_ttl, password=password)


def read_password(path):
    """The password a file holds: its first line, without the line break. Raises ConfigError."""
    try:
        with open(path, 'rb') as stream:
            data = stream.read(MAX_PASSWORD_FILE + 1)
    except OSError as exc:
        raise ConfigError(f'cannot read {path}: {exc.strerror}; the file must be readable by the server\'s user',
                          key=PASSWORD_FILE_KEY) from None
    if len(data) > MAX_PASSWORD_FILE:
        raise ConfigError(f'{path} is over {MAX_PASSWORD_FILE} bytes: it should hold one line, the password',
                          key=PASSWORD_FILE_KEY)
    try:
        password = data.decode('utf-8').splitlines()[0] if data.strip() else ''
    except UnicodeDecodeError:
        raise ConfigError(f'{path} is not UTF-8 text', key=PASSWORD_FILE_KEY) from None
    if not password:
        raise ConfigError(f'{path} is empty: it should hold the password on its first line', key=PASSWORD_FILE_KEY)
    return password


def machine_name():
    """This machine's host name, the default member name."""
    return socket.gethostname()
