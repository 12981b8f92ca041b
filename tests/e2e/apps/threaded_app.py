"""An app that starts a background thread while it is imported (as schedulers and metric
pushers do), reporting which threads a worker has."""

import os
import threading

IMPORTED_IN = os.getpid()

_stop = threading.Event()
threading.Thread(target=_stop.wait, name="import-time-ticker", daemon=True).start()


def app(environ, start_response):
    names = sorted(t.name for t in threading.enumerate())
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Imported-In", str(IMPORTED_IN)),
                              ("X-Served-By", str(os.getpid()))])
    return [", ".join(names).encode()]
