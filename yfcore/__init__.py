"""yfcore: a C coroutine runtime and the notebooks that test its diary's claims."""

__version__ = "0.1.0"

__all__ = ["__version__"]
