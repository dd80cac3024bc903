"""yfcore: a C coroutine runtime and the notebooks that test its diary's claims.

The classes are imported on first use, so `import yfcore` (and the command
line's `info`/`claims`) works before the C module is built.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "Scheduler": "runtime", "Coroutine": "runtime", "PyCoroutine": "runtime",
    "CoroutineExit": "runtime", "PY_STACK_SIZE": "runtime",
    "yield_": "runtime", "block": "runtime", "current": "runtime", "sleep": "runtime", "wait_fd": "runtime",
    "Loop": "loop", "TimerWheel": "wheel", "KeyedTimerWheel": "wheel", "SockBuf": "sbuf",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value   # once: yfcore.yield_ is called in hot loops
        return value
    raise AttributeError(f"module 'yfcore' has no attribute {name!r}")
