"""cffi builder for yfcore._yfcore (API mode, out of line); never imported at run time.

The module holds the runtime (yf.h) and the lab (lab/lab.h); which files and
flags those are, _sources.py says.
"""
import importlib.util
import os
import re
from pathlib import Path

from cffi import FFI


# cffi runs this file by path, while the package cannot be imported yet.
_spec = importlib.util.spec_from_file_location("_yf_sources", Path(__file__).resolve().with_name("_sources.py"))
src = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(src)
ROOT = src.ROOT
CSRC = src.csrc()

DEBUG = os.environ.get("YF_DEBUG", "") not in ("", "0")
CFLAGS = [*src.COMMON_CFLAGS, *(src.DEBUG_CFLAGS if DEBUG else src.RELEASE_CFLAGS)]
HEADERS = (CSRC / "yf.h", CSRC / "lab" / "lab.h")


_DEFINE = re.compile(r"\s*#\s*define\s+(YF_\w+)\s+\S")


def _cdef_line(line: str) -> str:
    # `#define YF_X value` becomes `#define YF_X ...`: cffi takes the value
    # from the compiler, so it cannot disagree with the header. Any other
    # preprocessor line is dropped.
    m = _DEFINE.match(line)
    if m:
        return f"#define {m.group(1)} ..."
    return "" if line.lstrip().startswith("#") else line


def cdef_source(header: Path = CSRC / "yf.h") -> str:
    """The declarations between the CDEF markers of a header, for cffi's cdef."""
    text = header.read_text()
    m = re.search(r"/\* CDEF BEGIN \*/(.*)/\* CDEF END \*/", text, re.S)
    if not m:
        raise SystemExit(f"yfcore: no CDEF markers in {header}")
    return "\n".join(_cdef_line(line) for line in m.group(1).splitlines())


def module_sources() -> list[str]:
    """The C and assembly files of the module (runtime, then lab), relative to the project root."""
    try:
        return src.relative([*src.runtime(), *src.lab()])
    except src.UnsupportedArchitecture as e:
        raise SystemExit(str(e)) from None


ffibuilder = FFI()
ffibuilder.cdef("\n".join(cdef_source(h) for h in HEADERS))
ffibuilder.set_source(
    "yfcore._yfcore",
    '#include "yf.h"\n#include "lab/lab.h"',
    sources=module_sources(),
    include_dirs=src.relative(src.include_dirs()),
    extra_compile_args=CFLAGS + ['-DYF_CFLAGS="' + " ".join(CFLAGS) + '"'],
    libraries=list(src.RUNTIME_LIBS),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
