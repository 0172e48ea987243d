"""The GPU suite's dry run: the whole prepared script, through its shell wrapper, on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_gpu_suite_dry_run_writes_every_section(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["meta"]["dry_run"] is True
    sections = results["sections"]
    assert set(sections) == {"checks", "biggan", "online", "demo", "diffusion"}
    assert all(row["pass"] for row in sections["checks"]["rows"]), sections["checks"]["rows"]
    variants = {row["variant"] for row in sections["biggan"]["rows"]}
    assert {"package fp32 eager (baseline)", "adapter bf16"} <= variants
    assert all(row["images/s"] > 0 for row in sections["biggan"]["rows"])
    pipelines = [row["pipeline"] for row in sections["online"]["rows"]]
    assert any("GenRep" in p for p in pipelines) and any("PNG" in p for p in pipelines)
    assert {row["target"][:3] for row in sections["demo"]["rows"]} >= {"(d)", "(e)", "(c)"}
    assert "| arm |" in sections["demo"]["note"]
    runs = {row["run"]: row for row in sections["diffusion"]["rows"]}
    assert {"synthesize, fp32", "synthesize, bf16 + channels_last"} <= set(runs)
    assert all(row["images/s"] > 0 and row["resolution"] == 32 for row in runs.values())
    assert any(run.startswith("online") for run in runs)
    assert (tmp_path / "results.md").read_text().startswith("# fairgen GPU suite")
