"""`make bench`: does counting cost grow with size? Ratios measured in one run, on this machine.

1. wall time of a 131072-token, d=8192 MHSA over a 512-token, d=512 one (target ≤ 1.2);
2. peak resident memory of the large one (target < 1 GB: nothing of that size is allocated);
3. cold start of `complexo mhsa --seq 4096 --dim 1024` minus that of `python -c "import torch"`
   (target < 1 s);
4. formula-only answers (`--no-check`: neither torch nor fvcore imported) of mhsa, lora on
   gpt3-175b and compare cnn vit, cold (target ≤ 0.5 s each);
5. a 64-point MHSA sweep over n against one point (target ≤ 1.3: it counts at 3 points);
6. checked answers against the counters' floor: `complexo mhsa --seq 4096 --dim 1024 --json`
   over scripts/bare_counters.py, which imports torch and fvcore and runs the same two counters
   on the same meta block and nothing else (target ≤ 1.1); and over the same script with
   MemTracker's training step, the third counter a checked answer has run since its peak was
   added (target ≤ 1.1). Both collect garbage and end as complexo's console script does.
7. `complexo derive` of an MHSA block (target ≤ 2 s) and of a LoRA layer (target ≤ 0.5 s),
   the trace's own seconds (its --json "seconds": after the imports, torch._dynamo's included).

Each figure is the median of --repeat fresh processes; the two sides of a ratio run in turn.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CLI = [sys.executable, "-m", "complexo"]
LARGE = [*CLI, "mhsa", "--seq", "131072", "--dim", "8192", "--heads", "64", "--json"]
SMALL = [*CLI, "mhsa", "--seq", "512", "--dim", "512", "--heads", "8", "--json"]
DEMO = [*CLI, "mhsa", "--seq", "4096", "--dim", "1024"]
TORCH = [sys.executable, "-c", "import torch"]
BARE = [sys.executable, os.path.join(os.path.dirname(__file__), "bare_counters.py")]
BARE_MEMTRACKER = [*BARE, "--memtracker"]
CHECKED = [*DEMO, "--json"]
FORMULAS = {
    "mhsa --no-check": [*CLI, "mhsa", "--no-check", "--json"],
    "lora gpt3-175b --no-check": [
        *CLI,
        "lora",
        "--model",
        "gpt3-175b",
        "--rank",
        "4",
        "--no-check",
        "--json",
    ],
    "compare cnn vit --no-check": [*CLI, "compare", "cnn", "vit", "--no-check", "--json"],
}
SWEEP_ONE = [*CLI, "mhsa", "--seq", "64", "--dim", "256", "--heads", "4", "--json"]
SWEEP = [*CLI, "sweep", "mhsa", "--vary", "seq=64..4096", "--step", "64"]
SWEEP += ["--dim", "256", "--heads", "4", "--json"]
MHSA_DERIVE = ["complexo.blocks.attention:NaiveMHSA", "--ctor", "h*hs,h", "--input", "B,n,h*hs"]
LORA_DERIVE = ["tests/blocks_for_derive.py:LoRALayer", "--ctor", "d_in,d_out,r"]
LORA_DERIVE += ["--input", "B,n,d_in", "--dims", "B=3,n=5,d_in=11,d_out=13,r=2"]
DERIVE = {  # name: (command, target seconds)
    "derive NaiveMHSA": ([*CLI, "derive", *MHSA_DERIVE, "--json"], 2.0),
    "derive LoRA layer": ([*CLI, "derive", *LORA_DERIVE, "--json"], 0.5),
}


def traced_seconds(cmd: list[str]) -> float:
    """The trace's own time, as derive reports it (after its imports)."""
    import json

    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["seconds"]


def run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS in bytes of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss * 1024  # ru_maxrss is in KiB on Linux


def median(cmd: list[str], repeat: int) -> tuple[float, int]:
    runs = [run(cmd) for _ in range(repeat)]
    return statistics.median(t for t, _ in runs), max(m for _, m in runs)


def paired(*cmds: list[str], repeat: int) -> tuple[tuple[float, int], ...]:
    """:func:`median` of commands run in turn (a, b, a, b ...): a ratio of two is then read
    under the same conditions (two blocks of five runs drifted 0.1 s apart on a quiet machine:
    checked/bare read 1.04 in one run of this script and 1.15 in the next)."""
    runs = [tuple(run(cmd) for cmd in cmds) for _ in range(repeat)]
    return tuple(  # type: ignore[return-value]
        (statistics.median(t for t, _ in side), max(m for _, m in side))
        for side in zip(*runs, strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    # complexo's bytecode, as pip compiles an installed package's; a checkout's first run
    # writes it, but not where PYTHONDONTWRITEBYTECODE is set (as on this project's machines),
    # and each run then compiles complexo's modules again (about 25 ms of a checked answer)
    package = os.path.join(os.path.dirname(__file__), os.pardir, "complexo")
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True)
    run(SMALL)  # warm the file cache once
    (t_torch, _), (t_demo, _) = paired(TORCH, DEMO, repeat=args.repeat)
    (t_small, m_small), (t_large, m_large) = paired(SMALL, LARGE, repeat=args.repeat)
    t_formulas = {name: median(cmd, args.repeat)[0] for name, cmd in FORMULAS.items()}
    (t_bare, _), (t_bare3, _), (t_checked, _) = paired(
        BARE, BARE_MEMTRACKER, CHECKED, repeat=args.repeat
    )
    (t_one, _), (t_sweep, _) = paired(SWEEP_ONE, SWEEP, repeat=args.repeat)
    t_derive = {
        name: statistics.median(traced_seconds(cmd) for _ in range(args.repeat))
        for name, (cmd, _) in DERIVE.items()
    }

    rows = [
        ("import torch", f"{t_torch:.2f} s", ""),
        ("mhsa n=512 d=512 h=8 --json", f"{t_small:.2f} s", f"peak {m_small / 2**20:.0f} MiB"),
        ("mhsa n=131072 d=8192 h=64 --json", f"{t_large:.2f} s", f"peak {m_large / 2**20:.0f} MiB"),
        ("mhsa n=4096 d=1024 (table)", f"{t_demo:.2f} s", ""),
        *((name, f"{s:.2f} s", "") for name, s in t_formulas.items()),
        ("bare counters, same block", f"{t_bare:.2f} s", ""),
        ("  and MemTracker's step", f"{t_bare3:.2f} s", ""),
        ("mhsa n=4096 d=1024 --json", f"{t_checked:.2f} s", ""),
        ("mhsa n=64 d=256 h=4 --json", f"{t_one:.2f} s", ""),
        ("sweep mhsa over 64 values of n", f"{t_sweep:.2f} s", ""),
        *((f"{name} (trace)", f"{s:.2f} s", "") for name, s in t_derive.items()),
    ]
    print(f"median of {args.repeat} fresh processes each, {os.cpu_count()} CPUs")
    for name, t, extra in rows:
        print(f"  {name:<34} {t:>8}  {extra}")
    ratio, cold = t_large / t_small, t_demo - t_torch
    print("targets")
    checks = [
        ("large/small wall time", f"{ratio:.2f}", "≤ 1.2", ratio <= 1.2),
        ("large peak memory", f"{m_large / 1e9:.2f} GB", "< 1 GB", m_large < 1e9),
        ("cold start beyond torch", f"{cold:.2f} s", "< 1 s", cold < 1),
        *((f"{name}", f"{s:.2f} s", "≤ 0.5 s", s <= 0.5) for name, s in t_formulas.items()),
        ("64-point sweep/one point", f"{t_sweep / t_one:.2f}", "≤ 1.3", t_sweep / t_one <= 1.3),
        *(
            (name, f"{t_checked / floor:.2f}", "≤ 1.1", t_checked / floor <= 1.1)
            for name, floor in (
                ("checked/bare counters", t_bare),
                ("checked/three counters", t_bare3),
            )
        ),
        *(
            (name, f"{t_derive[name]:.2f} s", f"≤ {limit} s", t_derive[name] <= limit)
            for name, (_, limit) in DERIVE.items()
        ),
    ]
    for name, value, target, ok in checks:
        print(f"  {name:<28} {value:>9}  (target {target})  {'ok' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
