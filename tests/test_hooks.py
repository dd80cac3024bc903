"""The hook library: every hooked call inside and outside coroutines (C
program tests/programs/hook_suite.c, built the three ways in), errno across switches, the
unmodified libmemcached client, and the Python helpers' argument checks."""
from pathlib import Path

import pytest

from yfcore.lab import errno_hooks as hooks

SUITE = Path(__file__).resolve().parent / "programs" / "hook_suite.c"

MC_MISSING = hooks.memcached_missing()
needs_memcached = pytest.mark.skipif(
    bool(MC_MISSING), reason=f"libmemcached experiments need {MC_MISSING}")


@pytest.fixture(scope="module", params=["static", "dynamic", "preload"])
def suite(request):
    prog, env = hooks.compile_hooked(SUITE, request.param)
    cp = hooks.run_hooked(prog, env, timeout=60)
    return request.param, cp, hooks.json_lines(cp.stdout)


def test_suite_every_check_passes(suite):
    mode, cp, rows = suite
    failed = [r for r in rows if not r["ok"]]
    assert not failed, f"{mode}: {failed}\n{cp.stderr}"
    assert cp.returncode == 0, f"{mode}: {cp.stderr}"


def test_suite_covers_the_hooked_calls(suite):
    mode, _, rows = suite
    names = {r["check"] for r in rows}
    for check in ("outside-coroutine", "tcp4-echo", "tcp6-echo", "unix-echo", "rcvtimeo", "nonblock-wish",
                  "epipe", "econnreset", "connect-refused", "connect-timeout", "fd-reuse", "shared-socket",
                  "regular-file", "udp", "poll-select", "sleep", "dns-workers", "errno-survives-wait",
                  "coroutine-fd-in-thread"):
        assert check in names, f"{mode}: check {check} did not report"


def test_runtime_only_build_has_no_hooks():
    # The control: linked against libyf.so alone nothing is interposed, and
    # the suite says so instead of hanging in a blocking accept.
    prog, env = hooks.compile_hooked(SUITE, "runtime")
    cp = hooks.run_hooked(prog, env, timeout=30)
    rows = hooks.json_lines(cp.stdout)
    assert rows[0] == {"check": "hooks-present", "ok": 0, "detail": "yf_hook_calls missing"}
    assert cp.returncode == 1


def test_build_paths_and_variants():
    b = hooks.build()
    assert b["hook_so"].name == "libyfhook.so" and b["hook_so"].is_file()
    assert b["runtime_so"].is_file() and b["archive"].is_file()
    assert [p.name for p in b["hook_objects"]] == [
        "hook_dns.o", "hook_fdtable.o", "hook_io.o", "hook_log.o", "hook_poll.o", "hook_symbols.o", "hook_wait.o"]
    assert (b["include"] / "yfhook.h").is_file()
    with pytest.raises(ValueError, match="variant"):
        hooks.build("nope")
    with pytest.raises(ValueError, match="mode"):
        hooks.link_flags("sideways")


def test_errno_across_switches():
    rows = {(r["mode"], r["keep"]): r for r in hooks.errno_switch(coroutines=4, rounds=20)}
    for (mode, keep), r in rows.items():
        assert r["checks"] == 80
    # errno is per thread: a plain switch hands the last writer's to everyone.
    assert rows[("yield", 0)]["wrong"] > 0 and rows[("sleep", 0)]["wrong"] > 0
    assert rows[("yield", 1)]["wrong"] == 0 and rows[("sleep", 1)]["wrong"] == 0
    # A hooked call that switches restores the caller's errno itself.
    assert rows[("hooked-sleep", 0)]["wrong"] == 0 and rows[("hooked-sleep", 1)]["wrong"] == 0


def test_cffi_keeps_errno_of_the_call():
    d = hooks.cffi_errno()
    assert d["rc"] == -1 and d["ffi_errno"] == d["expected"]


@needs_memcached
def test_libmemcached_in_coroutines():
    with hooks.memcached_server() as port:
        r = hooks.mc_run(port, "coro", 16, 200)
        t = hooks.mc_run(port, "threads", 4, 200)
    assert r["exit"] == "exit 0" and r["failures"] == 0 and r["wrong"] == 0, r
    assert r["ops"] == 3200 and r["connects"] == 16, r
    assert t["exit"] == "exit 0" and t["failures"] == 0 and t["connects"] == -1, t


@needs_memcached
def test_errno_clobber_reproduced_and_fixed():
    runs = hooks.errno_clobber(workers=4, ops=100, rounds=1)
    late, early = runs["log-late"][0], runs["log-early"][0]
    assert late["exit"] == "exit 0" and late["failures"] == 0 and late["wrong"] == 0, late
    assert early["failures"] > 0, early


@needs_memcached
def test_delay_proxy_holds_every_request_and_passes_replies():
    # Every call waits at least the delay (a request is held once, however
    # the client wrote it), and the replies are the server's, unchanged.
    with hooks.memcached_server() as port, hooks.delay_proxy(port, 3) as pport:
        r = hooks.mc_run(pport, "threads", 1, 20)
        c = hooks.mc_run(pport, "coro", 8, 20)
    assert r["exit"] == "exit 0" and r["failures"] == 0 and r["wrong"] == 0, r
    assert r["seconds"] >= 20 * 0.003, r
    assert c["exit"] == "exit 0" and c["failures"] == 0 and c["wrong"] == 0 and c["connects"] == 8, c


def test_delay_proxy_rejects_bad_arguments():
    with pytest.raises(ValueError, match="delay_ms"):
        with hooks.delay_proxy(11211, -1):
            pass
    with pytest.raises(ValueError, match="coroutines"):
        hooks.overlapped_waits(coroutines=1)


def test_helpers_reject_bad_arguments():
    with pytest.raises(ValueError, match="workers"):
        hooks.errno_clobber(workers=0)
    with pytest.raises(ValueError, match="coroutines"):
        hooks.errno_switch(coroutines=1)
    with pytest.raises(ValueError, match="mode"):
        hooks.mc_run(1, "fibers", 1, 1)
    with pytest.raises(ValueError, match="ops"):
        hooks.nonintrusive(ops=1)
