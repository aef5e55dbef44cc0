"""Shared by every test level: nothing here may start a server or touch the system."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
