"""The `pubdata` command line (entry point `pubdata.cli:main`)."""

from pubdata.cli.app import app, main

__all__ = ["app", "main"]
