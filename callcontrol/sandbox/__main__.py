"""``python -m callcontrol.sandbox up|down|status|build``."""

import sys

from callcontrol.sandbox.cli import main

sys.exit(main())
