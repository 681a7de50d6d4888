"""Scaffold templates for ``lattice new`` (files ending in ``.tmpl``; ``{{name}}`` is replaced).

They are data, not code: the ``.tmpl`` suffix keeps pytest and ruff away from them here.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
