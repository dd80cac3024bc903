"""The claims registry (data/claims.csv) and answer(): evidence -> verdict -> result file.

A claim's row says what the diary said (origin "diary", with its figure and
unit) or what this project adds (origin "extension", no figure), the rule
that decides it over named evidence variables, whether those are
deterministic (counts, instruction counts, errno values, linker output) or
timings, which variable is the headline measurement, and the template of the
detail sentence. A notebook's verdict cell is one call:

    lab.answer("wheel-o1", **timer_wheel.wheel_o1_evidence(res))
"""
import ast
import csv
import json
import math
import numbers
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path

from .paths import env_flag, reference_dir, results_dir, root
from .provenance import provenance
from .stats import summary

__all__ = ["Claim", "Rule", "Evidence", "registry", "answer", "latest", "results", "render", "VERDICTS"]

COLUMNS = ("id", "notebook", "seed_date", "statement", "origin", "figure", "unit", "measure",
           "measure_unit", "kind", "rule", "detail")
ORIGINS = ("diary", "extension")
KINDS = ("deterministic", "timing")
OPPOSITE = {"holds": "fails", "reproduced": "not reproduced"}
NOT_MEASURED = "not measured"
VERDICTS = ("holds", "fails", "reproduced", "not reproduced", NOT_MEASURED)
# An extension's statement says it is this project's claim, in these words.
_EXTENSION_MARK = re.compile(r"\b(extension|of this project)\b")

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
    """One row of data/claims.csv, its rule parsed and its detail template checked."""

    id: str
    notebook: str
    seed_date: str
    statement: str
    origin: str
    figure: str
    unit: str
    measure: str
    measure_unit: str
    kind: str
    rule: Rule
    detail: str

    @property
    def template_names(self) -> frozenset[str]:
        """The evidence variables the detail template uses."""
        return _template_names(self.detail)

    @property
    def variables(self) -> frozenset[str]:
        """Every evidence variable answer() accepts: the rule's and the template's."""
        return self.rule.names | self.template_names


def _template_names(template: str) -> frozenset[str]:
    names = set()
    for _, field, _, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if not field.isidentifier():
            raise ValueError(f"detail template field {{{field}}} is not a plain variable name")
        if conversion:
            raise ValueError(f"detail template field {{{field}!{conversion}}}: conversions are not allowed")
        names.add(field)
    return frozenset(names)


def _check_row(row: dict, rule: Rule) -> None:
    if row["origin"] not in ORIGINS:
        raise ValueError(f"origin must be one of {', '.join(ORIGINS)}, got {row['origin']!r}")
    if row["kind"] not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {row['kind']!r}")
    if row["origin"] == "diary" and not row["figure"]:
        raise ValueError("a diary claim needs the diary's figure")
    if row["origin"] == "extension":
        if row["figure"] or row["unit"]:
            raise ValueError("an extension claim has no diary figure or unit")
        if not _EXTENSION_MARK.search(row["statement"]):
            raise ValueError("an extension's statement must say it is an extension or a bar of this project")
    if row["measure"] not in rule.names:
        raise ValueError(f"measure {row['measure']!r} is not a variable of the rule ({', '.join(sorted(rule.names))})")
    _template_names(row["detail"])


def _default_path() -> Path:
    # $YF_CLAIMS points notebook kernels at another registry (the tests' own).
    override = os.environ.get("YF_CLAIMS")
    return Path(override) if override else root() / "data" / "claims.csv"


def registry(path: str | os.PathLike | None = None) -> dict[str, Claim]:
    """Read the claims registry (default data/claims.csv) into {id: Claim}, in file order.

    Raises ValueError on missing columns, duplicate ids, a bad rule, origin,
    kind, measure or detail template.
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
                _check_row(row, rule)
            except ValueError as e:
                raise ValueError(f"{path}:{line}: claim {cid}: {e}") from None
            fields = {c: row[c] for c in COLUMNS if c not in ("id", "rule")}
            claims[cid] = Claim(id=cid, rule=rule, **fields)
    return claims


# ---- evidence and its rendering ------------------------------------------------

def _plain(x, what: str):
    # JSON wants Python numbers; numpy scalars and bools are converted here.
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        return float(x)
    raise ValueError(f"evidence {what} must be a number, got {x!r}")


def _num(x) -> str:
    """A figure with sensible precision: whole numbers in full with thousands
    separators, others to three significant digits (thousands in full too)."""
    if isinstance(x, int):
        return f"{x:,}"
    if not math.isfinite(x):
        return str(x)
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if x == 0:
        return "0"
    text = f"{x:#.3g}"
    return text[:-1] if text.endswith(".") else text


@dataclass(frozen=True)
class Evidence:
    """One evidence variable: its value for the rule, its samples when it has several.

    Built from a number, a sequence of per-round numbers (the value is their
    median), a summary dict with "median" (and "samples", "min", "max", "n"),
    or a string (for the detail sentence only; a rule cannot use it).
    """

    name: str
    value: object
    stats: dict | None = None

    @classmethod
    def of(cls, name: str, x) -> "Evidence":
        if isinstance(x, str):
            return cls(name, x)
        if isinstance(x, dict):
            if "median" not in x:
                raise ValueError(f"evidence {name}: a dict must be a summary with a median, got keys {sorted(x)}")
            samples = x.get("samples")
            if samples is not None and len(samples):
                stats = summary(_plain(v, name) for v in samples) | {"samples": [_plain(v, name) for v in samples]}
            else:
                med = _plain(x["median"], name)
                stats = {"median": med, "min": _plain(x.get("min", med), name),
                         "max": _plain(x.get("max", med), name), "n": int(x.get("n", 1))}
            return cls(name, stats["median"], stats)
        if isinstance(x, (list, tuple)) or getattr(x, "ndim", 0) > 0:
            xs = [_plain(v, name) for v in x]
            if not xs:
                raise ValueError(f"evidence {name}: no samples")
            stats = summary(xs) | {"samples": xs}
            return cls(name, stats["median"], stats)
        return cls(name, _plain(x, name))

    def record(self):
        """The JSON form: the number, or the string, or its summary with samples."""
        return self.stats if self.stats is not None else self.value

    def __format__(self, spec: str) -> str:
        if isinstance(self.value, str):
            return format(self.value, spec)
        if spec == "range" or spec.startswith("range "):
            unit = spec[len("range"):].strip()
            sep = " " if unit else ""
            text = f"{_num(self.value)}{sep}{unit}"
            if self.stats is not None and self.stats["n"] > 1:
                text += f" [{_num(self.stats['min'])}..{_num(self.stats['max'])}]"
            return text
        if re.fullmatch(r"\.\d+f", spec):
            # Fixed decimals asked for: thousands still in full, grouped.
            return format(self.value, "," + spec)
        if spec:
            return format(self.value, spec)
        return _num(self.value)


def render(template: str, evidence: dict[str, Evidence]) -> str:
    """The detail sentence: `template` with each {name} replaced by its
    evidence at sensible precision; {name:range unit} gives "median unit
    [min..max]"; any other format spec applies to the value."""
    return template.format(**evidence)


# ---- results ---------------------------------------------------------------------

def _read_default() -> dict[str, Claim]:
    # answer() and latest() take a `registry` argument that hides the function.
    return registry()


def _write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _figure(text: str):
    try:
        return float(text)
    except ValueError:
        return text or None


def answer(claim_id: str, *, registry: dict[str, Claim] | None = None, notebook: str | None = None,
           **evidence) -> dict:
    """Decide a claim from its evidence, record it and print its VERDICT line.

    `evidence` holds every variable of the claim's rule (numbers, per-round
    samples or summaries; see Evidence) and of its detail template (strings
    allowed there); a missing rule variable or an unknown name raises
    ValueError. One special form, `skipped="reason"`, records that the claim
    could not be measured here (verdict "not measured").

    The result (schema in DESIGN.md) is written to results_dir()/<id>.json,
    and also to data/reference/ when $YF_REFERENCE is set. Prints
    "VERDICT <id>: <verdict> — <detail>" and returns the result.
    Unknown ids raise KeyError.
    """
    claims = _read_default() if registry is None else registry
    if claim_id not in claims:
        raise KeyError(f"unknown claim {claim_id!r}; registered: {', '.join(claims) or 'none'}")
    claim = claims[claim_id]
    if "skipped" in evidence:
        reason = evidence.pop("skipped")
        if evidence:
            raise ValueError(f"{claim.id}: skipped= goes alone, got also {', '.join(sorted(evidence))}")
        verdict, detail, ev, measured = NOT_MEASURED, f"not measured: {reason}", {}, None
    else:
        unknown = sorted(evidence.keys() - claim.variables)
        if unknown:
            raise ValueError(f"{claim.id}: unknown evidence {', '.join(unknown)}; "
                             f"the rule and detail use {', '.join(sorted(claim.variables))}")
        missing = sorted(claim.variables - evidence.keys())
        if missing:
            raise ValueError(f"{claim.id}: evidence missing {', '.join(missing)} "
                             f"(rule: {claim.rule}; detail: {claim.detail})")
        ev = {k: Evidence.of(k, v) for k, v in evidence.items()}
        for name in claim.rule.names:
            if isinstance(ev[name].value, str):
                raise ValueError(f"{claim.id}: rule variable {name} must be a number, got {ev[name].value!r}")
        verdict = claim.rule.verdict(**{k: ev[k].value for k in claim.rule.names})
        detail = render(claim.detail, ev)
        head = ev[claim.measure]
        stats = head.stats or {"median": head.value, "min": head.value, "max": head.value, "n": 1,
                               "samples": [head.value]}
        measured = {"value": head.value, "unit": claim.measure_unit, **stats}
    result = {
        "claim": claim.id,
        "notebook": notebook or claim.notebook,
        "origin": claim.origin,
        "kind": claim.kind,
        "rule": str(claim.rule),
        "seed": {
            "date": claim.seed_date,
            "statement": claim.statement,
            "figure": _figure(claim.figure) if claim.origin == "diary" else None,
            "unit": claim.unit if claim.origin == "diary" else None,
        },
        "measured": measured,
        "evidence": {k: e.record() for k, e in ev.items()},
        "verdict": verdict,
        "detail": detail,
        "provenance": provenance(),
    }
    _write(results_dir() / f"{claim.id}.json", result)
    if env_flag("YF_REFERENCE"):
        _write(reference_dir() / f"{claim.id}.json", result)
    print(f"VERDICT {claim.id}: {verdict} — {detail}")
    return result


def _load(path: Path):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def results(registry: dict[str, Claim] | None = None) -> list[dict]:
    """Every registered claim with its results, in registry order:
    {"claim": Claim, "fresh": this run folder's result or None,
     "reference": the committed reference result or None}."""
    claims = _read_default() if registry is None else registry
    return [{"claim": c, "fresh": _load(results_dir() / f"{cid}.json"),
             "reference": _load(reference_dir() / f"{cid}.json")} for cid, c in claims.items()]


def latest(registry: dict[str, Claim] | None = None, reference_only: bool = False) -> list[dict]:
    """The newest result of every claim, in registry order.

    A claim's fresh result (results_dir()) wins over its committed reference
    (data/reference/); claims with neither are left out. `reference_only`
    reads the committed results alone, as the committed notebooks/README.md
    must.
    """
    out = []
    for row in results(registry):
        r = row["reference"] if reference_only else (row["fresh"] or row["reference"])
        if r is not None:
            out.append(r)
    return out
