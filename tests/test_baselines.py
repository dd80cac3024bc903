"""The like-for-like baseline kernels, their standalone build, and the placement experiment.

Correctness only: every row runs at every placement, bad arguments fail with
EINVAL, the standalone program reports what the in-process function reports,
and the placement program puts frames and code where it says it does.
"""
import errno

import pytest

from yfcore.labkernels import boost_context_path, ffi, lib
from yfcore.lab import context_switch

BOOST = boost_context_path()
STACK = context_switch.STACK


def _rows(kind):
    rows = context_switch.SWITCH_ROWS if kind == "switch" else context_switch.CREATE_ROWS
    return {name: getattr(lib, const) for name, (const, _) in rows.items()
            if BOOST or not name.startswith("boost")}


@pytest.mark.parametrize("kind", ["switch", "create"])
def test_every_row_runs_at_every_placement(kind):
    kernel = lib.yf_bench_fair_switch if kind == "switch" else lib.yf_bench_fair_create
    for name, system in _rows(kind).items():
        for p in range(lib.YF_BENCH_PLACEMENTS):
            assert kernel(system, p, 20, STACK) > 0, (name, p, ffi.errno)


@pytest.mark.parametrize("kind", ["switch", "create"])
def test_bad_arguments_fail_with_einval(kind):
    kernel, nsys = ((lib.yf_bench_fair_switch, lib.YF_FAIR_NSWITCH) if kind == "switch"
                    else (lib.yf_bench_fair_create, lib.YF_FAIR_NCREATE))
    for args in [(-1, 0, 10, STACK), (nsys, 0, 10, STACK), (0, -1, 10, STACK),
                 (0, lib.YF_BENCH_PLACEMENTS, 10, STACK), (0, 0, -1, STACK), (0, 0, 10, STACK + 1),
                 (0, 0, 10, lib.YF_STACK_MIN // 2)]:
        ffi.errno = 0
        assert kernel(*args) == -1, args
        assert ffi.errno == 22, args  # EINVAL


def test_malloc_stacks_scheduler():
    s = lib.yf_sched_new(STACK, lib.YF_SCHED_MALLOC_STACKS)
    assert s != ffi.NULL
    cos = [lib.yf_co_create(s, lib.yf_demo_use_stack, ffi.cast("void *", 4096)) for _ in range(3)]
    assert all(co != ffi.NULL for co in cos)
    assert lib.yf_sched_run(s) > 0
    for co in cos[:2]:
        assert lib.yf_co_reap(co, ffi.NULL) == 0
    # The third stays unreaped: yf_sched_free releases its malloc'ed stack.
    assert lib.yf_sched_free(s) == 0
    ffi.errno = 0
    assert lib.yf_sched_new(STACK, lib.YF_SCHED_MALLOC_STACKS | lib.YF_SCHED_FPFAST) != ffi.NULL


@pytest.mark.parametrize("kind", ["switch", "create"])
def test_standalone_reports_the_same_rows(kind):
    rounds = 2
    result = context_switch.fair(kind, quick=True, rounds=rounds, calibration_rounds=1, standalone=True)
    alone = result["standalone"]
    assert set(result) - {"provenance", "standalone"} == set(alone)
    for name, row in alone.items():
        if "skipped" in row:
            assert "skipped" in result[name]
            continue
        assert len(row["samples"]) == rounds and all(x > 0 for x in row["samples"])
        assert len(row["by_placement"]) == lib.YF_BENCH_PLACEMENTS
        assert 0 <= row["placement"] < lib.YF_BENCH_PLACEMENTS
        best = (min if kind == "switch" else max)(row["by_placement"])
        assert row["by_placement"][row["placement"]] == best
    assert set(context_switch.agreement(result)) == {n for n, r in alone.items() if "skipped" not in r}
    assert set(context_switch.flat(result)) == set(context_switch.agreement(result))


def test_standalone_program_is_built_with_the_module_flags():
    flags = context_switch.module_cflags()
    info = ffi.string(lib.yf_build_info()).decode()
    assert " ".join(flags).endswith(info.split(" cflags=", 1)[1])
    assert "-fPIC" in flags


def test_standalone_kernels_refuse_and_report():
    with context_switch.StandaloneKernels() as remote:
        assert remote("switch", lib.YF_FAIR_SW_RAW, 0, 100) > 0
        for bad in [("switch", lib.YF_FAIR_NSWITCH, 0, 10), ("create", 0, lib.YF_BENCH_PLACEMENTS, 10),
                    ("resume", 0, 0, 10)]:
            with pytest.raises(OSError) as e:
                remote(*bad)
            assert e.value.errno == 22, bad  # EINVAL
        # Still serving after the refusals.
        assert remote("create", lib.YF_FAIR_LIFE_YF, 0, 10) > 0
        remote._proc.kill()
        remote._proc.wait()
        with pytest.raises(RuntimeError, match="fair_baselines ended"):
            remote("switch", lib.YF_FAIR_SW_RAW, 0, 100)


def test_placement_stack_puts_frames_where_asked():
    distances = [0, 16, 48, -16, 2048]
    cells = context_switch.placement_experiment("stack", n=50, rounds=2, copy=3, distances=distances)
    systems = {c["system"] for c in cells}
    assert {"yf_raw", "yf_raw_fpfast", "yf_raw_ret", "yf_raw_fpfast_ret"} <= systems
    assert ("boost_fcontext" in systems) == bool(BOOST)
    for c in cells:
        assert c["frame_distance"] == c["distance"] % 4096, c
        assert c["code_offset"] == 3 and len(c["ns"]) == 2


def test_placement_code_moves_the_loop():
    cells = context_switch.placement_experiment("code", n=50, rounds=1)
    by_system = {}
    for c in cells:
        by_system.setdefault(c["system"], []).append(c)
    for system, cs in by_system.items():
        assert [c["code_offset"] for c in cs] == list(range(32)), system
        ras = [c["loop_ra_low12"] for c in cs]
        # 32 bytes of padding move a loop the compiler aligns to 8 or 16 bytes.
        assert len(set(ras)) >= 2 and ras == sorted(ras), (system, ras)


@pytest.mark.skipif(not BOOST, reason="libboost_context not found (apt-get install libboost-context-dev)")
def test_placement_edits():
    cells = context_switch.placement_experiment("edits", n=50, rounds=1)
    assert len(cells) == 8 and all(c["system"] == "boost_fcontext" for c in cells)


def test_placement_experiment_names():
    with pytest.raises(ValueError, match="experiment"):
        context_switch.placement_experiment("heap")


def test_sigprocmask_kernel_makes_the_calls_and_keeps_the_mask():
    import signal

    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert lib.yf_bench_sigprocmask(100) > 0
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


def test_fp_insn_kernel_keeps_the_fp_state_and_refuses_bad_input():
    m0, c0 = ffi.new("uint32_t *"), ffi.new("uint16_t *")
    lib.yf_fpenv_get(m0, c0)
    costs = context_switch.fp_costs(quick=True, rounds=2)
    assert costs and all(v["median"] >= 0 and len(v["samples"]) == 2 for v in costs.values())
    m, c = ffi.new("uint32_t *"), ffi.new("uint16_t *")
    lib.yf_fpenv_get(m, c)
    assert (m[0] & ~0x3F, c[0]) == (m0[0] & ~0x3F, c0[0])
    for bad in (-1, lib.YF_FPI_N):
        ffi.errno = 0
        assert lib.yf_bench_fp_insn(10, bad) == -1 and ffi.errno == errno.EINVAL
    assert lib.yf_bench_fp_insn(-1, lib.YF_FPI_NONE) == -1
