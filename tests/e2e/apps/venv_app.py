"""Says which environment it runs in; imports a module that only tests/e2e/test_standalone.py's
virtualenv has (so without that virtualenv the import fails)."""

import json
import subprocess
import sys

import e2e_venv_only_module


def application(environ, start_response):
    # sys.executable must be a real interpreter that sees the same environment.
    child = subprocess.run(
        [sys.executable, "-c", "import sys, e2e_venv_only_module as m; print(m.VALUE, sys.prefix)"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    body = json.dumps(
        {
            "prefix": sys.prefix,
            "base_prefix": sys.base_prefix,
            "executable": sys.executable,
            "value": e2e_venv_only_module.VALUE,
            "child": child.stdout.strip(),
            "child_error": child.stderr[-2000:],
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
