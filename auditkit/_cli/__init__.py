"""The `auditkit` command line, a thin shell over the public names."""

from auditkit._cli.main import main

__all__ = ["main"]
