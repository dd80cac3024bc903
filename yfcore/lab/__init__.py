"""yfcore.lab: the experiment harness the notebooks call (measure, decide, record, plot, build C)."""
from .bench import STACK, default_rounds, interleaved, measure, quick, run_benchmark, sizes
from .claims import Claim, Rule, answer, latest, registry
from .paths import notebooks_dir, reference_dir, reports_dir, results_dir, root
from .plots import bars, hbars, lines, slots
from .provenance import provenance
from .report import index_markdown
from .stats import fmt, quantity, ratio, ratio_samples, summaries, summary, table
from .toolchain import CompileError, compile_program, describe_exit, run_program, runtime_sources

__all__ = [
    "STACK", "Claim", "CompileError", "Rule",
    "answer", "bars", "hbars", "slots", "compile_program", "default_rounds", "describe_exit", "fmt",
    "index_markdown", "interleaved", "latest", "lines", "measure", "notebooks_dir",
    "provenance", "quantity", "quick", "ratio", "reference_dir", "registry", "reports_dir",
    "ratio_samples", "results_dir", "root", "run_benchmark", "run_program", "runtime_sources", "sizes",
    "summaries", "summary", "table",
]
