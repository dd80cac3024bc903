"""cffi builder for yfcore._yfcore (API mode, out of line); never imported at run time."""
import os
import platform
import re
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"

ARCH_SOURCES = {"x86_64": "ctx_x86_64.S"}
machine = platform.machine()
if machine not in ARCH_SOURCES:
    raise SystemExit(
        f"yfcore: no context switch for architecture {machine!r}; "
        f"supported: {', '.join(sorted(ARCH_SOURCES))} (add csrc/ctx_<arch>.S)"
    )

DEBUG = os.environ.get("YF_DEBUG", "") not in ("", "0")
CFLAGS = ["-std=gnu11", "-fstack-clash-protection", "-fno-semantic-interposition", "-Wall", "-Wextra", "-Wno-unused-parameter",
          "-Werror=implicit-function-declaration"]
CFLAGS += ["-O1", "-g", "-DYF_DEBUG"] if DEBUG else ["-O2"]


def cdef_source(header: Path = CSRC / "yf.h") -> str:
    """The declarations between the CDEF markers of yf.h, preprocessor lines dropped."""
    text = header.read_text()
    m = re.search(r"/\* CDEF BEGIN \*/(.*)/\* CDEF END \*/", text, re.S)
    if not m:
        raise SystemExit(f"yfcore: no CDEF markers in {header}")
    return "\n".join(line for line in m.group(1).splitlines() if not line.lstrip().startswith("#"))


def runtime_sources() -> list[str]:
    """The C and assembly files of the runtime, relative to the project root."""
    files = sorted(CSRC.glob("*.c")) + [CSRC / ARCH_SOURCES[machine]]
    return [str(p.relative_to(ROOT)) for p in files]


ffibuilder = FFI()
ffibuilder.cdef(cdef_source())
ffibuilder.set_source(
    "yfcore._yfcore",
    '#include "yf.h"',
    sources=runtime_sources(),
    include_dirs=[str(CSRC.relative_to(ROOT))],
    extra_compile_args=CFLAGS + ['-DYF_CFLAGS="' + " ".join(CFLAGS) + '"'],
    libraries=["dl"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
