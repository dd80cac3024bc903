"""Build the cffi extension and the hook library; metadata lives in pyproject.toml."""
import importlib.util
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """build_ext that also compiles the assembly context switch (csrc/*.S) and
    builds the hook library (csrc/hook/) next to the module."""

    def build_extensions(self):
        # distutils' Unix compiler skips sources whose suffix it does not know;
        # cc preprocesses and assembles .S itself once it is let through.
        if ".S" not in self.compiler.src_extensions:
            self.compiler.src_extensions.append(".S")
        super().build_extensions()

    def run(self):
        super().run()
        # The interposed libc symbols (csrc/hook/) must stay out of the cffi
        # module, where they would hook the interpreter's own I/O: they are
        # built beside it as yfcore/hooklib/ (libyf.so, libyfhook.so,
        # libyfhook.a), in the source tree for --inplace and editable
        # installs. The builder is loaded by path, as cffi_modules are.
        here = Path(__file__).resolve().parent
        spec = importlib.util.spec_from_file_location("_yf_hookbuild", here / "yfcore" / "_hookbuild.py")
        hookbuild = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(hookbuild)
        package = here / "yfcore" if self.inplace else Path(self.build_lib) / "yfcore"
        hookbuild.build(package / "hooklib", root=here)


def _py_extension() -> Extension:
    """yfcore._yfpy (csrc/py/): Python functions as coroutine bodies, a
    C-API module (it must hold the GIL across a switch, which a cffi call
    cannot); its sources and flags come from _sources.py."""
    here = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location("_yf_sources", here / "yfcore" / "_sources.py")
    src = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(src)
    return Extension("yfcore._yfpy", sources=src.relative(src.py(here), here),
                     include_dirs=src.relative(src.include_dirs(here), here),
                     extra_compile_args=list(src.PY_CFLAGS))


setup(
    ext_modules=[_py_extension()],
    cffi_modules=["yfcore/_build.py:ffibuilder"],
    cmdclass={"build_ext": BuildExt},
)
