"""Reading images from WebDataset shards vs from a folder: this checkout, the `webdataset` library,
and (optionally) another checkout, e.g. main before the one-pass shard index.

Run: python benchmarks/webdataset_read.py --n 20000
     python benchmarks/webdataset_read.py --n 20000 --before /work/main --before-n 250 500
The same N small PNGs are written once as a folder and as shards of ``--shard-size`` (the export's
default, 1000). Each reader decodes every image to a float batch (``ImageTable.images``). The
other checkout runs in a subprocess on one shard of each ``--before-n`` images; its time for N
images is extrapolated per shard as a s + b s^2 through the measured points, and the script says so.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

READ = """
import sys, time
import torch
from fairgen.data import load_data
source, mode = sys.argv[1], sys.argv[2]
if mode == "table":  # fairgen's reader: index, then decode every image into float batches
    next(load_data(source).subset([0]).images())  # warm-up (plug-ins, first allocations), untimed
    start = time.perf_counter()
    count = sum(len(batch) for batch in load_data(source).images())
else:  # the webdataset library's sequential reader, with the same decoder and the same tensor work
    import glob
    import webdataset as wds
    from fairgen.data.images import decode_rgb8
    start = time.perf_counter()
    count, batch = 0, []
    shards = sorted(glob.glob(source + "/*.tar"))
    for sample in wds.WebDataset(shards, shardshuffle=False, empty_check=False):
        image = torch.from_numpy(decode_rgb8(sample["v0.png"], sample["__key__"]))
        batch.append(image.permute(2, 0, 1).float().div_(255).unsqueeze(0))
        if len(batch) == 256:
            count += len(torch.cat(batch).clamp_(0, 1))
            batch = []
    count += len(torch.cat(batch)) if batch else 0
print(time.perf_counter() - start, count)
"""


def write_data(folder: Path, n: int, shard_size: int, side: int) -> tuple[Path, Path]:
    """``folder/images/label=<c>/<i>.png`` and ``folder/shards/shard-<k>.tar`` holding the same
    first views,
    in the layout ``fairgen stream --export --format webdataset`` writes (two views, .cls, .json
    with a latent)."""
    import json

    rng = np.random.default_rng(0)
    images, shards = folder / "images", folder / "shards"
    shards.mkdir(parents=True)
    tar = None
    for i in range(n):
        views = []
        for _ in range(2):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)).save(
                buffer, format="PNG"
            )
            views.append(buffer.getvalue())
        label = i % 2
        path = images / f"label={label}" / f"{i:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(views[0])
        if i % shard_size == 0:
            if tar is not None:
                tar.close()
            tar = tarfile.open(shards / f"shard-{i // shard_size:06d}.tar", "w")
        meta = json.dumps(
            {"class": label, "latent": rng.normal(size=128).tolist(), "step": i // 256}
        ).encode()
        members = (
            (f"{i:08d}.v0.png", views[0]),
            (f"{i:08d}.v1.png", views[1]),
            (f"{i:08d}.cls", str(label).encode()),
            (f"{i:08d}.json", meta),
        )
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    tar.close()
    return images, shards


def timed_read(source: Path, checkout: str | None = None, mode: str = "table") -> tuple[float, int]:
    """Seconds to load and decode every image of ``source``, in a fresh process (same for every
    reader)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    env["PYTHONPATH"] = checkout or str(Path(__file__).resolve().parent.parent)
    out = subprocess.run(
        [sys.executable, "-c", READ, str(source), mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=source.parent,
    )  # not the checkout: `python -c` puts the cwd first on sys.path
    seconds, count = out.stdout.split()
    return float(seconds), int(count)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument(
        "--before", default=None, help="another checkout to time (subprocess, PYTHONPATH)"
    )
    parser.add_argument(
        "--before-n", type=int, nargs="+", default=[250, 500], help="one-shard sizes timed there"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images, shards = write_data(Path(tmp), args.n, args.shard_size, args.side)
        folder_s, n_folder = timed_read(images)
        shard_s, n_shard = timed_read(shards)
        assert n_folder == n_shard == args.n, (n_folder, n_shard)
        print(f"{args.n} images of {args.side}x{args.side}, shards of {args.shard_size}")
        print(f"  folder (this checkout):          {folder_s:8.1f} s")
        print(
            f"  shards (this checkout):          {shard_s:8.1f} s   ratio to folder "
            f"{shard_s / folder_s:.2f}"
        )
        try:
            lib_s, _ = timed_read(shards, mode="webdataset")
            print(
                f"  shards (webdataset library):     {lib_s:8.1f} s   ratio to folder "
                f"{lib_s / folder_s:.2f}"
            )
        except subprocess.CalledProcessError as error:
            print(
                "  webdataset library: failed or not installed (pip install webdataset): "
                f"{error.stderr[-200:]}"
            )
        if args.before:
            small = Path(tmp) / "before"
            times = {}
            for m in args.before_n:
                _, one = write_data(small / str(m), m, m, args.side)
                times[m], count = timed_read(one, args.before)
                assert count == m
                print(f"  one shard of {m:5d} ({args.before}): {times[m]:8.1f} s")
            (n1, t1), (n2, t2) = sorted(times.items())[0], sorted(times.items())[-1]
            # per shard of s images: T(s) = a s + b s^2 through the two measured points (b >= 0)
            b = max(0.0, (t2 / n2 - t1 / n1) / (n2 - n1)) if n2 > n1 else 0.0
            a = t2 / n2 - b * n2
            per_shard = a * args.shard_size + b * args.shard_size**2
            estimate = per_shard * args.n / args.shard_size
            exponent = np.log(t2 / t1) / np.log(n2 / n1) if n2 > n1 else float("nan")
            print(
                f"  growth exponent between one shard of {n1} and of {n2} there: {exponent:.2f} (1 "
                "linear, 2 quadratic)"
            )
            print(
                f"  shards ({args.before}, extrapolated as a s + b s^2 per shard of s = "
                f"{args.shard_size}): "
                f"{estimate:8.0f} s   ratio to folder {estimate / folder_s:.1f}; this checkout is "
                f"{estimate / shard_s:.1f}x faster"
            )


if __name__ == "__main__":
    main()
