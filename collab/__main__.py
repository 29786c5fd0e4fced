"""``python -m collab``: the same command as ``collab`` (see :mod:`collab.cli`)."""

from collab.cli import main

main()
