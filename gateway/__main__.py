"""``python -m gateway``: the command-line tool without installing it."""

from gateway.cli import main

main()
