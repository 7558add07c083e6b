"""drip's compiled parts: drip/_speedups*.c (a metered call's and a web request's common case)
and drip/_sigwatch.c (a stop signal heard when the main thread cannot run its handler).

Everything else is in pyproject.toml. The extension is optional: where it cannot be built (no
compiler, another Python implementation) drip installs and runs as pure Python, the same
behaviour a little slower (``drip._metered._wrap.COMPILED`` says which).
"""

import os
import platform

from setuptools import Extension, setup

extensions = []
if platform.python_implementation() == "CPython":
    extensions.append(
        Extension(
            "drip._speedups",
            ["drip/_speedups.c", "drip/_speedups_web.c"],
            depends=["drip/_speedups.h"],
            optional=True,
        )
    )
    if os.name == "posix":  # sigaction: a stop signal heard off the main thread
        extensions.append(Extension("drip._sigwatch", ["drip/_sigwatch.c"], optional=True))

setup(ext_modules=extensions)
