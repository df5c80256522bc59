"""Start-up of the command: `--help` of the command and of every subcommand, and `predict` of a one-row file, each in a fresh process.

    .venv/bin/python bench/startup.py [--run RUN] [--repeat 7]

Each figure is the median wall time of `--repeat` fresh processes, beside two references measured in the same run: the
interpreter starting and exiting (`python -c pass`), and importing what scoring needs (`import pandas, sklearn`). A
`--help` runs no subcommand and imports only click and the command's module; `predict` of one row includes loading the run
and its checks (signature, files, library versions, the replay of its held-out predictions). The table goes to stdout and,
with the machine, to bench/results/startup.json. Machines here are shared and noisy: compare ratios measured in one run,
not milliseconds across machines.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def wall(cmd: list[str], repeat: int) -> float:
    "Median wall time in seconds of `repeat` fresh processes of `cmd`, after one warm-up (the page cache); each must exit 0."
    times = []
    for i in range(repeat + 1):
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0: raise SystemExit(f"{' '.join(cmd)} exited with {r.returncode}: {r.stderr.strip()[-500:]}")
        if i: times.append(time.perf_counter() - t)
    return statistics.median(times)


def subcommands() -> list[list[str]]:
    "Every subcommand path of the command (`runs list`, `data validate`, ...), groups included."
    from nbprod.cli import main

    def paths(cmd, path):
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            yield [*path, name]
            yield from paths(sub, [*path, name])
    return list(paths(main, []))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="latest")
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()

    from nbprod.config import get_settings
    from nbprod.runs import list_runs, resolve_run
    s = get_settings()
    if a.run == "latest" and not list_runs(s.runs_dir):
        from nbprod.job import run_training
        print("no run yet: training one"); run_training({}, settings=s, progress=False)
    run = resolve_run(a.run, s.runs_dir)
    command = str(BIN / "house-prices")
    print(f"run {run.name}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores; median of {a.repeat} processes", flush=True)

    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        one_row = Path(tmp) / "one_row.csv"
        one_row.write_text("".join(s.scoring_file.read_text().splitlines(keepends=True)[:2]))
        ref = {"python -c pass (the interpreter)": wall([sys.executable, "-c", "pass"], a.repeat),
               "python -c 'import pandas, sklearn' (what scoring imports)": wall([sys.executable, "-c", "import pandas, sklearn"], a.repeat)}
        helps = {" ".join(p): wall([command, *p, "--help"], a.repeat) for p in [[], *subcommands()]}
        out = Path(tmp) / "out.csv"
        predict = wall([command, "predict", str(one_row), "-o", str(out), "--run", str(run), "--no-progress"], a.repeat)

    slowest = max(helps, key=helps.get)
    rows = [*ref.items(), ("house-prices --help", helps[""]),
            (f"slowest subcommand --help ({slowest})", helps[slowest]),
            ("median subcommand --help", statistics.median(v for k, v in helps.items() if k)),
            ("house-prices predict, one-row CSV (load, checks, score)", predict)]
    base = ref["python -c pass (the interpreter)"]
    width = max(len(k) for k, _ in rows)
    for k, v in rows: print(f"{k:<{width}}  {v:6.3f} s  {v / base:5.1f}x the interpreter")
    result = {"run": run.name, "machine": {"processor": platform.processor() or platform.machine(), "cores": os.cpu_count()},
              "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "repeat": a.repeat, "seconds": dict(rows),
              "help_seconds": {f"house-prices {k}".strip() + " --help": v for k, v in helps.items()}}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "startup.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
