"""`python -m podrelease`: the operator's command. It lives in `podrelease_cli` (the repository root,
not the Lambda layer); this module only hands over to it."""

from podrelease_cli.main import main

raise SystemExit(main())
