"""``python -m drip.cli``."""

import sys

from . import main

sys.exit(main())
