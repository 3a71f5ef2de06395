"""``maestro mcp``: what a tool call costs, and how soon a new server answers.

Measured in one run, on the file store in a scratch directory:

* **in-process calls**: ``Client.call_tool`` through the SDK's in-process
  client, p50 and p99 over ``--calls`` calls, for a read (``get_session``) and
  a write (``increment_statistics``); next to each, the server's part alone
  (``MCPServer.call_tool``: no client validating the result against the
  output schema) and the same operation called on the ``SessionManager``
  directly, so that the ratios are what the protocol layer adds.  Target:
  write p99 <= 5 ms (the manager's own write, an fsync'd file, is the floor).
* **stdio cold start**: a new ``maestro mcp`` process, started by the SDK's
  stdio client, up to the result of its first tool call (``list_sessions``),
  median of ``--starts`` starts after one untimed start (warm page cache,
  compiled bytecode).  Next to it, in the same run, a new interpreter that
  only imports the SDK (``python -c "import mcp"``) and one that imports what
  ``maestro mcp`` imports to serve: the floor the start cannot go below, and
  the share that is maestro's.  Target: <= 1 s.

Run from a checkout with the package and its ``mcp`` extra installed::

    python benchmarks/bench_mcp.py [--calls N] [--starts N] [--root DIR] [--json]

Put ``--root`` on the filesystem you care about (default: the current
directory); the scratch directory is removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from maestro import GitContext, SessionManager
from maestro.mcp.server import build_server

GIT = GitContext(branch="main", commit="0" * 40, repo_root="/repo", is_worktree=False)
MAESTRO = Path(sys.executable).parent / "maestro"

WRITE_P99_TARGET_MS = 5.0
COLD_START_TARGET_S = 1.0


def quantile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(samples: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds."""
    return {"p50_ms": quantile(samples, 0.5) * 1e3, "p99_ms": quantile(samples, 0.99) * 1e3}


def in_process(root: Path, calls: int) -> dict[str, Any]:
    """call_tool through the in-process client, next to the manager's own call."""
    manager = SessionManager(root / "inproc")
    sid = manager.create_session("Benchmark the MCP face", git_context=GIT).session_id
    manager.transition_state(sid, "planning")
    timings: dict[str, list[float]] = {
        f"{kind}{how}": [] for kind in ("read", "write") for how in ("", " server", " direct")
    }
    direct: dict[str, Callable[[], object]] = {
        "read": lambda: manager.get_session(sid),
        "write": lambda: manager.increment_statistics(sid, decisions_made=1),
    }
    tools = {
        "read": ("get_session", {"session_id": sid}),
        "write": ("increment_statistics", {"session_id": sid, "decisions_made": 1}),
    }

    async def run() -> None:
        server = build_server(manager)
        async with Client(server) as client:
            for number in range(calls + calls // 10):
                timed = number >= calls // 10  # the first tenth warms up
                for kind in ("read", "write"):
                    name, arguments = tools[kind]
                    start = time.perf_counter()
                    result = await client.call_tool(name, arguments)
                    elapsed = time.perf_counter() - start
                    assert not result.is_error, result.content
                    # The server's part alone: no transport, no client-side
                    # validation of the result against its output schema.
                    start_server = time.perf_counter()
                    await server.call_tool(name, arguments)
                    elapsed_server = time.perf_counter() - start_server
                    # The direct call runs in a worker thread too, as the tool does.
                    start_direct = time.perf_counter()
                    await anyio.to_thread.run_sync(direct[kind])
                    elapsed_direct = time.perf_counter() - start_direct
                    if timed:
                        timings[kind].append(elapsed)
                        timings[f"{kind} server"].append(elapsed_server)
                        timings[f"{kind} direct"].append(elapsed_direct)

    anyio.run(run)
    return {name: summary(samples) for name, samples in timings.items()}


def cold_start(root: Path, starts: int) -> dict[str, Any]:
    """A new server process up to its first tool result, and the interpreters beside it."""
    store = root / "cold"
    manager = SessionManager(store)
    for number in range(20):
        manager.create_session(f"request {number}", git_context=GIT)

    async def once() -> float:
        params = StdioServerParameters(command=str(MAESTRO), args=["--root", str(store), "mcp"])
        start = time.perf_counter()
        async with Client(params) as client:
            result = await client.call_tool("list_sessions", {"limit": 10})
            elapsed = time.perf_counter() - start
        assert not result.is_error and len(result.structured_content["sessions"]) == 10  # type: ignore[index]
        return elapsed

    def interpreter(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - start

    serving_imports = "import maestro.cli, maestro.mcp.server, mcp.server.stdio"
    samples: dict[str, list[float]] = {"first result": [], "import mcp": [], "serving imports": []}
    anyio.run(once)  # untimed: bytecode compiled, files in the page cache
    interpreter(serving_imports)
    for _ in range(starts):
        samples["first result"].append(anyio.run(once))
        samples["import mcp"].append(interpreter("import mcp"))
        samples["serving imports"].append(interpreter(serving_imports))
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="timed calls of each kind")
    parser.add_argument("--starts", type=int, default=5, help="timed cold starts")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="where to make scratch")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    options = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="maestro-bench-mcp-", dir=options.root))
    try:
        calls = in_process(scratch, options.calls)
        start = cold_start(scratch, options.starts)
    finally:
        if not options.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    results = {"in_process": calls, "cold_start_s": start}
    if options.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"scratch on {scratch.parent}")
    print(f"in-process call_tool, {options.calls} calls each (p50 / p99, ms):")
    print(f"  {'':<6}{'Client.call_tool':>18}{'server only':>18}{'manager':>18}  p50 ratios")
    for kind in ("read", "write"):
        tool, alone, direct = calls[kind], calls[f"{kind} server"], calls[f"{kind} direct"]
        print(
            f"  {kind:<6}"
            + "".join(f"{t['p50_ms']:8.3f} /{t['p99_ms']:8.3f}" for t in (tool, alone, direct))
            + f"  call/manager {tool['p50_ms'] / direct['p50_ms']:.1f}x,"
            f" server/manager {alone['p50_ms'] / direct['p50_ms']:.1f}x"
        )
    write_p99 = calls["write"]["p99_ms"]
    verdict = "met" if write_p99 <= WRITE_P99_TARGET_MS else "missed"
    print(f"  target: write p99 <= {WRITE_P99_TARGET_MS:g} ms: {verdict} ({write_p99:.2f} ms)")
    first, floor, serving = (
        start["first result"],
        start["import mcp"],
        start["serving imports"],
    )
    print(f"stdio cold start, median of {options.starts} (s):")
    print(f"  new process to first tool result  {first:6.3f}")
    print(f"  python -c 'import mcp'            {floor:6.3f}  ({first / floor:.2f}x of it)")
    print(f"  python importing what serving needs {serving:5.3f}  ({serving / floor:.2f}x)")
    verdict = "met" if first <= COLD_START_TARGET_S else "missed"
    print(f"  target: <= {COLD_START_TARGET_S:g} s: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
