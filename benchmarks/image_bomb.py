"""A 1 MB PNG that declares 20000 x 20000 pixels, in a folder audited by `fairgen audit`: the
command's exit code, its error line and its peak memory (GNU time's maximum resident set size).

Run: python benchmarks/image_bomb.py                 (this checkout)
     python benchmarks/image_bomb.py --checkout DIR  (another one, e.g. main before the pixel cap)
"""

from __future__ import annotations

import argparse
import os
import re
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 20_000


def bomb_png(side: int = SIDE) -> bytes:
    """A real, decodable all-black RGB PNG of ``side`` x ``side``, compressed row by row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    compressor = zlib.compressobj(9)
    row = bytes(1 + 3 * side)
    parts = [compressor.compress(row) for _ in range(side)] + [compressor.flush()]
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkout", default=str(Path(__file__).resolve().parent.parent))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        for i in range(24):
            path = tmp / "photos" / f"kind={'ab'[i % 2]}" / f"tone={'xy'[i // 12]}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)).save(path)
        data = bomb_png()
        env = {
            **os.environ,
            "PYTHONPATH": args.checkout,
            "OMP_NUM_THREADS": "1",
            "TQDM_DISABLE": "1",
        }
        encoder = tmp / "encoder.safetensors"
        subprocess.run(
            [
                sys.executable,
                "-c",
                (
                    "import sys\nfrom fairgen.contrastive import TrainConfig\nfrom "
                    "fairgen.contrastive.encoders import build_encoder\n"
                    "from plumbing.files import save_safetensors\n"
                    "c = TrainConfig(encoder='small_cnn')\n"
                    "b, _ = build_encoder(c.encoder, c.small_images)\n"
                    "save_safetensors(b.state_dict(), sys.argv[1], "
                    "metadata={'config': c.to_dict()})"
                ),
                str(encoder),
            ],
            env=env,
            check=True,
            cwd=tmp,
        )  # cwd first on sys.path: never the checkout we run from
        print(f"checkout {args.checkout}: a {len(data) / 1e6:.1f} MB PNG declaring {SIDE}x{SIDE}")
        for name in ("without the PNG (baseline)", "with the PNG"):
            if name == "with the PNG":
                (tmp / "photos" / "kind=a" / "tone=x" / "bomb.png").write_bytes(data)
            command = [
                "/usr/bin/time",
                "-v",
                sys.executable,
                "-m",
                "fairgen",
                "audit",
                "--encoder",
                str(encoder),
                "--data",
                str(tmp / "photos"),
                "--target",
                "kind",
                "--protected",
                "tone",
                "--permutations",
                "19",
                "--bootstrap",
                "20",
                "--out",
                str(tmp / name.split()[0]),
            ]
            done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp)
            peak = int(
                re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1)
            )
            errors = [
                line
                for line in done.stderr.splitlines()
                if "error" in line.lower() and "fairgen" in line
            ]
            print(f"  {name}: exit code {done.returncode}; peak RSS {peak / 1024**2:.2f} GB")
            if done.returncode:
                print(f"    {errors[-1] if errors else done.stderr.strip().splitlines()[-1][:300]}")


if __name__ == "__main__":
    main()
