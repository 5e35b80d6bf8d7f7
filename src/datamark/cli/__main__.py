"""``python -m datamark.cli``."""

from . import main

main()
