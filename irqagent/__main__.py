"""``python -m irqagent``: the same as the ``irqagent`` console script."""

import sys

from irqagent.cli import main

sys.exit(main())
