"""An application module that fails while being imported (CLI import-error test)."""

raise RuntimeError("broken_app import failure marker 7f3a")

app = None  # never reached
