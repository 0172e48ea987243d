"""``python -m fairgen``: the same as the ``fairgen`` command (and what torchrun launches)."""

import sys

from .cli import main

sys.exit(main())
