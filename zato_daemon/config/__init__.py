"""Configuration of a server directory: server.conf, pickup.conf, simple-io.conf and sso.conf.

`load_config(config_dir)` returns a Config of typed, validated values; every key is declared in
`settings.py`, which docs/config.md is generated from.
"""

from zato_daemon.config.load import Config, ConfigFile, Section, load_config
from zato_daemon.config.settings import CONFIG_FILES

__all__ = ['CONFIG_FILES', 'Config', 'ConfigFile', 'Section', 'load_config']
