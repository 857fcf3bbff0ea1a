"""Shared fixtures for the host tests: where things are, and a running meter."""
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
MICROPYTHON = ROOT / "build" / "micropython"
VECTORS = pathlib.Path(os.environ.get("DLMS_VECTORS", ROOT.parent / "shared" / "vectors"))
