"""`python -m bench.scale`: the steady-state scale benchmark (`bench.scale.run`)."""

from bench.scale.run import main

raise SystemExit(main())
