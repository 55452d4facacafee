"""`python -m vramguard` runs the command line."""

from vramguard.cli import main

raise SystemExit(main())
