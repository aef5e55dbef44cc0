"""`zato-daemon diagnose`: several dumps of every process, compared (issue 19; being built)."""

from zato_daemon.errors import ZatoDaemonError

DEFAULT_DUMPS = 3
DEFAULT_INTERVAL = 2.0


def add_arguments(parser):
    parser.add_argument('--dumps', type=int, default=DEFAULT_DUMPS, metavar='N',
                        help=f'dumps to take of every process (default {DEFAULT_DUMPS})')
    parser.add_argument('--interval', type=float, default=DEFAULT_INTERVAL, metavar='S',
                        help=f'seconds between two dumps (default {DEFAULT_INTERVAL:g})')
    parser.add_argument('--json', action='store_true', help='print JSON')


def run(args, server_dir, pid, paths):
    raise ZatoDaemonError('diagnose is not built yet')
