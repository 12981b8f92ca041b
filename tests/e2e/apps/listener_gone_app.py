"""Imported in the worker (--lazy-apps), closes the listening socket under it, so the
worker's set-up throws (Asio cannot register the descriptor); its atexit handler must not
run in a worker that ends that way (it leaves with _exit, never through the interpreter)."""

import atexit
import os
import socket

for _name in os.listdir("/proc/self/fd"):
    _fd = int(_name)
    try:
        _s = socket.socket(fileno=_fd)
    except OSError:
        continue
    try:
        _listening = bool(_s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except OSError:
        _listening = False
    _s.detach()
    if _listening:
        os.close(_fd)


def _at_exit():
    with open(os.path.join(os.environ["E2E_STATE_DIR"], f"atexit-{os.getpid()}"), "w"):
        pass


atexit.register(_at_exit)


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"unreachable"]
