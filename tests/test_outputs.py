"""Outputs are all or nothing and have one writer: a kill at any write point leaves the old or the
new
output, a second writer is refused by name, a full disk is one clear error, links are never written
through."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from plumbing import outputs
from plumbing.outputs import DiskFullError, OutputLockedError, output_lock

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill test forks a writer")


# ---------------------------------------------------------------- the kill test


def snapshot(paths) -> dict:
    """Relative name -> SHA-256 of every file under ``paths`` (folders walked), hidden temporaries
    left out."""
    out = {}
    for path in map(Path, paths):
        files = (
            sorted(p for p in path.rglob("*") if p.is_file())
            if path.is_dir()
            else [path]
            if path.exists()
            else []
        )
        for file in files:
            out[f"{path.name}/{file.relative_to(path)}" if path.is_dir() else path.name] = (
                hashlib.sha256(file.read_bytes()).hexdigest()
            )
    return out


def _in_child(write, die_at: int | None, count_file: Path) -> int:
    """Run ``write`` in a forked process that dies (``os._exit``, no cleanup) before its
    ``die_at``-th
    write point: every chunk written, every rename and every removal in ``plumbing.outputs``."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            seen = [0]

            def point(original):
                def wrapped(*args):
                    if seen[0] == die_at:
                        os._exit(9)
                    seen[0] += 1
                    return original(*args)

                return wrapped

            outputs._write_chunk = point(outputs._write_chunk)
            outputs._rename = point(outputs._rename)
            outputs._remove_tree = point(outputs._remove_tree)
            write()
            count_file.write_text(str(seen[0]))
        except BaseException:  # noqa: BLE001  (reported through the exit code)
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def kill_at_every_point(tmp_path, targets, write_old, write_new, read) -> int:
    """Kill ``write_new`` at each of its write points over the old output; after ``read`` (what a
    reader
    does), the targets hold exactly the old or exactly the new output. Returns the number of
    points."""
    write_old()
    old = snapshot(targets)
    count_file = tmp_path / "points"
    assert _in_child(write_new, None, count_file) == 0
    new = snapshot(targets)
    assert all(
        new.get(name) != digest for name, digest in old.items()
    )  # every file changes: a mix would show
    points = int(count_file.read_text())
    for k in range(points):
        for target in targets:  # back to the old output, and nothing else around it
            shutil.rmtree(target, ignore_errors=True) if Path(target).is_dir() else Path(
                target
            ).unlink(missing_ok=True)
        for leftover in Path(targets[0]).parent.glob(".*"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        write_old()
        assert _in_child(write_new, k, count_file) == 9, k
        read()
        seen = snapshot(targets)
        assert seen in (old, new), (
            f"killed at write point {k} of {points}: a mix of old and new output"
        )
    return points


def _steerer(shift: float = 0.0):
    """A fitted flip steerer (its centre moved by ``shift``, to make a second card with other
    tensors)."""
    import steering
    from fairgen import load_generator
    from fairgen.world import load_judges

    generator = load_generator("world-sprites-32")
    steerer, _ = steering.fit_steerer(
        generator,
        load_judges()["texture"].predict,
        n=600,
        mode="flip",
        method="quantile",
        progress=False,
    )
    steerer.centre.add_(shift)
    return steerer


def test_a_steer_card_killed_at_every_write_point_is_old_or_new(tmp_path):
    import steering

    first, second = _steerer(), _steerer(shift=1.0)
    stem = tmp_path / "cards" / "card"
    targets = [stem.with_suffix(".json"), stem.with_suffix(".safetensors")]
    points = kill_at_every_point(
        tmp_path,
        targets,
        lambda: steering.save_card(first, stem, {"run": "old"}),
        lambda: steering.save_card(second, stem, {"run": "new"}),
        lambda: steering.load_card(stem),
    )  # a reader finishes a committed card
    assert points >= 4


def _report(title: str, with_plot: bool):
    from audits import AuditReport, stream_balance

    report = AuditReport(title).add("numbers", pd.DataFrame({"a": [1, 2], "b": [title, title]}))
    if with_plot:
        rng = np.random.default_rng(0)
        report.add(
            "balance",
            stream_balance(rng.integers(0, 2, 200), rng.integers(0, 2, 200), n_bootstrap=20),
        )
    return report


def test_an_audit_report_killed_at_every_write_point_is_old_or_new(tmp_path):
    out = tmp_path / "audit"
    old, new = _report("old", with_plot=True), _report("new", with_plot=False)
    points = kill_at_every_point(
        tmp_path,
        [out],
        lambda: old.save(out),
        lambda: new.save(out),
        lambda: outputs.finish_pending(out),
    )
    assert points >= 4
    assert (
        not (out / "stream_balance.png").exists()
        or json.loads((out / "report.json").read_text())["title"] == "old"
    )


class _Batches:
    """A stream stand-in: precomputed batches (the forked writer runs no torch kernels)."""

    def __init__(self, seed: int, n: int):
        g = torch.Generator().manual_seed(seed)
        self.batches = [
            {
                "views": torch.rand(n, 2, 3, 8, 8, generator=g),
                "labels": torch.arange(n) % 3,
                "latents": torch.rand(n, 4, generator=g),
                "step": 0,
            }
        ]

    def next_batch(self):
        return self.batches.pop(0)


def test_an_export_killed_at_every_write_point_is_old_or_new(tmp_path):
    from fairgen.data import load_data
    from fairgen.export import export_stream

    out = tmp_path / "export"
    points = kill_at_every_point(
        tmp_path,
        [out],
        lambda: export_stream(_Batches(0, 6), out, 6, progress=False),
        lambda: export_stream(_Batches(1, 4), out, 4, progress=False),
        lambda: load_data(out),
    )  # load_data finishes a committed export
    assert points >= 10
    rows = (out / "labels.csv").read_text().splitlines()[1:]
    assert len(rows) * 2 == len(list(out.rglob("*.png")))  # labels and images of one export


# ---------------------------------------------------------------- one writer


def test_a_second_writer_is_refused_naming_the_first_and_a_dead_ones_lock_is_taken_over(tmp_path):
    target = tmp_path / "run"
    message = tmp_path / "message"
    with output_lock(target, command="fairgen train --out run"):
        child = os.fork()
        if child == 0:  # another process wants the same output
            try:
                with output_lock(target):
                    pass
            except OutputLockedError as error:
                message.write_text(str(error))
            finally:
                os._exit(0)
        os.waitpid(child, 0)
    assert (
        f"is being written by pid {os.getpid()} on {socket.gethostname()} (fairgen train --out run"
        in message.read_text()
    )
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    lock = tmp_path / ".run.lock"
    lock.write_text(json.dumps({"pid": dead, "host": socket.gethostname(), "command": "killed"}))
    with output_lock(target):  # a stale lock (its pid is gone) does not block
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    lock.write_text(json.dumps({"pid": os.getpid(), "host": "another-host", "command": "x"}))
    with pytest.raises(OutputLockedError, match="pid .* on another-host .*remove .*run.lock"):
        with output_lock(target):
            pass


def test_two_concurrent_trains_into_one_out_the_second_is_refused(tmp_path, capsys):
    import time

    from fairgen.cli import main

    spec = tmp_path / "stream.json"
    assert main(["stream", "--new", str(spec)]) == 0
    train = [
        "train",
        "--spec",
        str(spec),
        "--out",
        str(tmp_path / "run"),
        "--batch-size",
        "4",
        "--quiet",
    ]
    first = os.fork()
    if first == 0:  # the first `fairgen train`, long enough to be caught running
        try:
            main([*train, "--steps", "100000"])
        finally:
            os._exit(0)
    try:
        lock = tmp_path / ".run.lock"
        for _ in range(600):
            if lock.exists():
                break
            time.sleep(0.05)
        capsys.readouterr()
        assert main([*train, "--steps", "2"]) == 2
        err = capsys.readouterr().err
        assert (
            f"is being written by pid {first} on {socket.gethostname()}" in err
            and "Traceback" not in err
        )
    finally:
        os.kill(first, 9)
        os.waitpid(first, 0)
    assert not (
        tmp_path / "run" / "encoder.safetensors"
    ).exists()  # the second run wrote nothing either


# ---------------------------------------------------------------- files


def test_a_card_rewritten_never_writes_through_a_hard_link_and_keeps_usual_modes(tmp_path):
    import steering

    steerer = _steerer()
    card = steering.save_card(steerer, tmp_path / "card", {"run": 1})
    (tmp_path / "spec").mkdir()
    os.link(card, tmp_path / "spec" / "card.json")  # what `stream --new` does to bring a card along
    before = (tmp_path / "spec" / "card.json").read_bytes()
    steering.save_card(steerer, tmp_path / "card", {"run": 2})
    assert (tmp_path / "spec" / "card.json").read_bytes() == before  # the spec's copy is untouched
    assert json.loads(card.read_text())["run"] == 2
    mask = os.umask(0)
    os.umask(mask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (card, tmp_path / "card.safetensors")}
    assert modes == {"card.json": 0o666 & ~mask, "card.safetensors": 0o666 & ~mask}


def _full_disk(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_is_one_clear_error_and_the_previous_output_stays(
    tmp_path, monkeypatch, capsys
):
    import steering
    from fairgen.cli import main
    from fairgen.export import export_stream

    steerer = _steerer()
    card = steering.save_card(steerer, tmp_path / "card", {"run": "old"})
    report = tmp_path / "audit"
    _report("old", with_plot=True).save(report)
    export_stream(_Batches(0, 3), tmp_path / "export", 3, progress=False)
    before = snapshot([card, tmp_path / "card.safetensors", report, tmp_path / "export"])
    monkeypatch.setattr(outputs, "_write_chunk", _full_disk)
    with pytest.raises(DiskFullError, match="disk full while writing .*card"):
        steering.save_card(steerer, tmp_path / "card", {"run": "new"})
    with pytest.raises(DiskFullError, match="disk full while writing"):
        _report("new", with_plot=False).save(report)
    with pytest.raises(DiskFullError, match="disk full while writing"):
        export_stream(_Batches(1, 2), tmp_path / "export", 2, progress=False)
    assert snapshot([card, tmp_path / "card.safetensors", report, tmp_path / "export"]) == before
    assert not [
        p for p in tmp_path.iterdir() if p.name.startswith(".")
    ]  # no temporaries left behind
    assert main(["sample", "--n", "4", "--out", str(tmp_path / "grid")]) == 2
    err = capsys.readouterr().err
    assert "disk full while writing" in err and "Traceback" not in err
    spec = tmp_path / "stream.json"
    monkeypatch.undo()
    assert main(["stream", "--new", str(spec)]) == 0
    monkeypatch.setattr(outputs, "_write_chunk", _full_disk)
    assert (
        main(
            [
                "train",
                "--spec",
                str(spec),
                "--out",
                str(tmp_path / "run"),
                "--steps",
                "1",
                "--batch-size",
                "4",
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "disk full while writing" in err and "Traceback" not in err
