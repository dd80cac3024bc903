"""The yfcore command line: report, bench, claims, info."""
import argparse
import json
import sys

__all__ = ["main"]


def _rows(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _report(args) -> int:
    from yfcore.lab import report

    try:
        index = report.run(quick=args.quick, only=args.only, reference=args.reference,
                           allow_dirty=True if args.allow_dirty else None)
    except report.ReportError as e:
        print(f"yfcore: {e}", file=sys.stderr)
        return 1
    print(f"index: {index}")
    return 0


def _is_summary(x) -> bool:
    return isinstance(x, dict) and "median" in x


def _bench_table(result: dict) -> str:
    from yfcore.lab import stats
    from yfcore.lab.stats import fmt

    systems = {k: v for k, v in result.items() if k != "provenance" and isinstance(v, dict)}
    # The baseline of a metric is the first system that measured it.
    first: dict[str, tuple[str, float]] = {}
    for name, metrics in systems.items():
        for metric, s in metrics.items():
            if _is_summary(s):
                first.setdefault(metric, (name, s["median"]))
    rows = [["system", "metric", "median [min..max]", "ratio"]]
    for name, metrics in systems.items():
        if "skipped" in metrics:
            rows.append([name, "-", f"skipped: {metrics['skipped']}", ""])
            continue
        for metric, s in metrics.items():
            if not _is_summary(s):
                continue
            base_name, base = first[metric]
            ratio = f"1.00x {base_name}" if base and name == base_name else ""
            if base and name != base_name:
                # Pair by pair over the same rounds when the samples are there.
                # "samples" belong to a system's only metric; with several, use medians.
                a, b = metrics.get("samples"), systems[base_name].get("samples")
                single = sum(map(_is_summary, metrics.values())) == 1 and \
                    sum(map(_is_summary, systems[base_name].values())) == 1
                r = stats.ratio(a, b)["median"] if single and a and b and len(a) == len(b) else s["median"] / base
                ratio = f"{r:.2f}x {base_name}"
            rows.append([name, metric, fmt(s, ""), ratio])
    text = _rows(rows)
    prov = result.get("provenance")
    if isinstance(prov, dict):
        text += "\n\n" + ", ".join(f"{k}: {prov[k]}" for k in ("cpu", "date", "quick") if k in prov)
    return text


def _bench(args) -> int:
    from yfcore.lab.bench import BENCHMARKS, quick, run_benchmark
    from yfcore.lab.stats import fmt as stats_fmt

    if args.name not in BENCHMARKS:
        print(f"yfcore: unknown benchmark {args.name!r}; available: {', '.join(sorted(BENCHMARKS))}",
              file=sys.stderr)
        return 2
    if args.standalone and args.name not in ("switch", "create"):
        print(f"yfcore: --standalone applies to switch and create, not {args.name!r}", file=sys.stderr)
        return 2
    try:
        # --standalone: the same kernels also run in a program of their own,
        # interleaved with this process's calls in the same rounds, so a
        # reader can check the in-process figures (1.00 = the same figure).
        options = {"standalone": True} if args.standalone else {}
        result = run_benchmark(args.name, quick=args.quick or quick(), progress=sys.stderr.isatty(), **options)
        alone = agreement = None
        if args.standalone:
            from yfcore.lab import context_switch

            agreement = context_switch.agreement(result)
            agreement_text = context_switch.agreement_table(result, "ns" if args.name == "switch" else "/s")
            alone = result.pop("standalone")
    except ImportError as e:
        hint = "; build the C module with `make build`" if e.name == "yfcore._yfcore" else ""
        print(f"yfcore: benchmarks unavailable: {e}{hint}", file=sys.stderr)
        return 1
    # Pairwise ratios a benchmark adds are shown in the table; the JSON
    # interface holds systems, the speed bars and provenance.
    ratios = result.pop("ratios", None)
    bars = result.pop("speed_bars", None)
    if args.json:
        # Summaries only: raw samples stay out of the stable JSON interface.
        out = {k: {m: ({f: y for f, y in x.items() if f != "samples"} if isinstance(x, dict) else x)
                       for m, x in v.items() if m != "samples"} if k != "provenance" else v
               for k, v in result.items()}
        if bars is not None:
            out["speed_bars"] = bars
        if alone is not None:
            metric = "ns_per_switch" if args.name == "switch" else "per_second"
            out["standalone"] = {k: {metric: {f: y for f, y in v[metric].items() if f != "samples"}}
                                 for k, v in alone.items() if metric in v}
            out["agreement"] = agreement
        print(json.dumps(out))
    else:
        print(_bench_table(result))
        if ratios:
            print("\n" + "\n".join(f"{name}: {stats_fmt(r, 'x')}" for name, r in ratios.items()))
        if bars:
            print("\nspeed bars of the project (its own targets, not the diary's):")
            width = max(len(b["bar"]) for b in bars)
            for b in bars:
                print(f"  {b['bar']:<{width}}  {b['value']:8.3g}  wanted {b['wanted']:<7} "
                      f"{'pass' if b['met'] else 'FAIL'}")
        if alone is not None:
            print("\nthe same kernels in a standalone program, interleaved with this process's in the same "
                  "rounds\n(medians; ratio = this process / standalone):")
            print(agreement_text)
    return 0


def _claims(args) -> int:
    from yfcore.lab import claims, report

    if args.json:
        print(json.dumps(claims.latest(), ensure_ascii=False))
        return 0
    print(report.claims_text(report.claim_rows()), end="")
    return 0


def _info(args) -> int:
    from yfcore.lab.provenance import provenance

    for key, value in provenance().items():
        print(f"{key}: {value}")
    try:
        from yfcore import runtime

        extra = runtime.info()
    except (ImportError, AttributeError) as e:
        print(f"note: runtime details unavailable ({e})")
        return 0
    for key, value in extra.items():
        print(f"{key}: {value}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="yfcore", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("report", help="execute the notebooks into reports/ and refresh results")
    r.add_argument("--quick", action="store_true", help="small sizes (YF_QUICK=1): minutes, not hours")
    r.add_argument("--only", nargs="+", metavar="NN", help="run only the notebooks with these numbers")
    r.add_argument("--reference", action="store_true",
                   help="full run whose outputs and results are committed (notebooks/, data/reference/); "
                        "needs a clean checkout")
    r.add_argument("--allow-dirty", action="store_true",
                   help="let --reference run on uncommitted changes (also YF_ALLOW_DIRTY=1); "
                        "the results record the commit as dirty")
    r.set_defaults(func=_report)

    b = sub.add_parser("bench", help="run one benchmark and print a table or JSON")
    b.add_argument("name", metavar="NAME")
    b.add_argument("--quick", action="store_true", help="fewer rounds and smaller sizes")
    b.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    b.add_argument("--standalone", action="store_true",
                   help="switch and create: also run the same kernels in a standalone program, "
                        "interleaved in the same rounds, and print both medians and their ratio")
    b.set_defaults(func=_bench)

    c = sub.add_parser("claims", help="the claims summary and table: origin, diary figure, measured, verdict, reference")
    c.add_argument("--json", action="store_true", help="print the result objects as a JSON list")
    c.set_defaults(func=_claims)

    i = sub.add_parser("info", help="provenance of this machine and build")
    i.set_defaults(func=_info)
    return p


def main(argv=None) -> int:
    """Run the yfcore command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    # User errors (bad --only, no clone, an unreadable registry) get one line, no traceback.
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # DirtyTreeError is a RuntimeError
        print(f"yfcore: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
