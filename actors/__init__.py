"""Actors shipped with Lattice: sample actors (each in its own folder) and, later, the Python
actor SDK and WIT world."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
