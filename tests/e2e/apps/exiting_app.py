"""An application module that calls sys.exit() while being imported (CLI test)."""

import sys

sys.exit(0)  # even a "success" code: the server cannot serve, and must say why

app = None  # never reached
