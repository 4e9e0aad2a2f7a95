"""Builds the stores and handlers of every area onto the :class:`homeserver.app.HomeServer`, in dependency order.

One function, one place: adding an area means adding its lines here (stores first, then handlers).
"""

from __future__ import annotations

from typing import Any


def build_components(hs: Any) -> None:
    """Create ``hs.<area>_store`` and ``hs.<area>_handler`` attributes. Order matters: later ones use earlier."""
