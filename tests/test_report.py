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
        "id,notebook,seed_date,statement,seed_figure,unit,rule\n"
        "demo,01-ok,2013,a claim,1,x,holds if value > 0\n"
    )
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "01-ok.ipynb", OK_CELLS)
    _notebook(nbs / "02-bad.ipynb", BAD_CELLS)
    monkeypatch.setattr(report, "notebooks_dir", lambda: nbs)
    monkeypatch.setattr(report, "reports_dir", lambda: tmp_path / "reports")
    monkeypatch.setattr(report.claims, "_default_path", lambda: tmp_path / "data" / "claims.csv")
    for module in (report, report.claims):
        monkeypatch.setattr(module, "reference_dir", lambda: tmp_path / "data" / "reference")
    monkeypatch.setenv("YF_RESULTS", str(tmp_path / "results"))
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
    assert "| [02-bad](02-bad.ipynb) | — | — | — |" in text
