"""Where the package's data lives; a module of its own so that anything can import it without a cycle."""

from __future__ import annotations

from pathlib import Path


def model_yaml_dir() -> Path:
    """Return the folder of the shipped model YAMLs (inside the package when installed from a wheel)."""
    here = Path(__file__).resolve().parent
    installed = here / "models_yaml"
    return installed if installed.is_dir() else here.parent / "models_yaml"
