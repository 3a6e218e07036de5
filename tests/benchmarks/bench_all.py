"""Every benchmark in this folder, one after the other, in one report.

    scripts/bench all [--quick] [--only throughput,command] [--dir /tmp/flashpoint-bench]

Each ``bench_NAME.py`` here (but this one) runs as ``scripts/bench NAME`` would, in its own
process, one at a time so that they do not measure each other; its figures, each beside
the baseline it measured in the same run, are printed under its name with the command
that reproduces them, its wall time and the load averages before and after (on a shared
machine, how noisy it was). A benchmark that fails is reported as failed and the others
still run; the exit status is then 1.

``--quick`` runs a small variant of each (fewer events, calls and seconds): a check that
every benchmark works and a rough picture, not figures to quote. A benchmark module may
declare its own quick arguments as ``QUICK_ARGS: list[str]``; the table below covers the
ones that do not.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The quick variant of each benchmark that does not declare ``QUICK_ARGS``.
QUICK = {
    "api": ["--calls", "300"],
    "audit": ["--events", "100000"],
    "command": ["--commands", "500"],
    "queries": ["--events", "100000", "--calls", "100", "--seconds", "3"],
    "rebuild": ["--events", "100000"],
    "throughput": ["--seconds", "3", "--workers", "1,2"],
}
#: The benchmarks that generate a log take the folder to keep it in.
TAKES_DIR = ("audit", "dashboard", "queries", "rebuild")


def benchmarks() -> list[str]:
    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    return [name for name in names if name != "all"]


def arguments(name: str, quick: bool, folder: str | None) -> list[str]:
    args: list[str] = []
    if quick:
        declared = getattr(
            importlib.import_module(f"tests.benchmarks.bench_{name}"), "QUICK_ARGS", None
        )
        args += list(declared) if declared is not None else QUICK.get(name, [])
    if folder is not None and name in TAKES_DIR:
        args += ["--dir", folder]
    return args


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small variant of each")
    parser.add_argument("--only", help="comma-separated names (default: every benchmark)")
    parser.add_argument("--dir", help="where generated logs are kept (their own default)")
    args = parser.parse_args()
    names = benchmarks()
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"no such benchmark: {', '.join(unknown)} (there are {', '.join(names)})")
        names = [name for name in names if name in wanted]
    out = sys.stdout
    out.write(
        f"{len(names)} benchmarks{' (quick variants)' if args.quick else ''}, "
        f"{os.cpu_count()} CPUs, load average {load_average()}\n"
    )
    failed: list[str] = []
    for name in names:
        extra = arguments(name, args.quick, args.dir)
        command = " ".join(["scripts/bench", name, *extra])
        out.write(f"\n== {name}: {command}  (load average {load_average()})\n")
        out.flush()
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", f"tests.benchmarks.bench_{name}", *extra],
            capture_output=True,
            text=True,
            check=False,
        )
        for line in result.stdout.splitlines():
            out.write(f"  {line}\n")
        seconds = time.monotonic() - started
        if result.returncode != 0:
            failed.append(name)
            tail = "\n".join(f"  ! {line}" for line in result.stderr.splitlines()[-15:])
            out.write(f"  FAILED (exit {result.returncode}) after {seconds:.0f} s\n{tail}\n")
        else:
            out.write(f"  ({seconds:.0f} s; load average after: {load_average()})\n")
        out.flush()
    if failed:
        out.write(f"\nfailed: {', '.join(failed)}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
