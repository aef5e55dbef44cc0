"""`python -m zato_daemon` is the same as the `zato-daemon` command."""

import sys

from zato_daemon.cli import main

sys.exit(main())
