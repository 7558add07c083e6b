"""``python -m drip``: the ``drip`` command, where its script is not on PATH."""

import sys

from drip.cli import main

sys.exit(main())
