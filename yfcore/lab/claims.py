"""The claims registry (data/claims.csv) and answer(): measurement -> verdict -> result file."""
import ast
import csv
import json
import numbers
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .paths import env_flag, reference_dir, results_dir, root
from .provenance import provenance
from .stats import quantity, summary

__all__ = ["Claim", "Rule", "registry", "answer", "latest"]

COLUMNS = ("id", "notebook", "seed_date", "statement", "seed_figure", "unit", "rule")
OPPOSITE = {"holds": "fails", "reproduced": "not reproduced"}

_RULE = re.compile(r"^\s*(holds|reproduced)\s+if\s+(\S.*?)\s*$", re.DOTALL)

# A rule is arithmetic and logic over numbers: nothing that can call, import,
# index or reach attributes is admitted, so a registry row cannot run code.
_ALLOWED = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
    ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div,
    ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
    ast.Name, ast.Load, ast.Constant,
)


@dataclass(frozen=True)
class Rule:
    """A parsed rule "<word> if <expr>": `word` when expr is true, else its opposite."""

    word: str
    expr: str
    names: frozenset[str]
    code: object

    @classmethod
    def parse(cls, text: str) -> "Rule":
        """Parse and validate a rule; ValueError names what is not allowed."""
        m = _RULE.match(text)
        if not m:
            raise ValueError(f"rule {text!r} is not '<holds|reproduced> if <expression>'")
        word, expr = m.groups()
        try:
            tree = ast.parse(expr, mode="eval")
        except SyntaxError as e:
            raise ValueError(f"rule {text!r}: syntax error in {expr!r}: {e.msg}") from None
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED):
                raise ValueError(f"rule {text!r}: {type(node).__name__} is not allowed")
            if isinstance(node, ast.Constant) and (
                isinstance(node.value, bool) or not isinstance(node.value, (int, float))
            ):
                raise ValueError(f"rule {text!r}: only numbers may appear, not {node.value!r}")
        names = frozenset(n.id for n in ast.walk(tree) if isinstance(n, ast.Name))
        return cls(word, expr, names, compile(tree, "<rule>", "eval"))

    def verdict(self, **values: float) -> str:
        """Evaluate the rule over `values` and return the verdict word."""
        missing = sorted(self.names - values.keys())
        if missing:
            raise ValueError(
                f"rule {self.word} if {self.expr} needs {', '.join(missing)}; "
                f"got {', '.join(sorted(values)) or 'nothing'}"
            )
        try:
            ok = eval(self.code, {"__builtins__": {}}, dict(values))
        except ZeroDivisionError:
            raise ValueError(f"rule {self.word} if {self.expr} divides by zero with {values}") from None
        return self.word if ok else OPPOSITE[self.word]

    def __str__(self) -> str:
        return f"{self.word} if {self.expr}"


@dataclass(frozen=True)
class Claim:
    """One row of data/claims.csv, its rule parsed."""

    id: str
    notebook: str
    seed_date: str
    statement: str
    seed_figure: str
    unit: str
    rule: Rule


def _default_path() -> Path:
    return root() / "data" / "claims.csv"


def registry(path: str | os.PathLike | None = None) -> dict[str, Claim]:
    """Read the claims registry (default data/claims.csv) into {id: Claim}, in file order.

    Raises ValueError on missing columns, duplicate ids or a bad rule.
    """
    path = Path(path) if path is not None else _default_path()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        claims: dict[str, Claim] = {}
        for raw in reader:
            line = reader.line_num
            row = {c: (raw.get(c) or "").strip() for c in COLUMNS}
            cid = row["id"]
            if not cid:
                raise ValueError(f"{path}:{line}: empty claim id")
            if cid in claims:
                raise ValueError(f"{path}:{line}: duplicate claim id {cid!r}")
            try:
                rule = Rule.parse(row["rule"])
            except ValueError as e:
                raise ValueError(f"{path}:{line}: claim {cid}: {e}") from None
            fields = {c: row[c] for c in COLUMNS if c not in ("id", "rule")}
            claims[cid] = Claim(id=cid, rule=rule, **fields)
    return claims


def _plain(x, what: str):
    # JSON wants Python numbers; numpy scalars and bools are converted here.
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        return float(x)
    raise ValueError(f"{what} must be a number, got {x!r}")


def _figure(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _read_default() -> dict[str, Claim]:
    # answer() and latest() take a `registry` argument that hides the function.
    return registry()


def _write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def answer(
    claim_id: str,
    value: float,
    unit: str,
    samples=None,
    detail: str = "",
    notebook: str | None = None,
    registry: dict[str, Claim] | None = None,
    **extra: float,
) -> dict:
    """Decide a claim from a measurement, record it and print its VERDICT line.

    The claim's rule is evaluated with `value` and the `extra` numbers as
    names. The result (schema in DESIGN.md) is written to
    results_dir()/<id>.json, and also to data/reference/ when $YF_REFERENCE
    is set. `samples` (the per-round values behind `value`) give the
    median/min/max/n; without them value stands for all three, n = 1. An empty
    `detail` is replaced by a sentence with the measured and seed figures.
    `registry` defaults to data/claims.csv. Unknown ids raise KeyError.
    """
    claims = _read_default() if registry is None else registry
    if claim_id not in claims:
        raise KeyError(f"unknown claim {claim_id!r}; registered: {', '.join(claims) or 'none'}")
    claim = claims[claim_id]
    value = _plain(value, "value")
    names = {k: _plain(v, k) for k, v in extra.items()}
    verdict = claim.rule.verdict(value=value, **names)
    if samples is None:
        stats = {"median": value, "min": value, "max": value, "n": 1}
    else:
        stats = summary(samples)
    if not detail:
        detail = f"measured {quantity(value, unit)}; the diary says {quantity(claim.seed_figure, claim.unit)}"
    result = {
        "claim": claim.id,
        "notebook": notebook or claim.notebook,
        "seed": {
            "date": claim.seed_date,
            "statement": claim.statement,
            "figure": _figure(claim.seed_figure),
            "unit": claim.unit,
        },
        "measured": {"value": value, "unit": unit, **stats},
        "verdict": verdict,
        "detail": detail,
        "provenance": provenance(),
    }
    _write(results_dir() / f"{claim.id}.json", result)
    if env_flag("YF_REFERENCE"):
        _write(reference_dir() / f"{claim.id}.json", result)
    print(f"VERDICT {claim.id}: {verdict} — {detail}")
    return result


def latest(registry: dict[str, Claim] | None = None, reference_only: bool = False) -> list[dict]:
    """The newest result of every claim, in registry order.

    A claim's fresh result (results_dir()) wins over its committed reference
    (data/reference/); claims with neither are left out. `reference_only`
    reads the committed results alone, as the committed notebooks/README.md
    must.
    """
    claims = _read_default() if registry is None else registry
    folders = [reference_dir()] if reference_only else [results_dir(), reference_dir()]
    out = []
    for cid in claims:
        for folder in folders:
            path = folder / f"{cid}.json"
            if path.is_file():
                out.append(json.loads(path.read_text(encoding="utf-8")))
                break
    return out
