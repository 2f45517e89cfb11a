"""An app whose module calls sys.exit(3) while it is imported (a config check gone wrong)."""

import sys

sys.exit(3)
