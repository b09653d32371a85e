"""``python -m ezpz`` runs the CLI."""

from ezpz.cli import main

raise SystemExit(main())
