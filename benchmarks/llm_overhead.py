"""Caller overhead of metering an OpenAI call: drip vs none vs OpenLLMetry vs Logfire.

    python benchmarks/llm_overhead.py [--json PATH]
    python benchmarks/llm_overhead.py --ir        # instructions per call (valgrind), ~10 min
    python benchmarks/llm_overhead.py --ir --base /tmp/base-venv/bin/python --jobs 2 stream
    LLM_OVERHEAD_CHUNKS=100 python benchmarks/llm_overhead.py   # longer streams (default 8)
    LLM_OVERHEAD_REPEATS=11 LLM_OVERHEAD_CALLS=20 ...          # fewer calls (default 21 x 50)

The same ``client.chat.completions.create`` (plain, and ``stream=True`` read to the end) on
the real openai SDK over ``httpx2.MockTransport`` (no network), on four clients in one process,
interleaved: uninstrumented; instrumented by drip (``drip.integrations.openai.instrument(client)``,
inside a ``drip.run``, delivering to a real ``drip serve`` subprocess); instrumented by
OpenLLMetry (``opentelemetry-instrumentation-openai``, OTel SDK, batch processor, an exporter
that drops); instrumented by Logfire (``logfire.instrument_openai(client)``, nothing sent).
The two peers are measured only if installed. Target: drip adds at most 5% to an
uninstrumented mocked call.

Streams have one more reference, ``uninstrumented, usage asked``: the caller asks for usage
itself (``stream_options={"include_usage": True}``, what drip adds when the caller did not), so
the SDK parses one more chunk. The target is judged against the plain uninstrumented call;
this row shows how much of drip's stream overhead is that chunk. The script also times drip's
own work per call alone, twice: back to back (hot caches) and right after an uninstrumented SDK
call (what happens in situ; see ``benchmarks/README.md``).

``--ir`` counts instructions instead of time (``valgrind --tool=callgrind``, one child process
per case and call count; per call = the difference between 30 and 10 calls, GC off during the
calls, records captured in memory): what a noisy host cannot blur. Instructions are not time
(drip's code runs with cold caches in situ), but the same path counted twice is the same count.
"""

from __future__ import annotations

import contextvars
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import _bench
import httpx2
import openai

N = int(os.environ.get("LLM_OVERHEAD_CALLS", "50"))  # calls per case per repeat
REPEATS = int(os.environ.get("LLM_OVERHEAD_REPEATS", "21"))
LIVE = "drip, live delivery"
DEFERRED = "drip, delivery deferred"
CONTROL = "control: wrapt pass-through"
MODEL = "gpt-4o-mini-2024-07-18"
USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
BASE = {"id": "c1", "created": 1, "model": MODEL}
PLAIN = json.dumps(
    {
        **BASE,
        "object": "chat.completion",
        "usage": USAGE,
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}
        ],
    }
)
#: content chunks per stream (8 by default; the target is judged on the default)
WORDS = int(os.environ.get("LLM_OVERHEAD_CHUNKS", "8"))
CHUNKS = [{**BASE, "object": "chat.completion.chunk",
           "choices": [{"index": 0, "delta": {"content": f"w{i}"}, "finish_reason": None}]}
          for i in range(WORDS)]  # fmt: skip


#: the usage chunk is sent when asked (None), or always (True) or never (False): ``--ir`` splits
#: its cost into the request's side (asking) and the response's (parsing one more chunk)
SEND_USAGE: bool | None = None


def answer(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    if not body.get("stream"):
        return httpx2.Response(200, content=PLAIN, headers={"content-type": "application/json"})
    chunks = list(CHUNKS)
    asked = (body.get("stream_options") or {}).get("include_usage")
    if asked if SEND_USAGE is None else SEND_USAGE:
        chunks.append({**BASE, "object": "chat.completion.chunk", "choices": [], "usage": USAGE})
    sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return httpx2.Response(200, content=sse.encode(), headers={"content-type": "text/event-stream"})


def client() -> openai.OpenAI:
    return openai.OpenAI(
        api_key="sk-bench", max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )  # fmt: skip


MESSAGES = [{"role": "user", "content": "hi"}]


USAGE_ASKED = "uninstrumented, usage asked"


def block(
    llm: openai.OpenAI, stream: bool, run: Any = None, **extra: Any
) -> Callable[[], tuple[int, int]]:
    """One call (inside ``run``, a ``drip.run(...)``, when given): wall and caller-thread CPU ns.

    Both are reported: on a host shared with other busy processes the wall time of a
    CPU-bound mocked call swings with scheduling, while the calling thread's CPU time is
    what the instrumentation itself adds to the caller. Each case's calls run in a context of
    its own (``run`` stays open in it for the whole measurement), so ``rotated`` can interleave
    the cases call by call.
    """
    create = llm.chat.completions.create
    ctx = contextvars.copy_context()
    if run is not None:
        ctx.run(run.__enter__)
        _open_runs.append((ctx, run))

    def call() -> None:
        if stream:
            for _chunk in create(model="gpt-4o-mini", messages=MESSAGES, stream=True, **extra):
                pass
        else:
            create(model="gpt-4o-mini", messages=MESSAGES)

    def timed() -> tuple[int, int]:
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        ctx.run(call)
        return time.perf_counter_ns() - t0, time.thread_time_ns() - c0

    return timed


#: the runs ``block`` opened, closed by ``close_runs``
_open_runs: list[tuple[contextvars.Context, Any]] = []


def close_runs() -> None:
    while _open_runs:
        ctx, run = _open_runs.pop()
        ctx.run(run.__exit__, None, None, None)


def pinned() -> openai.OpenAI:
    """A client whose ``create`` is the SDK's own, whatever is patched on the class later.

    OpenLLMetry can only patch the classes (every client at once); pinning the original
    method on the other clients keeps them out of it, so all cases run side by side, with no
    switching on and off in between (its ``uninstrument`` leaves calls slower than before).
    """
    from openai.resources.chat.completions import Completions

    llm = client()
    resource = llm.chat.completions
    vars(resource)["create"] = vars(Completions)["create"].__get__(resource)
    return llm


def openllmetry_client() -> openai.OpenAI | None:
    try:
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
    except ImportError:
        return None

    class Drop(SpanExporter):  # type: ignore[misc]
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    return client()


def logfire_client() -> openai.OpenAI | None:
    try:
        import logfire
    except ImportError:
        return None
    logfire.configure(send_to_logfire=False, console=False, inspect_arguments=False)
    llm = pinned()
    logfire.instrument_openai(llm)  # this client only
    return llm


Case = tuple[str, Callable[[], tuple[int, int]]]


def rotated(cases: list[Case], repeats: int) -> dict[str, list[tuple[int, int]]]:
    """Per repeat, N calls of each case, interleaved call by call (a, b, c, a, b, c, ...), so
    every case meets the same moments of a shared host's load; each repeat starts with the
    next case. Returns each case's (wall, CPU) ns summed over its N calls, per repeat."""
    out: dict[str, list[tuple[int, int]]] = {name: [] for name, _ in cases}
    for r in range(repeats):
        order = cases[r % len(cases) :] + cases[: r % len(cases)]
        sums = {name: [0, 0] for name, _ in cases}
        for _ in range(N):
            for name, case in order:
                wall, cpu = case()
                sums[name][0] += wall
                sums[name][1] += cpu
        for name, (wall, cpu) in sums.items():
            out[name].append((wall, cpu))
    return out


def _pct(table: dict[str, float], name: str) -> str:
    return f"{100 * (table[name] - table['uninstrumented']) / table['uninstrumented']:+.1f}%"


def passthrough() -> openai.OpenAI:
    """A control: the same wrapt wrapping drip uses, doing nothing else."""
    import wrapt

    llm = pinned()
    wrapt.wrap_function_wrapper(llm.chat.completions, "create", lambda w, i, a, k: w(*a, **k))
    return llm


def own_work(client: Any, customer: str, bare: openai.OpenAI, n: int = 400) -> tuple[float, float]:
    """drip's own work for one plain call, no SDK call in it: median us (hot, cold).

    The work is what the wrapper does around the SDK method: begin the call (its event),
    make it current and back, read the tokens from the parsed response, price them, record.
    Timed alone, back to back (hot: drip's code and data stay in the CPU caches), and timed
    alone right after an uninstrumented SDK call that is not timed (cold: as in situ, where
    the SDK's much larger working set ran in between).
    """
    from drip.integrations import openai as drip_openai
    from openai.types.chat import ChatCompletion

    parsed = ChatCompletion.model_validate(json.loads(PLAIN))
    kwargs = {"model": "gpt-4o-mini", "messages": MESSAGES}
    create, perf = bare.chat.completions.create, time.perf_counter_ns

    def once() -> int:
        t0 = perf()
        call = drip_openai._Call("llm_tokens", "chat", kwargs)
        event = call.llm.event
        if event is not None:
            event.exit(event.enter())
        call.result(parsed)
        return perf() - t0

    hot: list[float] = []
    cold: list[float] = []
    with client.run("bench-llm-own", customer_id=customer):
        for _ in range(REPEATS):
            hot.append(statistics.median(once() for _ in range(n)) / 1000)
            samples = []
            for _ in range(n // 4):
                create(model="gpt-4o-mini", messages=MESSAGES)
                samples.append(once())
            cold.append(statistics.median(samples) / 1000)
    return statistics.median(hot), statistics.median(cold)


def main() -> int:
    args = _bench.arguments(__doc__.splitlines()[0])
    _bench.header(
        "llm_overhead.py",
        f"{REPEATS} repeats x {N} calls, interleaved, medians; {WORDS} content chunks per stream",
    )
    results = _bench.Results("llm_overhead")
    os.environ.setdefault("OTEL_SDK_DISABLED", "false")
    server = _bench.DripServer().start()
    try:
        from drip.integrations import openai as drip_openai

        import drip
        from drip._default import configure

        live = configure(api_key=server.key, base_url=server.url)
        deferred = drip.Drip(
            api_key=server.key, base_url=server.url, flush_interval=3600, max_batch_items=100_000
        )
        customer = live.create_customer(external_customer_id="bench-llm").id
        bare, metered = pinned(), pinned()  # one metered client; the run decides delivery
        control = passthrough()
        drip_openai.instrument(metered)  # this client only
        lf = logfire_client()
        otel_llm = openllmetry_client()  # last: it patches the class

        rows: list[tuple[str, ...]] = []
        verdicts: list[tuple[str, str, float]] = []
        plain_bare = 0.0
        for stream in (False, True):
            cases: list[Case] = [
                ("uninstrumented", block(bare, stream)),
                (CONTROL, block(control, stream)),
                (LIVE, block(metered, stream, live.run("bench-llm", customer_id=customer))),
                (DEFERRED, block(metered, stream, deferred.run("bench-llm", customer_id=customer))),
            ]
            if stream:
                asked = {"stream_options": {"include_usage": True}}
                cases.append((USAGE_ASKED, block(bare, stream, **asked)))
            if otel_llm is not None:
                cases.append(("OpenLLMetry", block(otel_llm, stream)))
            if lf is not None:
                cases.append(("Logfire", block(lf, stream)))
            for _, case in cases:
                for _ in range(5):
                    case()  # warm up
            timed = rotated(cases, REPEATS)
            close_runs()
            kind = "stream" if stream else "plain"
            wall = {n: statistics.median(w for w, _ in v) / N / 1000 for n, v in timed.items()}
            cpu = {n: statistics.median(c for _, c in v) / N / 1000 for n, v in timed.items()}
            for name in wall:
                rows.append((kind, name, _bench.fmt(wall[name], 1),
                             _pct(wall, name), _bench.fmt(cpu[name], 1), _pct(cpu, name)))  # fmt: skip
            plain_bare = plain_bare or cpu["uninstrumented"]
            for name in (LIVE, DEFERRED):
                verdicts.append((kind, name, 100 * (cpu[name] / cpu["uninstrumented"] - 1)))
            if stream:
                for name in (LIVE, DEFERRED):
                    pct = 100 * (cpu[name] / cpu[USAGE_ASKED] - 1)
                    results.check(f"{name}, stream: caller CPU over '{USAGE_ASKED}'", pct, "%",
                                  "", None)  # fmt: skip
            for name in (LIVE, DEFERRED, CONTROL, "OpenLLMetry", "Logfire"):
                if name not in wall:
                    continue
                target = name in (LIVE, DEFERRED)
                for what, table in (("caller CPU", cpu), ("wall", wall)):
                    pct = 100 * (table[name] - table["uninstrumented"]) / table["uninstrumented"]
                    ok = pct <= 5 if target and what == "caller CPU" else None
                    results.check(f"{name}, {kind}: {what} overhead", pct, "%",
                                  "<= 5%" if ok is not None else "", ok)  # fmt: skip
        hot, cold = own_work(deferred, customer, bare)
        results.check("drip's own work per plain call, alone, hot", hot, "us", "", None)
        results.check("drip's own work per plain call, alone, after an SDK call", cold, "us", "",
                      None)  # fmt: skip
        results.check("  ... the latter as a share of an uninstrumented plain call (CPU)",
                      100 * cold / plain_bare, "%", "", None)  # fmt: skip
        deferred.flush(60)
        live.flush(60)
        stats = [c.stats() for c in (live, deferred)]
        deferred.close()
        print()
        print(_bench.table(["call", "instrumentation", "wall us", "wall +", "CPU us", "CPU +"],
                           rows, title="OpenAI chat.completions.create on a mock transport:"))  # fmt: skip
        sent = sum(x.sent for x in stats)
        lost = sum(x.rejected + x.dropped for x in stats)
        print(f"\ndrip delivered {sent} records to the server ({lost} rejected or dropped)")
        if otel_llm is None:
            print("OpenLLMetry not installed: pip install opentelemetry-instrumentation-openai")
        if lf is None:
            print("Logfire not installed: pip install logfire")
    finally:
        server.stop()
    status = results.finish(args.json)
    print("\nVerdict (issue 9 target: drip adds <= 5% caller CPU to an uninstrumented mocked"
          " create):")  # fmt: skip
    for kind, name, pct in verdicts:
        print(f"  {kind:6s} {name:24s} {pct:+6.1f}%  {'MET' if pct <= 5 else 'NOT MET'}")
    return status


IR_CASES = {  # case: (instrumented, stream, usage asked by the caller, mock only, SEND_USAGE)
    "plain, uninstrumented": (False, False, False, False, None),
    "plain, drip": (True, False, False, False, None),
    "stream, uninstrumented": (False, True, False, False, None),
    "stream, uninstrumented, usage asked": (False, True, True, False, None),
    "stream, drip": (True, True, False, False, None),
    # the usage chunk's cost, split: the mock transport's share (``answer`` alone: decode the
    # request, build the body), asking without getting it, getting it without asking
    "stream, mock transport only": (False, True, False, True, None),
    "stream, mock transport only, usage asked": (False, True, True, True, None),
    "stream, usage asked, chunk not sent": (False, True, True, False, False),
    "stream, usage chunk sent unasked": (False, True, False, False, True),
}


def ir_child(case: str, n: int) -> None:
    """``n`` calls of one case, GC off, records captured in memory (never sent)."""
    import gc

    import drip
    from drip.testing import capture

    global SEND_USAGE
    instrumented, stream, asked, mock_only, SEND_USAGE = IR_CASES[case]
    llm = pinned()
    if instrumented:
        from drip.integrations import openai as drip_openai

        drip_openai.instrument(llm)
    create = llm.chat.completions.create
    extra = {"stream_options": {"include_usage": True}} if asked else {}
    request = httpx2.Request("POST", "https://mock/v1/chat/completions",
                             json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True,
                                   **extra})  # fmt: skip
    with capture() as cap, drip.run("bench-llm-ir", customer_id="cus_ir"):
        for i in range(n + 3):  # 3 to warm up, then n
            if mock_only:
                answer(request).read()
            elif stream:
                for _chunk in create(model="gpt-4o-mini", messages=MESSAGES, stream=True, **extra):
                    pass
            else:
                create(model="gpt-4o-mini", messages=MESSAGES)
            if i == 2:
                gc.collect()
                gc.disable()  # a collection in one count and not the other would swamp it
            cap.records.clear()
    os._exit(0)


def ir_count(python: str, case: str, n: int) -> int:
    import subprocess

    # one hash seed for every child: with random ones, dict and set probing alone moved the
    # same case by hundreds of thousands of instructions per call from one process to the next
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python,
         __file__, "--ir-child", case, str(n)],
        capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    line = next(x for x in out.stderr.splitlines() if "Collected" in x)
    return int(line.split()[-1])


def ir_main(argv: list[str]) -> int:
    """``--ir [--base PYTHON] [--jobs N] [CASE ...]``: instructions per call of each case.

    ``--base PYTHON``: also count the drip cases under another interpreter, one whose ``drip``
    is another checkout (``git worktree add --detach /tmp/base <commit>`` and a virtualenv with
    it installed), so before and after are counted by the same script on the same host.
    ``--jobs N`` runs N valgrind children at once. ``CASE``s (substrings) pick cases.
    """
    import shutil
    import sys
    from concurrent.futures import ThreadPoolExecutor

    if shutil.which("valgrind") is None:
        raise SystemExit("--ir needs valgrind on PATH")
    base, jobs, picks = None, 1, []
    args = iter(argv)
    for arg in args:
        if arg == "--base":
            base = next(args)
        elif arg == "--jobs":
            jobs = int(next(args))
        else:
            picks.append(arg)
    cases = [c for c in IR_CASES if not picks or any(p in c for p in picks)]
    runs = [(f"{case} (base)" if python == base else case, python, case)
            for case in cases for python in (sys.executable, base)
            if python is not None and (python != base or IR_CASES[case][0])]  # fmt: skip
    _bench.header("llm_overhead.py --ir", f"instructions per call: (30 calls - 10 calls) / 20, "
                  f"{WORDS} content chunks per stream")  # fmt: skip
    with ThreadPoolExecutor(jobs) as pool:
        counts = {(label, n): pool.submit(ir_count, python, case, n)
                  for label, python, case in runs for n in (30, 10)}  # fmt: skip
        per = {label: (counts[label, 30].result() - counts[label, 10].result()) / 20
               for label, _, _ in runs}  # fmt: skip
    for label, ir in per.items():
        print(f"{label:46s} {ir:12,.0f}")
    for kind, over in (("plain", "plain, uninstrumented"), ("stream", "stream, uninstrumented"),
                       ("stream", "stream, uninstrumented, usage asked")):  # fmt: skip
        for drip_case in (f"{kind}, drip", f"{kind}, drip (base)"):
            if drip_case not in per or over not in per:
                continue
            added = per[drip_case] - per[over]
            print(f"{drip_case} adds {added:10,.0f} instructions per call over '{over}': "
                  f"{100 * added / per[over]:+.2f}% (target, in caller CPU time: <= 5%)")  # fmt: skip
    mock = ("stream, mock transport only", "stream, mock transport only, usage asked")
    if all(m in per for m in mock) and "stream, uninstrumented, usage asked" in per:
        chunk = per["stream, uninstrumented, usage asked"] - per["stream, uninstrumented"]
        in_mock = per[mock[1]] - per[mock[0]]
        print(f"the usage chunk: {chunk:,.0f} instructions per stream, of which the mock "
              f"transport {in_mock:,.0f} ({100 * in_mock / chunk:.0f}%), the SDK and httpx2 "
              f"{chunk - in_mock:,.0f}")  # fmt: skip
    for case in ("stream, usage asked, chunk not sent", "stream, usage chunk sent unasked"):
        if case in per and "stream, uninstrumented" in per:
            added = per[case] - per["stream, uninstrumented"]
            print(f"'{case}' over 'stream, uninstrumented': {added:+,.0f} "
                  f"({100 * added / per['stream, uninstrumented']:+.2f}%)")  # fmt: skip
    return 0


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--ir-child"]:
        ir_child(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["--ir"]:
        raise SystemExit(ir_main(sys.argv[2:]))
    raise SystemExit(main())
