"""The `dappled` command line: parses arguments and calls library functions."""

from dappled.cli.main import cli, main

__all__ = ["cli", "main"]
