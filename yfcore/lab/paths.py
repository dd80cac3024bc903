"""Where the lab reads and writes: the clone's root and its run folders."""
import os
from pathlib import Path

__all__ = ["env_flag", "root", "results_dir", "reference_dir", "reports_dir", "notebooks_dir"]

_TRUE = {"1", "true", "yes"}


def env_flag(name: str) -> bool:
    """True when environment variable `name` is "1", "true" or "yes" (any case)."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def root() -> Path:
    """The repository root: the nearest parent of this package holding data/claims.csv."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "data" / "claims.csv").is_file():
            return parent
    raise RuntimeError(
        f"cannot find the yfcore repository root (a directory holding data/claims.csv) "
        f"above {here.parent}; yfcore.lab works from a clone (pip install -e .)"
    )


def results_dir() -> Path:
    """The run folder for fresh results: $YF_RESULTS, else <root>/results; created if missing."""
    override = os.environ.get("YF_RESULTS")
    path = Path(override) if override else root() / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def reference_dir() -> Path:
    """The committed reference results, <root>/data/reference."""
    return root() / "data" / "reference"


def reports_dir() -> Path:
    """Executed notebooks and their HTML, <root>/reports."""
    return root() / "reports"


def notebooks_dir() -> Path:
    """The source notebooks, <root>/notebooks."""
    return root() / "notebooks"
