"""`python -m digest` is the same as the `digest` command."""

from digest.cli import main

main()
