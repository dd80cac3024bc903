"""notebooks/README.md is the generated index, never stale."""
import pytest

from yfcore.lab import report


def test_readme_is_current():
    if not report.notebooks():
        pytest.skip("no notebooks/NN-*.ipynb yet, so there is no index to check")
    readme = report.notebooks_dir() / "README.md"
    hint = "regenerate with: python -c 'from yfcore.lab import report; report.write_readme()'"
    assert readme.is_file(), f"notebooks/README.md is missing; {hint}"
    assert readme.read_text(encoding="utf-8") == report.index_markdown(), f"notebooks/README.md is stale; {hint}"
