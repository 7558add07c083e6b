"""drip's compiled parts (drip/_speedups*.c): a metered call's and a web request's common case.

Everything else is in pyproject.toml. The extension is optional: where it cannot be built (no
compiler, another Python implementation) drip installs and runs as pure Python, the same
behaviour a little slower (``drip._metered._wrap.COMPILED`` says which).
"""

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

setup(ext_modules=extensions)
