"""`python -m podrelease_cli` (also `python -m podrelease` and the `podrelease` console script)."""

from podrelease_cli.main import main

raise SystemExit(main())
