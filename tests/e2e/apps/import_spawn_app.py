"""An app whose import starts a process (as some apps start a helper daemon), reporting
the signal mask that process was given."""

import subprocess

_proc = subprocess.run(["grep", "SigBlk", "/proc/self/status"], capture_output=True, timeout=20)
CHILD_SIGBLK = _proc.stdout.decode().split()[-1]


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [CHILD_SIGBLK.encode()]
