"""`python -m privbot` is the `privbot` command."""

from privbot.cli import main

raise SystemExit(main())
