"""``python -m ivr.edge``: see :mod:`ivr.edge.cli`."""

import sys

from ivr.edge.cli import main

sys.exit(main())
