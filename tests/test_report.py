"""yfcore.lab.report: notebooks executed in fresh kernels, failures recorded, index written."""
import json

import nbformat
import pytest

from yfcore.lab import report

OK_CELLS = [
    "import os",
    "print('VERDICT demo: holds — quick', os.environ.get('YF_QUICK'), os.environ.get('YF_REFERENCE'))",
    "print(os.getcwd())",
]
BAD_CELLS = ["x = 1", "raise ValueError('boom')", "print('never')"]


def _notebook(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def lab(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "claims.csv").write_text(
        "id,notebook,seed_date,statement,origin,figure,unit,measure,measure_unit,kind,rule,detail\n"
        "demo,01-ok,2013,a claim,diary,1,x,value,x,deterministic,holds if value > 0,{value} x\n"
        "other,02-bad,2014,a bar of this project,extension,,,value,ns,timing,holds if value < 5,{value} ns\n"
    )
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "01-ok.ipynb", OK_CELLS)
    _notebook(nbs / "02-bad.ipynb", BAD_CELLS)
    monkeypatch.setattr(report, "notebooks_dir", lambda: nbs)
    monkeypatch.setattr(report, "reports_dir", lambda: tmp_path / "reports")
    monkeypatch.setenv("YF_CLAIMS", str(tmp_path / "data" / "claims.csv"))
    for module in (report, report.claims):
        monkeypatch.setattr(module, "reference_dir", lambda: tmp_path / "data" / "reference")
    monkeypatch.setenv("YF_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(report, "git_state", lambda: {"commit": "abc123", "dirty": False})
    monkeypatch.delenv("YF_ALLOW_DIRTY", raising=False)
    return tmp_path


def test_run_records_failures_and_goes_on(lab, capsys):
    with pytest.raises(report.ReportError) as info:
        report.run(quick=True)
    assert info.value.failed == ["02-bad"]
    reports = lab / "reports"
    ok = nbformat.read(reports / "01-ok.ipynb", as_version=4)
    assert ok.cells[1].outputs[0]["text"] == "VERDICT demo: holds — quick 1 None\n"
    assert ok.cells[2].outputs[0]["text"].strip() == str(lab / "notebooks")
    assert [c.execution_count for c in ok.cells] == [1, 2, 3]
    bad = nbformat.read(reports / "02-bad.ipynb", as_version=4)
    assert bad.cells[1].outputs[0]["ename"] == "ValueError"
    assert (reports / "01-ok.html").is_file() and (reports / "02-bad.html").is_file()
    index = (reports / "index.html").read_text()
    assert "01-ok.html" in index and "failed (ValueError: boom)" in index
    err = capsys.readouterr().err
    assert "01-ok: ok in" in err and "  VERDICT demo: holds" in err and "02-bad: failed" in err
    assert (lab / "notebooks" / "README.md").read_text() == report.index_markdown()


def test_reference_writes_back_clean_notebooks_only(lab):
    with pytest.raises(report.ReportError):
        report.run(reference=True)
    ok = nbformat.read(lab / "notebooks" / "01-ok.ipynb", as_version=4)
    assert ok.cells[1].outputs[0]["text"] == "VERDICT demo: holds — quick None 1\n"
    bad = nbformat.read(lab / "notebooks" / "02-bad.ipynb", as_version=4)
    assert all(not c.outputs for c in bad.cells)


def test_reference_refuses_a_dirty_tree(lab, monkeypatch):
    monkeypatch.setattr(report, "git_state", lambda: {"commit": "abc123", "dirty": True})
    with pytest.raises(report.DirtyTreeError, match="YF_ALLOW_DIRTY=1"):
        report.run(reference=True, only=["01"])
    assert not (lab / "reports").exists()
    monkeypatch.setenv("YF_ALLOW_DIRTY", "1")
    report.run(reference=True, only=["01"])
    ok = nbformat.read(lab / "notebooks" / "01-ok.ipynb", as_version=4)
    assert ok.cells[1].outputs[0]["text"] == "VERDICT demo: holds — quick None 1\n"


def test_run_pins_the_commit_for_the_kernels(lab):
    _notebook(lab / "notebooks" / "01-ok.ipynb", ["import os; print(os.environ['YF_GIT_COMMIT'])"])
    report.run(only=["01"])
    ok = nbformat.read(lab / "reports" / "01-ok.ipynb", as_version=4)
    assert ok.cells[0].outputs[0]["text"] == "abc123\n"


def _result(claim, verdict, value):
    return {"claim": claim, "verdict": verdict, "detail": f"{value} measured",
            "measured": {"value": value, "unit": "x", "median": value, "min": value, "max": value, "n": 1}}


def test_index_summary_marks_fresh_reference_and_changes(lab):
    ref = lab / "data" / "reference"
    ref.mkdir(parents=True)
    (ref / "demo.json").write_text(json.dumps(_result("demo", "fails", 0)))
    (ref / "other.json").write_text(json.dumps(_result("other", "holds", 3.14159)))
    # A stale fresh result of notebook 02 from an earlier run must not count as this run's.
    (lab / "results").mkdir()
    (lab / "results" / "other.json").write_text(json.dumps(_result("other", "fails", 9)))
    _notebook(lab / "notebooks" / "01-ok.ipynb", [
        "from yfcore.lab import claims",
        "claims.answer('demo', value=34.9924)",
    ])
    report.run(only=["01"])
    index = (lab / "reports" / "index.html").read_text()
    summary = index.split('<p class="summary">')[1].split("</p>")[0]
    assert summary.startswith("2 holds (1 of 2 claims from this run, the rest from the committed reference)")
    assert "1 differs from the reference: demo" in summary
    assert '<tr class="changed"><td>demo (<a href="01-ok.html">01</a>)' in index
    assert "35.0 x" in index and "3.14 x" in index and "34.99" not in index
    assert "fresh" in index and "reference" in index and "02-bad" not in index.split("<h2>Notebooks run")[1]
    assert "— (this project&#x27;s bar)" in index
    text = report.claims_text(report.claim_rows())
    assert text.splitlines()[0].startswith("1 holds, 1 fails")  # any fresh result counts without a run


def test_only_and_refusals(lab):
    index = report.run(only=["01"])
    assert index == lab / "reports" / "index.html"
    assert not (lab / "reports" / "02-bad.ipynb").exists()
    with pytest.raises(ValueError, match="numbered 07"):
        report.run(only=["07"])
    with pytest.raises(ValueError, match="--reference"):
        report.run(quick=True, reference=True)


def test_index_markdown_lists_claims(lab):
    ref = lab / "data" / "reference"
    ref.mkdir()
    (ref / "demo.json").write_text(json.dumps({"claim": "demo", "verdict": "holds"}))
    text = report.index_markdown()
    assert text.startswith(report.README_HEADER)
    assert "| [01-ok](01-ok.ipynb) | demo | holds | [demo.json](../data/reference/demo.json) |" in text
    assert "| [02-bad](02-bad.ipynb) | other | not run | [other.json](../data/reference/other.json) |" in text
