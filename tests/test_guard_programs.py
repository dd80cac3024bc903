"""Stack-guard programs, run as subprocesses: the sign bug, guard hits, silent corruption, mapping counts."""
import pytest

from yfcore.lab import stack_guard


def test_sign_bug_arithmetic_matches_c():
    py = stack_guard.sign_bug_arithmetic(4096)
    assert py["buggy_offset"] == 2**32 - 4096 == 4294963200
    assert py["fixed_offset"] == -4096
    c = stack_guard.sign_bug()
    assert c["buggy_offset"] == stack_guard.sign_bug_arithmetic(c["pagesize"])["buggy_offset"]
    assert c["fixed_offset"] == -c["pagesize"]


def test_sign_bug_guard_never_existed():
    r = stack_guard.sign_bug()
    assert r["buggy_target_mapped"] is False
    assert (r["buggy_rc"], r["buggy_errno"]) == (-1, "ENOMEM")
    assert (r["fixed_rc"], r["fixed_errno"]) == (0, "")
    # A write one byte below the stack base: caught by the fixed guard,
    # unnoticed with the buggy one.
    assert r["fixed_child"] == "SIGSEGV"
    assert r["buggy_child"] == "exit:0"


@pytest.mark.parametrize("mode", ["guard", "guard-mprotect"])
def test_guard_hit_kills_and_names_the_coroutine(mode):
    r = stack_guard.overflow(mode, 65536)
    assert r["signal"] == "SIGSEGV", r
    assert r["report_line"], r
    assert r["printed_id"] is not None
    assert r["named_id"] == r["printed_id"]
    assert r["named_stack_size"] == 65536
    assert r["fault_in_b_guard"] is True, r


def test_no_guard_corrupts_the_neighbour_silently():
    r = stack_guard.overflow("noguard", 65536)
    assert r["exit"] == "normal"
    assert r["adjacent"] is True
    assert r["victim_bytes_changed"] > 0
    assert r["slot_bytes_changed"] >= r["victim_bytes_changed"]


def test_stack_clash_protection_probes_the_guard():
    # Only the lowest KiB of the big frame is written, below the guard; the
    # prologue's page-by-page probes still hit the guard first.
    r = stack_guard.overflow("guard", 65536, touch="low")
    assert r["signal"] == "SIGSEGV", r
    assert r["named_id"] == r["printed_id"]


def test_without_stack_clash_protection_the_guard_is_jumped():
    r = stack_guard.overflow("guard", 65536, touch="low", stack_clash=False)
    assert r.get("exit") == "normal", r
    assert r["slot_bytes_changed"] > 0


def test_mprotect_guards_cost_two_mappings_per_stack():
    r = stack_guard.scale("mprotect", 2000)
    assert r["created"] == 2000 and r["errno"] == ""
    assert r["guard"] == "mprotect"
    assert 1.8 <= r["maps_per_stack"] <= 2.2, r


def test_guard_regions_cost_no_mappings():
    if not stack_guard.regions_supported():
        pytest.skip("this kernel has no MADV_GUARD_INSTALL guard regions (Linux 6.13+)")
    r = stack_guard.scale("regions", 2000)
    assert r["created"] == 2000 and r["errno"] == ""
    assert r["guard"] == "regions"
    assert r["maps_per_stack"] < 0.05, r


def test_a_warm_pool_makes_no_memory_system_call_per_stack():
    calls = stack_guard.stack_syscalls(500)
    assert calls["pool"] <= 0.01, calls
    # mmap, mprotect (the guard) and munmap for every fresh stack.
    assert calls["mmap"] >= 2.9, calls
