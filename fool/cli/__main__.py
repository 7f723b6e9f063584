"""`python -m fool.cli`: the same command group as the `fool` entry point."""

from fool.cli import main

main()
