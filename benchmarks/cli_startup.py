"""Start-up of the `polyfuse` command: how soon it answers when there is nothing to train.

Four commands, each run in a fresh process, alternating, `--repeats` times (default 5):
`polyfuse --help`, `polyfuse models`, `polyfuse cv` on the example `examples/tcga_acc.yaml`
with a mistyped hyper-parameter (a config error), and `polyfuse fit` on a config whose
manifest table lacks a column that the config names (a data error). Both errors stop the run
before training, and should stop it before torch is imported. CPU time is the user + system time of the child
process (`resource.getrusage(RUSAGE_CHILDREN)` before and after it); wall time is
`time.perf_counter` around it. Run:

    .venv/bin/python benchmarks/cli_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]

CONFIG = """\
name: startup-data-error
data:
  table: {table}
  id_column: patient_id
  root: {root}
  modalities:
    clinical: {{kind: tabular, columns: [age, lab_crp, no_such_column]}}
  tasks:
    response: {{type: binary, column: response}}
model: {{name: early}}
output: {out}
"""


def polyfuse_command() -> list[str]:
    """The installed `polyfuse` script beside this interpreter, else `python -m polyfuse`."""
    script = Path(sys.executable).parent / "polyfuse"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "polyfuse"]


def timed(cmd: list[str], expect: int) -> tuple[float, float, str]:
    """(wall s, CPU s, last line on stderr) of one child process; its exit code must be
    `expect`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != expect:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, (done.stderr.strip().splitlines() or [""])[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="polyfuse-startup-"))
    try:
        data = ROOT / "examples" / "own_data"
        config = tmp / "bad.yaml"
        config.write_text(
            CONFIG.format(table=data / "patients.csv", root=data, out=tmp / "runs"),
            encoding="utf-8",
        )
        example = (ROOT / "examples" / "tcga_acc.yaml").read_text(encoding="utf-8")
        typo = tmp / "typo.yaml"
        typo.write_text(example.replace("    dim: 32", "    dimm: 32"), encoding="utf-8")
        base = polyfuse_command()
        cases = {
            "polyfuse --help": (["--help"], 0),
            "polyfuse models": (["models"], 0),
            "polyfuse cv (config error)": (["cv", str(typo)], 2),
            "polyfuse fit (data error)": (["fit", str(config)], 2),
        }
        times: dict[str, list[tuple[float, float, str]]] = {name: [] for name in cases}
        for _ in range(args.repeats):  # alternating: a slow spell hits every command alike
            for name, (extra, code) in cases.items():
                times[name].append(timed([*base, *extra], code))
        print(f"{' '.join(base)}; median of {args.repeats}, alternating")
        for name, runs in times.items():
            wall = statistics.median(w for w, _, _ in runs)
            cpu = statistics.median(c for _, c, _ in runs)
            print(f"{name:28s} wall {wall:5.2f} s   CPU {cpu:5.2f} s   {runs[0][2][:70]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
