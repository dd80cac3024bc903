"""Notebook regression: every notebook, run in quick mode in a fresh kernel,
must run without an error, reproduce its committed deterministic outputs
(layouts, errno values, reports, verdicts of deterministic claims) and print
a VERDICT line and write a result for each of its claims. Every claim must
have a committed reference result; a deterministic claim (data/claims.csv,
kind) must reach the reference's verdict, a timing claim at least a verdict.
Cells tagged "nondeterministic" (timings, run sizes, addresses that move)
are not compared; addresses are masked everywhere.

test_flipped_verdict_is_caught proves the checks can fail: it flips one
committed verdict in temporary copies and expects each check to object."""
import json
import os
import re
import shutil
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
_VERDICT = re.compile(r"^VERDICT (?P<id>[\w-]+): (?P<word>.+?) — ", re.MULTILINE)


def _text(nb) -> str:
    return "".join(
        "".join(out.get("text", "")) for cell in nb.cells if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )


def verdict_problems(stem: str, nb, fresh_dir: Path, ref_dir: Path) -> list[str]:
    """What is wrong with an executed notebook's verdicts: error outputs, a
    claim without a VERDICT line, a result file or a committed reference, a
    deterministic claim whose printed or recorded verdict differs from the
    reference's. Empty when all is well."""
    problems = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"cell {i} raised {out.get('ename')}: {out.get('evalue')}")
    printed = {m["id"]: m["word"] for m in _VERDICT.finditer(_text(nb))}
    claims = [c for c in registry().values() if c.notebook == stem]
    if not claims:
        problems.append(f"{stem} has no claims in data/claims.csv")
    for claim in claims:
        if claim.id not in printed:
            problems.append(f"no VERDICT line for {claim.id}")
        fresh, ref = fresh_dir / f"{claim.id}.json", ref_dir / f"{claim.id}.json"
        if not fresh.is_file():
            problems.append(f"no result written for {claim.id}")
        if not ref.is_file():
            problems.append(f"no committed reference result for {claim.id} ({ref.name}): run "
                            f"`yfcore report --reference --only {stem[:2]}`")
            continue
        was = json.loads(ref.read_text(encoding="utf-8"))["verdict"]
        if claim.kind != "deterministic":
            continue
        if claim.id in printed and printed[claim.id] != was:
            problems.append(f"{claim.id}: the reference run says {was!r}, this run printed {printed[claim.id]!r}")
        if fresh.is_file():
            now = json.loads(fresh.read_text(encoding="utf-8"))["verdict"]
            if now != was:
                problems.append(f"{claim.id}: the reference run says {was!r}, this run recorded {now!r}")
    return problems


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
    # Errors are collected below with the other problems, cell by cell.
    result = fixture.check(str(path), raise_errors=False)
    problems = verdict_problems(path.stem, result.nb_final, tmp_path, reference_dir())
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
    assert not result.diff_filtered, f"{path.name} drifted from its committed outputs:\n{result.diff_string}\n{result.diff_filtered}"


def _deterministic_notebook():
    # The committed notebook with the most deterministic claims: its
    # committed outputs and data/reference/ come from one reference run.
    table = registry()
    best = max(NOTEBOOKS, key=lambda p: sum(c.notebook == p.stem and c.kind == "deterministic"
                                             for c in table.values()))
    claim = next(c for c in table.values() if c.notebook == best.stem and c.kind == "deterministic")
    return best, claim


def test_flipped_verdict_is_caught(tmp_path):
    path, claim = _deterministic_notebook()
    nb = nbformat.read(path, as_version=4)
    fresh, ref = tmp_path / "fresh", tmp_path / "reference"
    fresh.mkdir()
    shutil.copytree(reference_dir(), ref)
    for c in registry().values():
        if c.notebook == path.stem:
            shutil.copy(ref / f"{c.id}.json", fresh)
    # The committed run itself passes: the checks are not failing by default.
    assert verdict_problems(path.stem, nb, fresh, ref) == []

    was = json.loads((ref / f"{claim.id}.json").read_text())["verdict"]
    flipped = {"holds": "fails", "fails": "holds", "reproduced": "not reproduced",
               "not reproduced": "reproduced"}[was]

    # 1. A temporary copy of the notebook whose VERDICT line says the opposite.
    copy = nbformat.from_dict(json.loads(json.dumps(nb)))
    hits = 0
    for cell in copy.cells:
        for out in cell.get("outputs", []):
            if "text" in out and f"VERDICT {claim.id}: {was} — " in out["text"]:
                out["text"] = out["text"].replace(f"VERDICT {claim.id}: {was} — ", f"VERDICT {claim.id}: {flipped} — ")
                hits += 1
    assert hits == 1
    problems = verdict_problems(path.stem, copy, fresh, ref)
    assert any(f"this run printed {flipped!r}" in p for p in problems), problems

    # 2. The fresh result file flipped.
    r = json.loads((fresh / f"{claim.id}.json").read_text())
    (fresh / f"{claim.id}.json").write_text(json.dumps(r | {"verdict": flipped}))
    problems = verdict_problems(path.stem, nb, fresh, ref)
    assert any(f"this run recorded {flipped!r}" in p for p in problems), problems
    shutil.copy(ref / f"{claim.id}.json", fresh)

    # 3. The committed reference missing, 4. an execution error.
    (ref / f"{claim.id}.json").unlink()
    assert any("no committed reference result" in p for p in verdict_problems(path.stem, nb, fresh, ref))
    shutil.copy(fresh / f"{claim.id}.json", ref)
    copy = nbformat.from_dict(json.loads(json.dumps(nb)))
    last_code = [c for c in copy.cells if c.cell_type == "code"][-1]
    last_code.outputs.append(
        nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=[]))
    assert any("raised ValueError: boom" in p for p in verdict_problems(path.stem, copy, fresh, ref))
