"""The lab's C kernels (csrc/lab/lab.h) for Python: benchmark kernels, the
baselines (glibc ucontext, Boost.Context fcontext), timer and stream
workloads, and the switch variants they time.

With the runtime wrappers (runtime, wheel, sbuf, loop) this is the only module
that imports the compiled module; yfcore.lab reaches the kernels through it.
Kernels return elapsed ns, or -1 with errno: `checked` turns that into an
OSError naming the kernel.
"""
import ctypes.util
import functools
import os

from ._yfcore import ffi, lib

__all__ = ["ffi", "lib", "CTX_VARIANTS", "checked", "boost_context_path"]

# The switch variants of yf_bench_ctx, by the name the ablation prints.
CTX_VARIANTS = {
    "full (default)": lib.YF_CTX_FULL, "full, ret": lib.YF_CTX_FULL_RET,
    "full, x87 CW always": lib.YF_CTX_FULL_ALWAYS, "full, MXCSR compared": lib.YF_CTX_MXCSR_CMP,
    "no FP state": lib.YF_CTX_NOFP, "no FP state, ret": lib.YF_CTX_NOFP_RET,
}


def checked(result, what: str):
    """result, unless a kernel signalled failure (< 0): then OSError(errno) naming `what`."""
    if result < 0:
        e = ffi.errno
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return result


@functools.lru_cache(maxsize=None)
def boost_context_path() -> str | None:
    """The Boost.Context shared library the fcontext kernels use (loaded once), or None when absent."""
    name = ctypes.util.find_library("boost_context")
    if name and lib.yf_bench_fcontext_load(name.encode()) == 0:
        return name
    return None
