"""``python -m pytest_losstrend.catalogue``: print the catalogue's Markdown page."""

from __future__ import annotations

from pytest_losstrend.catalogue.entries import main

raise SystemExit(main())
