"""`python -m dappled`: the `dappled` command line without its console script (e.g. from a checkout
on a machine where the package is not installed)."""

from dappled.cli import main

if __name__ == "__main__":
    main()
