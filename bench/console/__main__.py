"""``python -m bench.console``: see :mod:`bench.console.run`."""

import sys

from bench.console.run import main

sys.exit(main())
