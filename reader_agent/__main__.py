"""`python -m reader_agent` runs the `rollcall-reader` command."""

from reader_agent.cli import main

raise SystemExit(main())
