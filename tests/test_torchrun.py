"""`torchrun --nproc_per_node 2 -m fairgen train` really distributes (gloo on CPU).

Two processes each take their own shard of the stream, contrast against both shards, average
gradients with DDP and normalise with BatchNorm statistics of the global batch, so their run
equals one process trained on the two shards concatenated. Tolerance: float32 sums are taken in
another order (per-rank partial sums, then all-reduces), so the two runs agree to rounding, not
bit for bit, and a few SGD steps of a contrastive loss at temperature 0.1 amplify rounding (a
single float32 process is itself ~1e-4 away from the same run in float64 after five steps). So
the bound is calibrated: the two-process run must be no farther from the float64 single-process
run than 1.5 times the float32 single-process run is.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from fairgen.contrastive import TrainConfig, Trainer
from fairgen.stream import Stream, make_spec
from plumbing.files import load_safetensors

WORLD, BATCH = 2, 8
FLAGS = [
    "--batch-size",
    str(BATCH),
    "--optimizer",
    "sgd",
    "--lr",
    "0.05",
    "--augment",
    "none",
    "--projection-hidden-dim",
    "32",
    "--projection-dim",
    "16",
    "--log-every",
    "1",
    "--device",
    "cpu",
    "--quiet",
]


def torchrun(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(WORLD),
        "-m",
        "fairgen",
        "train",
        *args,
    ]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def concatenated_shards(spec, steps):
    """What one process would see: rank 0's and rank 1's batches side by side."""
    shards = [Stream.from_spec(spec, BATCH, "cpu", rank=r, world_size=WORLD) for r in range(WORLD)]
    for _ in range(steps):
        parts = [s.next_batch() for s in shards]
        yield {
            "views": torch.cat([p["views"] for p in parts]),
            "labels": torch.cat([p["labels"] for p in parts]),
        }


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_on_the_concatenated_shards_and_resume(tmp_path):
    from fairgen import load_generator

    generator = load_generator("world-sprites-32")
    spec = make_spec(generator, augment="light", seed=3)
    spec.save(tmp_path / "stream.json")

    shards = [
        Stream.from_spec(spec, BATCH, "cpu", rank=r, world_size=WORLD).next_batch()["latents"]
        for r in range(WORLD)
    ]
    assert not (torch.cdist(shards[0], shards[1]) == 0).any()  # the ranks' samples are disjoint

    run = tmp_path / "run"
    out = torchrun("--spec", "stream.json", "--out", "run", "--steps", "3", *FLAGS, cwd=tmp_path)
    assert "now at step 3 of 3 on 2 process(es)" in out
    out = torchrun("--out", "run", "--resume", "--steps", "5", *FLAGS, cwd=tmp_path)
    assert "resumed at step 3, trained 2 steps, now at step 5 of 5 on 2 process(es)" in out
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]  # rank 0 alone logs

    batches = list(concatenated_shards(spec, 5))
    exact = single_process(batches, torch.float64, tmp_path)
    single = single_process(batches, torch.float32, tmp_path)
    distributed = load_safetensors(run / "encoder.safetensors")
    assert distributed.keys() == exact.keys()
    dist_error, single_error = distance(distributed, exact), distance(single, exact)
    print(
        f"after 5 steps, max |w - w_float64| over encoder tensors: 2 processes {dist_error:.2e}, "
        f"1 process {single_error:.2e}; training moved the weights by "
        f"{distance(single, initial(), 'weight'):.2e}"
    )
    assert dist_error <= 1.5 * single_error
    assert (
        distance(single, initial(), "weight") > 100 * single_error
    )  # the comparison is not between untrained models


COMMON = dict(
    optimizer="sgd",
    lr=0.05,
    augment="none",
    projection_hidden_dim=32,
    projection_dim=16,
    log_every=0,
    progress=False,
    warmup_steps=3,
)


def single_process(batches, dtype, tmp_path):
    """One process on the concatenated shards: 3 steps of a 3-step run, resumed to 5 (as the
    torchrun runs)."""
    first = Trainer(TrainConfig(total_steps=3, **COMMON))
    first.model.to(dtype)
    first.fit([{**b, "views": b["views"].to(dtype)} for b in batches[:3]])
    first.save(tmp_path / "reference.pt")
    resumed = Trainer(TrainConfig(total_steps=5, **COMMON))
    resumed.model.to(dtype)
    resumed.load(tmp_path / "reference.pt").fit(
        [{**b, "views": b["views"].to(dtype)} for b in batches[3:]]
    )
    return resumed.encoder.state_dict()


def initial():
    return Trainer(TrainConfig(total_steps=5, **COMMON)).encoder.state_dict()


def distance(a: dict, b: dict, suffix: str = "") -> float:
    return max(
        (a[k].double() - b[k].double()).abs().max().item()
        for k in b
        if "num_batches" not in k and k.endswith(suffix)
    )
