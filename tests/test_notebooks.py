"""Notebook regression: every notebook, run in quick mode in a fresh kernel,
must reproduce its committed deterministic outputs (layouts, errno values,
reports, verdicts of deterministic claims) and print a VERDICT line for each
of its claims. Cells tagged "nondeterministic" (timings, run sizes, addresses
that move) are not compared; addresses are masked everywhere. The verdicts
of reproductions (claims whose rule says "reproduced if"), deterministic by
nature, must also match the committed reference run's."""
import json
import os
import warnings
from pathlib import Path

import nbformat
import pytest

from yfcore.lab import reference_dir, registry

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from pytest_notebook.nb_regression import NBRegressionFixture

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]-*.ipynb"))

MASKS = (
    ("/cells/*/outputs", r"0x[0-9a-f]{8,16}", "0xADDR"),
)
IGNORE = (
    "/cells/*/outputs/*/data/image/png",
    "/cells/*/outputs/*/traceback",
    "/cells/*/execution_count",
    "/cells/*/outputs/*/execution_count",
    "/cells/*/metadata",
    "/metadata",
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_regression(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    masked = tuple(
        f"/cells/{i}/outputs"
        for i, cell in enumerate(nb.cells)
        if "nondeterministic" in cell.metadata.get("tags", [])
    )
    env = dict(os.environ, YF_QUICK="1", YF_RESULTS=str(tmp_path))
    env.pop("YF_REFERENCE", None)
    fixture = NBRegressionFixture(
        exec_timeout=900,
        exec_cwd=str(path.parent),
        exec_env=env,
        diff_ignore=IGNORE + masked,
        diff_replace=MASKS,
        diff_color_words=False,
        diff_use_color=False,
    )
    result = fixture.check(str(path), raise_errors=False)
    text = "".join(
        "".join(out.get("text", "")) for cell in result.nb_final.cells if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    claims = [c for c in registry().values() if c.notebook == path.stem]
    assert claims, f"{path.name} has no claims in data/claims.csv"
    for claim in claims:
        assert f"VERDICT {claim.id}: " in text, f"{path.name} printed no VERDICT line for {claim.id}"
        fresh = tmp_path / f"{claim.id}.json"
        assert fresh.is_file(), f"{path.name} wrote no result for {claim.id}"
        reference = reference_dir() / f"{claim.id}.json"
        if str(claim.rule).startswith("reproduced") and reference.is_file():
            was = json.loads(reference.read_text())["verdict"]
            now = json.loads(fresh.read_text())["verdict"]
            assert now == was, f"{claim.id}: the reference run says {was!r}, this run {now!r}"
    assert not result.diff_filtered, f"{path.name} drifted from its committed outputs:\n{result.diff_string}\n{result.diff_filtered}"
