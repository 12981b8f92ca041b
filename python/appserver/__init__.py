"""appserver: a production WSGI server with a C++ core.

Run it with the ``appserver`` console script or ``python -m appserver``; both accept the
same options as the standalone executable (``appserver --help``).
"""

import sys

from ._appserver import __version__
from ._appserver import main as _native_main

__all__ = ["__version__", "main"]


def main(argv=None):
    """Run the server with ``argv`` (default: ``sys.argv``); return the exit code."""
    args = list(sys.argv if argv is None else argv)
    args[0:1] = ["appserver"]
    return _native_main(args)
