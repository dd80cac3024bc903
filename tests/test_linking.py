"""Linking experiments (notebook 04), run as subprocesses: PC32 relocations,
link builds, hooks loaded by dlopen, hooks in static archives."""
import pytest

from yfcore.lab import linking

PC32_MESSAGE = (
    "ld: <tmp>.o: warning: relocation against `{sym}' in read-only section `.text'\n"
    "ld: <tmp>.o: relocation R_X86_64_PC32 against symbol `{sym}' can not be used when making "
    "a shared object; recompile with -fPIC\n"
    "ld: final link failed: bad value\n"
    "collect2: error: ld returned 1 exit status"
)


def test_mask_paths_hides_temporary_objects_and_directories():
    text = "/usr/bin/ld: /tmp/ccAb12Z9.o: relocation against `x' in /work/main/build/programs/a-1.so"
    assert linking.mask_paths(text) == "ld: <tmp>.o: relocation against `x' in a-1.so"


@pytest.mark.parametrize(
    "variant, sym",
    [("bad: movq sym(%rip) to a global", "link_counter"), ("2016 call: R_X86_64_PC32 to a global", "link_target")],
)
def test_pc32_against_a_global_fails_to_link_a_shared_object(variant, sym):
    r = linking.pc32_build(variant)
    assert f"R_X86_64_PC32 {sym}" in r["relocations"]
    assert r["linked"] is False
    assert r["message"] == PC32_MESSAGE.format(sym=sym)


@pytest.mark.parametrize(
    "variant, target",
    [
        ("fix: hidden visibility", "link_target"),
        ("fix: @PLT and @GOTPCREL", "link_target@plt"),
        ("fix: local aliases", "link_target"),
        ("today's call: plain call sym (PLT32)", "link_target@plt"),
    ],
)
def test_fixed_forms_link_and_run(variant, target):
    r = linking.pc32_build(variant)
    assert r["linked"] is True, r["message"]
    assert r["message"] == ""
    assert r["call_target"] == target
    assert (r["exit"], r["entry"]) == ("exit 0", 1042)


def test_today_gas_writes_a_plain_call_as_plt32():
    r = linking.pc32_build("today's call: plain call sym (PLT32)")
    assert "R_X86_64_PLT32 link_target" in r["relocations"]


def test_pc32_build_rejects_unknown_variant():
    with pytest.raises(ValueError, match="variant"):
        linking.pc32_build("no such variant")


def test_our_runtime_links_into_a_shared_object_and_runs():
    r = linking.runtime_shared(500)
    assert r["linked"] is True, r["message"]
    assert r["textrel"] is False
    # The switch code names other objects' symbols (x86-64's fused resume and
    # yield fall back to co.c's and read the per-thread block), each hidden,
    # so the static link resolves them: none is exported, and the thread-local
    # block is reached by initial-exec loads.
    assert r["ctx_exported"] == [], r["ctx_relocations"]
    assert {x.split()[0] for x in r["ctx_relocations"]} <= {"R_X86_64_PLT32", "R_X86_64_GOTTPOFF"}
    assert (r["exit"], r["finished"]) == ("exit 0", 500)


def test_every_link_build_runs_the_switch_loop():
    r = linking.link_cost(n_switch=1000, n_call=1000, rounds=1)
    assert set(r) == set(linking.LINK_BUILDS)
    for kind, m in r.items():
        assert m["switch_ns"]["n"] == 1 and m["switch_ns"]["median"] > 0, kind
        assert m["call_ns"]["median"] > 0, kind


def test_link_cost_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kinds"):
        linking.link_cost(kinds=("static", "dynamic"))
    with pytest.raises(ValueError, match="n_switch"):
        linking.link_cost(n_switch=0)
    with pytest.raises(ValueError, match="kind"):
        linking.build_link("lto")


def test_only_ld_preload_interposes():
    n = 50
    r = linking.dlopen_counts(n)
    assert r["LD_PRELOAD"] == {"program": n, "other_library": n, "hook_module": n}
    # Loaded by dlopen, the library comes after libc in every lookup scope,
    # its own calls included.
    assert r["dlopen RTLD_GLOBAL"] == {"program": 0, "other_library": 0, "hook_module": 0}
    assert r["dlopen RTLD_LOCAL"] == {"program": 0, "other_library": 0, "hook_module": 0}
    assert r["Python ctypes.CDLL"] == {"program": 0, "other_library": None, "hook_module": 0}


def test_dlopen_counts_rejects_bad_n():
    with pytest.raises(ValueError, match="n must be"):
        linking.dlopen_counts(0)


def test_unreferenced_archive_member_is_left_out():
    n = 7
    r = linking.archive_pull(n)
    assert r["archive as is"] == {"nm_getpid": False, "hook_linked": False, "hook_calls": -1, "n": n}
    for fix in ("-Wl,--whole-archive", "-Wl,-u,getpid", "anchor symbol referenced"):
        assert r[fix] == {"nm_getpid": True, "hook_linked": True, "hook_calls": n, "n": n}, fix


def test_link_cost_measures_the_hooked_call_when_the_hooks_exist():
    if not linking.hook_sources():
        pytest.skip("the hook layer (csrc/hook/) is not there")
    r = linking.link_cost(n_switch=100, n_call=100, n_hooked=100, rounds=1, kinds=("static", "plt"))
    for kind in r:
        assert r[kind]["hooked_ns"]["median"] > 0 and r[kind]["real_ns"]["median"] > 0, kind


def test_hooks_see_none_of_the_calls_inside_getaddrinfo():
    r = linking.hook_intra_libc(delay_ms=20)
    if "skipped" in r:
        pytest.skip(r["skipped"])
    plain = r["plain"]
    assert plain["rc"] == 0
    # The diary's strace, in order: libc asks the kernel for the addresses.
    assert plain["strace_calls"][:6] == ["socket", "bind", "getsockname", "sendto", "recvmsg", "recvmsg"]
    assert plain["gai_hooked"] == 1
    assert plain["inner_hooked"] == 0
    loop = r["loop"]
    assert (loop["rc_hooked"], loop["rc_real"]) == (0, 0)
    assert (loop["gai_hooked"], loop["inner_hooked"]) == (1, 0)
    # Each lookup waits >= 40 ms in the delayed recvmsg calls: the hooked one
    # on a worker thread while the other coroutine runs, libc's own on the
    # coroutines' thread, which then runs nothing else.
    assert loop["ticks_hooked"] > 0
    assert loop["ticks_real"] == 0
    assert loop["worker_calls"] >= 6 and loop["main_calls"] >= 6


def test_hook_intra_libc_rejects_bad_delay():
    with pytest.raises(ValueError, match="delay_ms"):
        linking.hook_intra_libc(delay_ms=0)
