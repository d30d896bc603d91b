"""`python -m granny.testbed ...` (until `granny testbed ...` dispatches here)."""

import sys

from .cli import main

sys.exit(main())
