"""A deep page by keyset cursor against the same page by offset, in one run.

Writes ``--size`` sessions (without fsync: the writes are not what is
measured), then times, as medians of ``--repeat`` runs, the first page of
``query_page``, the page near the end reached by its cursor, and the same
page through ``query_sessions(offset=...)``.  A keyset page seeks to its
place in the index; an offset page walks every session before it.

    python benchmarks/bench_pages.py                  # 5,000 sessions
    python benchmarks/bench_pages.py --size 20000 --repeat 50
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

from maestro import GitContext, SessionManager

GIT = GitContext(branch="main", commit="0" * 40, repo_root="/repo", is_worktree=False)


def median_ms(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--page", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    size, per_page = args.size, args.page
    with tempfile.TemporaryDirectory(prefix="maestro-pages-") as root:
        manager = SessionManager(root, durable=False)
        for number in range(size):
            manager.create_session(f"task {number}", git_context=GIT)
        time.sleep(2)  # let the newest files age past the index's racy window
        manager.query_sessions(limit=1)
        depth = size - 2 * per_page
        cursor = manager.query_page(limit=depth).next_cursor
        first = median_ms(lambda: manager.query_page(limit=per_page), args.repeat)
        deep = median_ms(lambda: manager.query_page(limit=per_page, cursor=cursor), args.repeat)
        offset = median_ms(
            lambda: manager.query_sessions(limit=per_page, offset=depth), args.repeat
        )
    print(f"{size} sessions, {per_page} per page, median of {args.repeat} runs")
    print(f"  first page                 {first:8.2f} ms")
    print(f"  page at {depth:>6} by cursor  {deep:8.2f} ms  ({deep / first:.1f}x the first page)")
    print(f"  page at {depth:>6} by offset  {offset:8.2f} ms  ({offset / deep:.0f}x the cursor)")


if __name__ == "__main__":
    main()
