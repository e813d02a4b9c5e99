"""Prints the top of a cProfile stats file as markdown tables: the
functions that took the most time themselves (self), those under which the
most time passed (cumulative), and, with --focus, the functions named, each
as a percent of the profile's total. For bench/anystack.sh, which profiles
one uvicorn process under load.

    /usr/bin/python3 bench/fastapi/pstats_top.py uvicorn.prof [N] [--focus file.py:func,...]

cProfile's clock is wall time: a function's time includes the moments the
process was runnable but not running (on a busy machine), never the time
the event loop sleeps in its poll, which is the poll's own. A coroutine is
"called" again at every resumption, so calls count resumptions.
"""

from __future__ import annotations

import os
import pstats
import sys
from typing import List, Tuple


def _name(func: Tuple[str, int, str]) -> str:
    path, line, name = func
    if path == "~":  # a built-in
        return name
    parts = path.split(os.sep)
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short}:{line})"


def top(path: str, n: int, focus: List[str]) -> str:
    st = pstats.Stats(path)
    total = st.total_tt or 1.0
    rows = []
    for func, (cc, nc, tt, ct, callers) in st.stats.items():  # type: ignore[attr-defined]
        rows.append((func, nc, tt, ct))
    out: List[str] = [f"{total:.2f} s profiled (wall time in the process's functions, the event loop's poll included)", ""]
    if focus:
        out.append("| focus | calls | self % | cumulative % |")
        out.append("|---|---:|---:|---:|")
        for want in focus:
            wfile, _, wfunc = want.rpartition(":")
            for func, nc, tt, ct in sorted(rows, key=lambda r: r[3], reverse=True):
                if func[2] == wfunc and func[0].endswith(wfile):
                    out.append(f"| `{_name(func)}` | {nc} | {100 * tt / total:.1f} | {100 * ct / total:.1f} |")
                    break
        out.append("")
    for title, idx in (("self", 2), ("cumulative", 3)):
        rows.sort(key=lambda r: r[idx], reverse=True)
        out.append(f"| {title} % | calls | function |")
        out.append("|---:|---:|---|")
        for func, nc, tt, ct in rows[:n]:
            out.append(f"| {100 * (tt if idx == 2 else ct) / total:.1f} | {nc} | `{_name(func)}` |")
        out.append("")
    return "\n".join(out)


def main(argv: List[str]) -> None:
    focus: List[str] = []
    if "--focus" in argv:
        i = argv.index("--focus")
        if i + 1 >= len(argv):
            sys.exit("--focus needs file.py:function,...")
        focus = [f for f in argv[i + 1].split(",") if f]
        argv = argv[:i] + argv[i + 2 :]
    if len(argv) not in (1, 2):
        sys.exit("usage: pstats_top.py STATS_FILE [N] [--focus file.py:function,...]")
    print(top(argv[0], int(argv[1]) if len(argv) == 2 else 15, focus))


if __name__ == "__main__":
    main(sys.argv[1:])
