"""Build the cffi extension; metadata lives in pyproject.toml."""
from setuptools import setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """build_ext that also compiles the assembly context switch (csrc/*.S)."""

    def build_extensions(self):
        # distutils' Unix compiler skips sources whose suffix it does not know;
        # cc preprocesses and assembles .S itself once it is let through.
        if ".S" not in self.compiler.src_extensions:
            self.compiler.src_extensions.append(".S")
        super().build_extensions()


setup(
    cffi_modules=["yfcore/_build.py:ffibuilder"],
    cmdclass={"build_ext": BuildExt},
)
