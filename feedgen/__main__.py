"""`python -m feedgen`: the same as the `feedgen` command."""

from feedgen.cli import main

main()
