"""yfcore.lab: statistics, interleaving, rules, answer(), the C toolchain and the CLI."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from yfcore.lab import bench, claims, stats, toolchain

ROOT = Path(__file__).resolve().parents[1]

HEADER = "id,notebook,seed_date,statement,origin,figure,unit,measure,measure_unit,kind,rule,detail\n"


# --- stats ---------------------------------------------------------------

def test_summary():
    assert stats.summary([3, 1, 2, 10]) == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4}
    s = stats.summary([5])
    assert s == {"median": 5.0, "min": 5.0, "max": 5.0, "n": 1}
    assert isinstance(s["n"], int) and isinstance(s["median"], float)
    with pytest.raises(ValueError):
        stats.summary([])


def test_fmt():
    s = {"median": 5.04, "min": 4.98, "max": 5.3, "n": 5}
    assert stats.fmt(s, "ns") == "5.04 ns [4.98..5.30]"
    assert stats.fmt(s, "us", scale=1e-3) == "0.00504 us [0.00498..0.00530]"
    assert stats.fmt({"median": 12345.6, "min": 100, "max": 20000, "n": 3}, "ns") == "12346 ns [100..20000]"
    assert stats.fmt(s, "") == "5.04 [4.98..5.30]"


def test_ratio_is_pairwise():
    # Pairwise ratios differ from the ratio of medians when rounds drift together.
    r = stats.ratio([2, 4, 8], [1, 2, 4])
    assert r == {"median": 2.0, "min": 2.0, "max": 2.0, "n": 3}
    with pytest.raises(ValueError, match="same rounds"):
        stats.ratio([1, 2], [1])


def test_quantity():
    assert stats.quantity(3.0, "ns") == "3 ns"
    assert stats.quantity("~5", "x") == "~5 x"
    assert stats.quantity(2, "") == "2"


# --- bench ---------------------------------------------------------------

def _recorder(names):
    calls = []

    def make(name):
        def run():
            calls.append(name)
            return float(len(calls))
        return run

    return calls, {n: make(n) for n in names}


def test_interleaved_rotates_and_discards_warmup():
    calls, competitors = _recorder("abc")
    samples = bench.interleaved(competitors, rounds=4, warmup=2)
    rounds = [calls[i:i + 3] for i in range(0, len(calls), 3)]
    assert rounds == [list("abc"), list("bca"), list("cab"), list("abc"), list("bca"), list("cab")]
    assert all(len(xs) == 4 for xs in samples.values())
    # The two warm-up rounds (calls 1..6) are dropped: round 2 runs c, a, b as calls 7, 8, 9.
    assert samples["a"] == [8.0, 10.0, 15.0, 17.0]
    assert sorted(x for xs in samples.values() for x in xs) == [float(i) for i in range(7, 19)]


def test_every_competitor_once_per_round():
    calls, competitors = _recorder(["x", "y"])
    bench.interleaved(competitors, rounds=5, warmup=0)
    for i in range(0, len(calls), 2):
        assert sorted(calls[i:i + 2]) == ["x", "y"]
    assert calls[0] == "x" and calls[2] == "y"


def test_quick_and_default_rounds(monkeypatch):
    for value, expected in [("1", True), ("TRUE", True), ("yes", True), ("0", False), ("", False)]:
        monkeypatch.setenv("YF_QUICK", value)
        assert bench.quick() is expected
        assert bench.default_rounds() == (5 if expected else 7)


def test_measure_and_argument_checks():
    m = bench.measure({"one": lambda: 1.0}, rounds=3)
    assert m == {"one": {"median": 1.0, "min": 1.0, "max": 1.0, "n": 3}}
    with pytest.raises(ValueError):
        bench.interleaved({}, rounds=3)
    with pytest.raises(ValueError):
        bench.interleaved({"one": lambda: 1.0}, rounds=0)


# --- rules ---------------------------------------------------------------

@pytest.mark.parametrize(
    "text, values, verdict",
    [
        ("holds if value >= 3", {"value": 3}, "holds"),
        ("holds if value >= 3", {"value": 2.9}, "fails"),
        ("reproduced if value == 1", {"value": 1}, "reproduced"),
        ("reproduced if value == 1", {"value": 0}, "not reproduced"),
        ("holds if value / base > 2 and not (value < 0 or base - 1 * 2 == -5)",
         {"value": 10, "base": 4}, "holds"),
        ("holds if -value < +2", {"value": -3}, "fails"),
        ("holds if 1 <= value < 10", {"value": 10}, "fails"),
    ],
)
def test_rule_verdicts(text, values, verdict):
    assert claims.Rule.parse(text).verdict(**values) == verdict


@pytest.mark.parametrize(
    "text",
    [
        "holds if __import__('os').system('true')",
        "holds if value.real > 1",
        "holds if abs(value) > 1",
        "holds if [value][0] > 1",
        "holds if value ** 2 > 1",
        "holds if 'a' < 'b'",
        "holds if True",
        "holds if (x := 1)",
        "holds if lambda: 1",
        "holds if value >",
        "true if value > 1",
        "holds when value > 1",
        "holds if",
    ],
)
def test_rule_rejects(text):
    with pytest.raises(ValueError):
        claims.Rule.parse(text)


def test_rule_missing_name_and_zero_division():
    rule = claims.Rule.parse("holds if value / base > 1")
    with pytest.raises(ValueError, match="needs base"):
        rule.verdict(value=1)
    with pytest.raises(ValueError, match="divides by zero"):
        rule.verdict(value=1, base=0)


# --- registry and answer() -----------------------------------------------

@pytest.fixture
def registry(tmp_path):
    path = tmp_path / "claims.csv"
    path.write_text(
        HEADER
        + "ctx-speed,01-context-switch,2013-03-02,\"asm switch is 5x faster, roughly\",diary,5,x,speedup,x,timing,"
          "holds if speedup >= 3,\"{speedup:range x} faster, {yf_ns} ns\"\n"
        + "guard-bug,02-guard,2014-05-01,the guard never fired,diary,1,crashes,crashes,crashes,deterministic,"
          "reproduced if crashes == 1,{crashes} crash in {runs} runs; {signal}\n"
        + "ext,03-x,2015,a bar of this project,extension,,,ratio,x,deterministic,"
          "holds if ratio / base >= 3,ratio {ratio}\n"
    )
    return claims.registry(path)


@pytest.fixture
def results(tmp_path, monkeypatch):
    out = tmp_path / "results"
    monkeypatch.setenv("YF_RESULTS", str(out))
    monkeypatch.delenv("YF_REFERENCE", raising=False)
    return out


def test_registry_reads_rows_in_order(registry):
    assert list(registry) == ["ctx-speed", "guard-bug", "ext"]
    c = registry["ctx-speed"]
    assert c.statement == "asm switch is 5x faster, roughly"
    assert c.rule.word == "holds" and c.rule.expr == "speedup >= 3"
    assert (c.origin, c.figure, c.unit, c.kind, c.measure) == ("diary", "5", "x", "timing", "speedup")
    assert c.variables == {"speedup", "yf_ns"}


def test_registry_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,notebook\n")
    with pytest.raises(ValueError, match="missing column"):
        claims.registry(bad)
    row = "a,01,2013,s,diary,1,x,v,x,timing,holds if v > 1,{v}\n"
    bad.write_text(HEADER + row + row)
    with pytest.raises(ValueError, match="duplicate"):
        claims.registry(bad)
    for text, why in [
        ("a,01,2013,s,diary,1,x,v,x,timing,holds if open('f'),{v}\n", ":2: claim a"),
        ("a,01,2013,s,paper,1,x,v,x,timing,holds if v > 1,{v}\n", "origin must be"),
        ("a,01,2013,s,diary,1,x,v,x,sometimes,holds if v > 1,{v}\n", "kind must be"),
        ("a,01,2013,s,diary,,,v,x,timing,holds if v > 1,{v}\n", "needs the diary's figure"),
        ("a,01,2013,a bar of this project,extension,3,x,v,x,timing,holds if v > 1,{v}\n", "no diary figure"),
        ("a,01,2013,s,extension,,,v,x,timing,holds if v > 1,{v}\n", "must say it is an extension"),
        ("a,01,2013,s,diary,1,x,w,x,timing,holds if v > 1,{v}\n", "measure 'w' is not a variable"),
        ("a,01,2013,s,diary,1,x,v,x,timing,holds if v > 1,{v.real}\n", "not a plain variable"),
    ]:
        bad.write_text(HEADER + text)
        with pytest.raises(ValueError, match=why):
            claims.registry(bad)


def test_repository_registry_parses():
    table = claims.registry()
    assert table and all(c.origin in claims.ORIGINS and c.kind in claims.KINDS for c in table.values())


def test_answer_writes_schema(registry, results, capsys):
    r = claims.answer("ctx-speed", speedup=[4.0, 4.2, 4.5], yf_ns={"median": 6.25, "min": 6.0, "max": 7.0, "n": 5},
                      registry=registry)
    assert capsys.readouterr().out == "VERDICT ctx-speed: holds — 4.20 x [4.00..4.50] faster, 6.25 ns\n"
    assert set(r) == {"claim", "notebook", "origin", "kind", "rule", "seed", "measured", "evidence", "verdict",
                      "detail", "provenance"}
    assert r["claim"] == "ctx-speed" and r["notebook"] == "01-context-switch" and r["origin"] == "diary"
    assert r["rule"] == "holds if speedup >= 3" and r["kind"] == "timing"
    assert r["seed"] == {"date": "2013-03-02", "statement": "asm switch is 5x faster, roughly",
                         "figure": 5.0, "unit": "x"}
    assert r["measured"] == {"value": 4.2, "unit": "x", "median": 4.2, "min": 4.0, "max": 4.5, "n": 3,
                             "samples": [4.0, 4.2, 4.5]}
    assert r["evidence"]["yf_ns"] == {"median": 6.25, "min": 6.0, "max": 7.0, "n": 5}
    assert set(r["provenance"]) == {"cpu", "cores", "kernel", "compiler", "cflags", "python",
                                    "yfcore", "git", "dirty", "date", "quick"}
    assert json.loads((results / "ctx-speed.json").read_text()) == r


def test_answer_scalars_strings_and_precision(registry, results, capsys):
    import numpy as np

    r = claims.answer("guard-bug", crashes=np.int64(1), runs=4294963200, signal="SIGSEGV", registry=registry)
    assert r["verdict"] == "reproduced"
    assert r["detail"] == "1 crash in 4,294,963,200 runs; SIGSEGV"
    assert r["measured"] == {"value": 1, "unit": "crashes", "median": 1, "min": 1, "max": 1, "n": 1, "samples": [1]}
    r = claims.answer("ext", ratio=34.9924, base=12, registry=registry)
    assert r["verdict"] == "fails" and r["detail"] == "ratio 35.0"
    assert r["seed"]["figure"] is None and r["origin"] == "extension"
    assert capsys.readouterr().out.endswith("VERDICT ext: fails — ratio 35.0\n")


def test_answer_checks_its_evidence(registry, results):
    with pytest.raises(KeyError, match="no-such"):
        claims.answer("no-such", registry=registry)
    with pytest.raises(ValueError, match="must be a number"):
        claims.answer("ctx-speed", speedup="fast", yf_ns=1, registry=registry)
    with pytest.raises(ValueError, match="evidence missing speedup"):
        claims.answer("ctx-speed", yf_ns=1, registry=registry)
    with pytest.raises(ValueError, match="evidence missing yf_ns"):
        claims.answer("ctx-speed", speedup=4, registry=registry)
    with pytest.raises(ValueError, match="unknown evidence extra"):
        claims.answer("ctx-speed", speedup=4, yf_ns=1, extra=2, registry=registry)
    with pytest.raises(ValueError, match="rule variable crashes must be a number"):
        claims.answer("guard-bug", crashes="one", runs=1, signal="x", registry=registry)
    assert not results.exists() or not list(results.iterdir())


def test_answer_skipped(registry, results, capsys):
    r = claims.answer("guard-bug", skipped="needs a guard", registry=registry)
    assert r["verdict"] == "not measured" and r["measured"] is None
    assert capsys.readouterr().out == "VERDICT guard-bug: not measured — not measured: needs a guard\n"


def test_answer_reference_copy(registry, results, tmp_path, monkeypatch, capsys):
    ref = tmp_path / "reference"
    monkeypatch.setattr(claims, "reference_dir", lambda: ref)
    monkeypatch.setenv("YF_REFERENCE", "1")
    claims.answer("guard-bug", crashes=1, runs=1, signal="SIGSEGV", registry=registry)
    assert json.loads((ref / "guard-bug.json").read_text())["verdict"] == "reproduced"


def test_latest_prefers_fresh_results(registry, results, tmp_path, monkeypatch, capsys):
    ref = tmp_path / "reference"
    ref.mkdir()
    monkeypatch.setattr(claims, "reference_dir", lambda: ref)
    (ref / "guard-bug.json").write_text(json.dumps({"claim": "guard-bug", "verdict": "not reproduced"}))
    (ref / "ctx-speed.json").write_text(json.dumps({"claim": "ctx-speed", "verdict": "fails"}))
    assert [r["verdict"] for r in claims.latest(registry)] == ["fails", "not reproduced"]
    claims.answer("guard-bug", crashes=1, runs=1, signal="SIGSEGV", registry=registry)
    assert [r["verdict"] for r in claims.latest(registry)] == ["fails", "reproduced"]
    assert [r["verdict"] for r in claims.latest(registry, reference_only=True)] == ["fails", "not reproduced"]


# --- toolchain -----------------------------------------------------------

def _c_file(tmp_path, name, body):
    path = tmp_path / f"{name}.c"
    path.write_text(textwrap.dedent(body))
    return path


def test_compile_and_run(tmp_path):
    src = _c_file(tmp_path, "hello", """
        #include <stdio.h>
        int main(int argc, char **argv) { printf("hello %s\\n", argc > 1 ? argv[1] : "?"); return 3; }
    """)
    out = tmp_path / "bin"
    exe = toolchain.compile_program(src, out_dir=out)
    cp = toolchain.run_program(exe, "there")
    assert cp.stdout == "hello there\n"
    assert toolchain.describe_exit(cp) == "exit 3"
    # Same inputs reuse the binary; other flags or edited sources get their own.
    assert toolchain.compile_program(src, out_dir=out) == exe
    assert toolchain.compile_program(src, out_dir=out, cflags=["-O0"]) != exe
    src.write_text(src.read_text().replace("return 3", "return 0"))
    assert toolchain.compile_program(src, out_dir=out) != exe


def test_segfault_is_described(tmp_path):
    src = _c_file(tmp_path, "crash", """
        #include <signal.h>
        int main(void) { raise(SIGSEGV); return 0; }
    """)
    cp = toolchain.run_program(toolchain.compile_program(src, out_dir=tmp_path))
    assert toolchain.describe_exit(cp) == "killed by SIGSEGV"


def test_compile_error_keeps_messages(tmp_path):
    src = _c_file(tmp_path, "broken", """
        int missing(void);
        int main(void) { return missing(); }
    """)
    with pytest.raises(toolchain.CompileError) as info:
        toolchain.compile_program(src, out_dir=tmp_path)
    assert info.value.returncode != 0
    assert "missing" in info.value.stderr
    assert info.value.cmd[-1].endswith("broken.c")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".broken")]


def test_missing_program_and_timeout(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-program"):
        toolchain.compile_program("no-such-program")
    src = _c_file(tmp_path, "sleepy", """
        #include <unistd.h>
        int main(void) { sleep(30); return 0; }
    """)
    with pytest.raises(TimeoutError, match="sleepy"):
        toolchain.run_program(toolchain.compile_program(src, out_dir=tmp_path), timeout=0.2)


def test_fair_count_runs_one_kernel():
    """csrc/programs/fair_count.c, the instruction-counting helper co.c's profile is taken with."""
    exe = toolchain.compile_program("fair_count", with_lab=True, cflags=("-fPIC",))
    cp = toolchain.run_program(exe, "create", 0, 1000)
    assert cp.returncode == 0, cp.stderr
    kind, system, n, ns = cp.stdout.split()
    assert (kind, system, n) == ("create", "0", "1000") and float(ns) > 0
    cp = toolchain.run_program(exe, "switch", 99, 10)
    assert cp.returncode == 1 and "Invalid argument" in cp.stderr
    assert toolchain.run_program(exe).returncode == 2


def test_run_program_env(tmp_path):
    src = _c_file(tmp_path, "env", """
        #include <stdio.h>
        #include <stdlib.h>
        int main(void) { printf("%s\\n", getenv("YF_TEST_VAR")); return 0; }
    """)
    cp = toolchain.run_program(toolchain.compile_program(src, out_dir=tmp_path), env={"YF_TEST_VAR": "seen"})
    assert cp.stdout == "seen\n"


# --- command line --------------------------------------------------------

def _cli(*args, env=None):
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "yfcore", *args], capture_output=True, text=True,
                          env=full, cwd=ROOT, timeout=120)


def test_cli_claims_json(tmp_path):
    cp = _cli("claims", "--json", env={"YF_RESULTS": str(tmp_path)})
    assert cp.returncode == 0, cp.stderr
    assert isinstance(json.loads(cp.stdout), list)


def test_cli_bench_unknown_name():
    pytest.importorskip("yfcore.lab.context_switch", reason="yfcore.lab.context_switch (C module) not available")
    cp = _cli("bench", "nosuch")
    assert cp.returncode == 2
    assert "unknown benchmark 'nosuch'; available:" in cp.stderr
    assert "Traceback" not in cp.stderr
    cp = _cli("bench", "sbuf", "--standalone")
    assert cp.returncode == 2 and "--standalone applies to switch and create" in cp.stderr


def test_cli_bench_standalone_json():
    pytest.importorskip("yfcore.lab.context_switch", reason="yfcore.lab.context_switch (C module) not available")
    cp = _cli("bench", "create", "--quick", "--standalone", "--json")
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout)
    measured = {k for k, v in out.items() if isinstance(v, dict) and "per_second" in v}
    assert {"yf", "yf_malloc", "ucontext"} <= measured
    assert set(out["agreement"]) == measured == set(out["standalone"])
    assert all(r > 0 for r in out["agreement"].values())


def test_cli_user_errors_have_no_traceback():
    cp = _cli("report", "--quick", "--reference")
    assert cp.returncode != 0
    assert "Traceback" not in cp.stderr and "--reference" in cp.stderr
    cp = _cli("frobnicate")
    assert cp.returncode == 2 and "Traceback" not in cp.stderr


def test_bench_table():
    from yfcore.__main__ import _bench_table

    s = {"median": 5.0, "min": 4.0, "max": 6.0, "n": 5}
    table = _bench_table({
        "yf": {"ns_per_switch": s},
        "ucontext": {"ns_per_switch": {**s, "median": 20.0}},
        "boost": {"skipped": "libboost-context-dev not installed"},
        "provenance": {"cpu": "test cpu", "date": "today", "quick": True},
    })
    lines = table.splitlines()
    assert lines[0].split() == ["system", "metric", "median", "[min..max]", "ratio"]
    assert lines[1].split() == ["yf", "ns_per_switch", "5.00", "[4.00..6.00]", "1.00x", "yf"]
    assert lines[2].split() == ["ucontext", "ns_per_switch", "20.0", "[4.00..6.00]", "4.00x", "yf"]
    assert "skipped: libboost-context-dev not installed" in lines[3]
    assert lines[-1] == "cpu: test cpu, date: today, quick: True"


# --- plots ---------------------------------------------------------------

def test_plots_draw_without_display():
    import matplotlib

    matplotlib.use("Agg")
    from yfcore.lab import plots

    s = {"median": 2.0, "min": 1.0, "max": 3.0, "n": 5}
    ax = plots.bars({"a": s, "b": {**s, "median": 2.5}}, "ns", "switch cost", log=True)
    assert [t.get_text() for t in ax.texts] == ["2.00", "2.50"]
    ax = plots.lines([1, 10], {"a": [s, s]}, "n", "ns", "scaling", logx=True)
    assert ax.get_xscale() == "log" and ax.get_legend() is not None
    with pytest.raises(ValueError, match="2 x values"):
        plots.lines([1, 10], {"a": [s]}, "n", "ns", "bad")


# --- bench registry, sizes, speed bars -------------------------------------

def test_sizes_one_table():
    full, fast = bench.sizes("wheel", quick=False), bench.sizes("wheel", quick=True)
    assert set(full) == set(fast) == set(bench.SIZES["wheel"])
    assert all(fast[k] < full[k] for k in full)
    with pytest.raises(ValueError, match="family must be one of"):
        bench.sizes("nosuch")


def test_check_bars():
    rows = bench.check_bars([("a", 2.0, ">= 1.5"), ("b", 2.0, "<= 1.5"), ("c", 0.0, "> 0")])
    assert [r["met"] for r in rows] == [True, False, False]
    assert rows[0] == {"bar": "a", "value": 2.0, "wanted": ">= 1.5", "met": True}


def test_benchmarks_registry_resolves():
    import importlib

    pytest.importorskip("yfcore._yfcore", reason="C module not built")
    for name, (module, func, bars) in bench.BENCHMARKS.items():
        mod = importlib.import_module(f"yfcore.lab.{module}")
        assert callable(getattr(mod, func)), name
        assert bars is None or callable(getattr(mod, bars)), name
    with pytest.raises(ValueError, match="unknown benchmark"):
        bench.run_benchmark("nosuch")


def test_switch_bars_read_a_result():
    from yfcore.lab import context_switch

    def system(x):
        return {"ns_per_switch": {"median": x, "min": x, "max": x, "n": 2}, "samples": [x, x]}
    result = {"yf": system(5.0), "yf_raw": system(4.0), "yf_fpfast": system(3.0), "yf_raw_fpfast": system(2.0),
              "ucontext": system(400.0), "boost_fcontext": {"skipped": "absent"}, "provenance": {}}
    rows = bench.check_bars(context_switch.switch_bars(result))
    assert [(r["bar"], r["value"], r["met"]) for r in rows] == [
        ("default switch: ucontext / yf", 80.0, True), ("bare switch: ucontext / yf_raw", 100.0, True)]


def test_queue_model_is_the_queue_it_describes():
    from yfcore.lab import timer_wheel

    # Under one CPU of demand the model's sleeps end within the tick.
    light = timer_wheel.queue_model(50, 20, 50, 10, 1.0)
    assert len(light) == 50 * 20 and light.min() >= 0 and np.median(light) < 1
    # Over it, lateness is a queue of ncos spins: 400 x 0.1 ms = 40 ms a pass,
    # less the mean sleep (25.5 ms); twice the pass at half a CPU.
    whole, half = (np.median(timer_wheel.queue_model(400, 40, 50, 100, s)) for s in (1.0, 0.5))
    assert 10 < whole < 20 and 50 < half < 60
    with pytest.raises(ValueError, match="share"):
        timer_wheel.queue_model(10, 1, 50, 100, 0)


def test_histogram_peaks_finds_two_humps():
    from yfcore.lab import timer_wheel

    rng = np.random.default_rng(3)
    ms = np.concatenate([rng.normal(15, 1, 2000), rng.normal(55, 2, 1500), rng.uniform(0, 70, 500)])
    low, high = timer_wheel.histogram_peaks(ms)
    assert abs(low - 15) < 2 and abs(high - 55) < 3
