"""``maestro serve`` under load: API latency beside a trivial route, event latency, idle dashboard.

Client and server on this machine.  The server is the real command
(``maestro serve``) in its own process, over a file store of ``--sessions``
sessions written beforehand without fsync (the writes are not measured).

1. Closed loop: each client sends its next request when the previous answer
   arrived.  ``GET /api/v1/sessions`` (a page of 50, with its total) and
   ``GET /api/v1/sessions/{id}`` (random ids) with 1 and 16 clients (client
   processes, so the load generator does not share one interpreter lock),
   p50 and p99, beside ``GET /healthz`` of the same server measured in the
   same run.  Target: with 16 clients, p99 within 2x the trivial route's.
   The routes take turns, ``--rounds`` times, so that a change in the
   machine's other load weighs on each alike.  One more row, outside the
   target, shows what a page costs when it is never asked twice (a
   ``created_before`` far in the future, new each time: the same sessions,
   but no answer the server kept can serve it).
2. ``--streams`` open ``/api/v1/events`` streams while this process commits
   transitions: commit-to-event latency from the moment ``transition_state``
   returned to the moment each stream received the event.  Target: p99 <= 250 ms.
3. An idle dashboard (the list page in Chromium, when ``/usr/bin/chromium``
   exists) for ``--idle`` seconds: every request it sends but its event stream
   is counted.  Target: none.

    python benchmarks/bench_server.py
    python benchmarks/bench_server.py --sessions 2000 --requests 100 --idle 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from maestro import GitContext, SessionManager, SessionStatus

GIT = GitContext(branch="main", commit="0" * 40, repo_root="/repo", is_worktree=False)
STATES = [
    SessionStatus.PLANNING,
    SessionStatus.GENERATING_TASKS,
    SessionStatus.IMPLEMENTING,
    SessionStatus.VALIDATING,
]
CHROMIUM = Path("/usr/bin/chromium")
MAESTRO = [sys.executable, "-c", "from maestro.cli import main; main()"]
TRIVIAL = "GET /healthz (trivial)"
PAGE = "GET /api/v1/sessions (page of 50)"
FRESH_PAGE = "GET /api/v1/sessions (page of 50, never twice)"


def seed(root: str, size: int) -> list[str]:
    manager = SessionManager(root, durable=False)
    ids = []
    words = ["oauth", "cache", "index", "billing", "theme", "search", "export", "login"]
    for number in range(size):
        request = f"task {number}: {random.choice(words)} {random.choice(words)}"
        session = manager.create_session(request, git_context=GIT)
        if number % 3:
            manager.transition_state(session.session_id, SessionStatus.PLANNING)
        ids.append(session.session_id)
    time.sleep(2)  # let the newest files age past the index's racy window
    manager.query_sessions(limit=1)
    return ids


def start_server(root: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [*MAESTRO, "--root", root, "serve", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MAESTRO_TOKEN": ""},
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    match = re.search(r"http://localhost:(\d+)/", line)
    if not match:
        process.kill()
        raise SystemExit(f"the server did not start: {line}")
    return process, f"http://127.0.0.1:{match.group(1)}"


def client_loop(job: tuple[str, list[str], int, int]) -> list[float]:
    """One closed-loop client: ``count`` requests, one after the other; seconds each."""
    base, paths, count, seed_value = job
    chooser = random.Random(seed_value)
    times = []
    with httpx.Client(base_url=base, timeout=30) as http:
        http.get("/healthz")  # connect first: connection set-up is not measured
        for _ in range(count):
            path = chooser.choice(paths)
            start = time.perf_counter()
            answer = http.get(path)
            times.append(time.perf_counter() - start)
            if answer.status_code != 200:
                raise RuntimeError(f"{path}: {answer.status_code}")
    return times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def closed_loop(
    pool: multiprocessing.pool.Pool,
    base: str,
    paths: list[str],
    clients: int,
    requests: int,
    seed_value: int = 0,
) -> list[float]:
    jobs = [(base, paths, requests, seed_value * 1000 + n) for n in range(clients)]
    return [t for part in pool.map(client_loop, jobs) for t in part]


def never_twice(count: int) -> list[str]:
    """Pages of 50 of every session, each under a query string of its own."""
    return [
        f"/api/v1/sessions?limit=50&created_before=2100-01-01T00:00:00.{n:06d}Z"
        for n in random.sample(range(1_000_000), count)
    ]


def event_latency(base: str, root: str, ids: list[str], streams: int, commits: int) -> list[float]:
    """Seconds from a commit's return to its arrival, for every stream and commit."""
    committed: dict[tuple[str, int], float] = {}
    arrivals: list[tuple[tuple[str, int], float]] = []
    opened = [0]
    done = threading.Event()

    async def listen(http: httpx.AsyncClient) -> None:
        async with http.stream("GET", "/api/v1/events?kind=transitioned") as answer:
            lines = answer.aiter_lines()
            first = await lines.__anext__()  # the stream is open
            assert first.startswith("retry")
            opened[0] += 1  # one event loop: no lock needed
            async for line in lines:
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    arrivals.append(((event["session_id"], event["revision"]), time.perf_counter()))
                if done.is_set():
                    return

    async def all_streams() -> None:
        limits = httpx.Limits(max_connections=streams + 5)
        timeout = httpx.Timeout(30, read=None)  # a stream waits for events as long as it takes
        async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as http:
            tasks = [asyncio.create_task(listen(http)) for _ in range(streams)]
            while not done.is_set():
                await asyncio.sleep(0.05)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    thread = threading.Thread(target=lambda: asyncio.run(all_streams()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while opened[0] < streams:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {opened[0]} of {streams} streams opened")
        time.sleep(0.05)
    manager = SessionManager(root)
    chosen = random.sample(ids, commits)
    for sid in chosen:
        status = manager.get_session(sid).status
        target = SessionStatus.FAILED if status is SessionStatus.INITIALIZING else STATES[1]
        moved = manager.transition_state(sid, target)
        committed[(sid, moved.revision)] = time.perf_counter()
        time.sleep(0.05)
    deadline = time.monotonic() + 10
    while len(arrivals) < streams * commits and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    thread.join(5)
    latencies = [at - committed[key] for key, at in arrivals if key in committed]
    if len(latencies) < streams * commits:
        print(f"  warning: {streams * commits - len(latencies)} events never arrived")
    return latencies


def idle_dashboard(base: str, seconds: float) -> tuple[int, list[str]] | None:
    if not CHROMIUM.exists():
        return None
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    args += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        page = browser.new_page()
        page.goto(base + "/")
        page.wait_for_selector("tbody tr")
        page.wait_for_function("document.querySelector('#live').textContent === 'live'")
        page.wait_for_timeout(500)
        sent: list[str] = []
        page.on("request", lambda request: sent.append(request.url))
        page.wait_for_timeout(seconds * 1000)
        browser.close()
    others = [url for url in sent if "/api/v1/events" not in url]
    return len(sent), others


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300, help="per client and route")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="turns the routes take")
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--commits", type=int, default=40)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle dashboard")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="maestro-serve-") as root:
        started = time.perf_counter()
        ids = seed(root, args.sessions)
        print(f"{args.sessions} sessions written in {time.perf_counter() - started:.0f} s")
        server, base = start_server(root)
        try:
            sample = random.sample(ids, 200)
            routes = {
                TRIVIAL: ["/healthz"],
                PAGE: ["/api/v1/sessions?limit=50"],
                "GET /api/v1/sessions/{id}": [f"/api/v1/sessions/{sid}" for sid in sample],
            }
            informative = {FRESH_PAGE: never_twice(args.clients * (args.requests + 20) * 20)}
            everything = {**routes, **informative}
            rounds = max(1, args.rounds)
            per_round = max(1, args.requests // rounds)
            results: dict[tuple[str, int], tuple[float, float]] = {}
            with multiprocessing.get_context("spawn").Pool(args.clients) as pool:
                for clients in (1, args.clients):
                    times: dict[str, list[float]] = {name: [] for name in everything}
                    for paths in everything.values():
                        closed_loop(pool, base, paths, clients, 20)  # warm-up
                    for turn in range(rounds):
                        for name, paths in everything.items():
                            times[name] += closed_loop(
                                pool, base, paths, clients, per_round, turn + 1
                            )
                    for name, measured in times.items():
                        results[(name, clients)] = (
                            percentile(measured, 0.5) * 1000,
                            percentile(measured, 0.99) * 1000,
                        )
            print(
                f"\nclosed loop, {per_round * rounds} requests per client and route"
                f" in {rounds} turns (ms)"
            )
            print(
                f"  {'route':48} {'clients':>7} {'p50':>8} {'p99':>8}  p50 / trivial  p99 / trivial"
            )
            for (name, clients), (p50, p99) in results.items():
                trivial_p50, trivial_p99 = results[(TRIVIAL, clients)]
                print(
                    f"  {name:48} {clients:>7} {p50:8.2f} {p99:8.2f}"
                    f"  {p50 / trivial_p50:12.2f}x  {p99 / trivial_p99:12.2f}x"
                    + ("  (no target)" if name in informative else "")
                )
            trivial_p99 = results[(TRIVIAL, args.clients)][1]
            for name in routes:
                if name == TRIVIAL:
                    continue
                ratio = results[(name, args.clients)][1] / trivial_p99
                verdict = "met" if ratio <= 2 else "NOT met"
                print(
                    f"  target {name}: p99 <= 2x trivial with {args.clients} clients:"
                    f" {verdict} ({ratio:.2f}x)"
                )

            latencies = event_latency(base, root, ids, args.streams, args.commits)
            if latencies:
                p50 = statistics.median(latencies) * 1000
                p99 = percentile(latencies, 0.99) * 1000
                verdict = "met" if p99 <= 250 else "NOT met"
                print(
                    f"\n{args.streams} event streams, {args.commits} commits: commit-to-event "
                    f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms "
                    f"(target p99 <= 250 ms: {verdict})"
                )
            idle = idle_dashboard(base, args.idle)
            if idle is None:
                print(f"\nidle dashboard: skipped ({CHROMIUM} is missing)")
            else:
                total, others = idle
                verdict = "met" if not others else "NOT met"
                print(
                    f"\nidle dashboard, {args.idle:g} s: {len(others)} requests besides its "
                    f"event stream ({total} in all; target none: {verdict})"
                )
                for url in others[:5]:
                    print(f"  {url}")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
