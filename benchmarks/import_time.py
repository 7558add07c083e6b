"""Cost of ``import drip``, and that it imports no server, framework or OpenTelemetry SDK module.

``python -X importtime -c "import drip"`` runs REPEATS times in fresh subprocesses (after one
untimed run that writes the bytecode caches); we report the median cumulative microseconds of
the ``drip`` package, the self time of drip's own modules, and the cumulative time of the
heaviest packages imported on the way (nested: pydantic's includes pydantic_core's). The same number of
``python -c "import drip"`` and ``python -c "pass"`` runs are timed from outside, interleaved,
for the wall-clock cost a user notices. Then ``sys.modules`` after ``import drip`` is checked
for modules that must not be there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict

import _bench

REPEATS = 7
#: top-level packages (and drip submodules) that ``import drip`` must not import
FORBIDDEN = (
    "drip.server",
    "drip.cli",
    "drip.integrations",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "flask",
    "langchain",
    "langchain_core",
    "openai",
    "opentelemetry",
    "psycopg",
    "anyio",
)
TARGET_MS = None  # no numeric target in the brief: reported, not judged


def env() -> dict[str, str]:
    """The environment for the child interpreters: no DRIP_* settings, no bytecode skipping."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DRIP_")}
    clean.pop("PYTHONDONTWRITEBYTECODE", None)
    return clean


def importtime() -> tuple[int, int, dict[str, int]]:
    """From one ``-X importtime`` run: drip's cumulative us, the self us of drip's own modules,
    and the cumulative us of each top-level package imported while importing drip."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import drip"],
        capture_output=True,
        text=True,
        env=env(),
        cwd=_bench.HERE,
        check=True,
    )
    entries: list[tuple[int, int, int, str]] = []  # self us, cumulative us, depth, module
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = line[len("import time:") :].split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2  # "-X importtime" indents by 2
        entries.append((int(self_us), int(cumulative), depth, name.strip()))
    # a module is listed after everything it imported: drip's subtree is what precedes it
    at = next(i for i, e in enumerate(entries) if e[2] == 0 and e[3] == "drip")
    first = max((i for i in range(at) if entries[i][2] == 0), default=-1) + 1
    subtree = entries[first:at]
    own = entries[at][0] + sum(e[0] for e in subtree if e[3].startswith("drip."))
    packages = {e[3]: e[1] for e in subtree if "." not in e[3] and not e[3].startswith("_")}
    return entries[at][1], own, packages


def wall(code: str) -> int:
    t0 = time.perf_counter_ns()
    subprocess.run([sys.executable, "-c", code], env=env(), cwd=_bench.HERE, check=True)
    return time.perf_counter_ns() - t0


def main() -> int:
    args = _bench.arguments(__doc__.splitlines()[0])
    _bench.header("import_time.py", f"{REPEATS} runs each, medians")
    results = _bench.Results("import_time")
    importtime()  # writes the bytecode caches
    totals: list[int] = []
    own: list[int] = []
    per_package: dict[str, list[int]] = defaultdict(list)
    walls: dict[str, list[int]] = {"import drip": [], "pass": []}
    for _ in range(REPEATS):
        total, own_us, packages = importtime()
        totals.append(total)
        own.append(own_us)
        for name, cum in packages.items():
            per_package[name].append(cum)
        walls["import drip"].append(wall("import drip"))
        walls["pass"].append(wall("pass"))

    drip_us = _bench.median(totals)
    heavy = sorted(
        ((name, _bench.median(v)) for name, v in per_package.items()), key=lambda x: -x[1]
    )[:8]
    wall_drip = _bench.median(walls["import drip"]) / 1e6
    wall_pass = _bench.median(walls["pass"]) / 1e6
    rows = [
        ("drip, cumulative (-X importtime)", _bench.fmt(drip_us), "us"),
        ("  drip's own modules (self time)", _bench.fmt(_bench.median(own)), "us"),
        *[(f"  package {name} (cumulative)", _bench.fmt(us), "us") for name, us in heavy],
        ('python -c "import drip" (wall)', _bench.fmt(wall_drip, 1), "ms"),
        ('python -c "pass" (wall)', _bench.fmt(wall_pass, 1), "ms"),
        ("difference", _bench.fmt(wall_drip - wall_pass, 1), "ms"),
    ]
    print()
    print(_bench.table(["import", "median", "unit"], rows, title="import drip:"))

    probe = "import json, sys; import drip; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            env=env(),
            cwd=_bench.HERE,
            check=True,
        ).stdout
    )
    bad = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    print(
        f"\nmodules loaded by `import drip`: {len(loaded)}; forbidden among them: {bad or 'none'}"
    )
    print(f"(checked: {', '.join(FORBIDDEN)})")
    results.check("import drip, cumulative", drip_us / 1000, "ms", "", None)
    results.check("import drip, wall minus bare interpreter", wall_drip - wall_pass, "ms", "", None)
    results.check(
        "server/framework/OTel modules imported", len(bad), "", "0", not bad, note=", ".join(bad)
    )
    return results.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
