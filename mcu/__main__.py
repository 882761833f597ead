"""`python -m mcu` is the `mcu` command."""

import sys

from .cli import main

sys.exit(main())
