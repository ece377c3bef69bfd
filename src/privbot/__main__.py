"""`python -m privbot` is the `privbot` command."""

from privbot.cli.main import main

raise SystemExit(main())
