"""Bad inputs of issue 13, one case each, through the command line and the Python API.

Shared by tests/test_bad_inputs.py (each case must fail clearly) and benchmarks/bad_inputs.py
(tallies clear / traceback / silent on any checkout, for the before/after table). A case is
``(name, kind, run, match)``: ``run(lab)`` returns ``main``'s exit code for CLI cases and raises
for API cases; ``match`` is what the error must say.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from handmade_png import png


class Lab:
    """Files the cases feed in: good ones to break, and broken ones (built once in ``folder``)."""

    def __init__(self, folder: Path):
        from fairgen import load_generator
        from fairgen.stream import make_spec

        self.folder = folder
        self.generator = load_generator("world-sprites-32")
        weights = Path(__import__("fairgen.world.generator", fromlist=["WEIGHTS"]).WEIGHTS)
        data = weights.read_bytes()
        self.file("empty.safetensors", b"")
        self.file("truncated.safetensors", data[: len(data) // 2])
        self.file("garbage.safetensors", b"\x00not a safetensors file at all" * 10)
        spec = make_spec(self.generator, augment="none")
        self.spec = spec.save(folder / "stream.json")
        self.spec_dict = json.loads(self.spec.read_text())

    def file(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def spec_with(self, name: str, **changes) -> Path:
        path = self.folder / name
        path.write_text(json.dumps({**self.spec_dict, **changes}))
        return path

    def run_folder(self, name: str, checkpoint: bytes | None = None) -> Path:
        folder = self.folder / name
        folder.mkdir(exist_ok=True)
        if checkpoint is not None:
            (folder / "checkpoint.pt").write_bytes(checkpoint)
        return folder

    @property
    def card(self) -> Path:
        """An eraser card fitted on the embedded generator (made on first use: a few seconds)."""
        path = self.folder / "card.json"
        if not path.exists():
            import steering
            from fairgen.world import load_judges

            steerer, _ = steering.fit_steerer(
                self.generator,
                load_judges()["texture"].predict,
                n=2000,
                mode="balance",
                progress=False,
            )
            steering.save_card(
                steerer,
                self.folder / "card",
                {"generator": {"name": self.generator.name, "sha256": self.generator.checksum}},
            )
        return path

    @property
    def foreign_card(self) -> Path:
        """The same card, claiming to come from another generator."""
        path = self.folder / "foreign" / "card.json"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            card = json.loads(self.card.read_text())
            card["generator"] = {"name": "biggan-deep-128", "sha256": "0" * 64}
            path.write_text(json.dumps(card))
            shutil.copy(self.folder / "card.safetensors", path.parent / "card.safetensors")
        return path


def cli(*argv):
    from fairgen.cli import main

    def run(lab: Lab) -> int:
        args = [a(lab) if callable(a) else a for a in argv]
        try:
            return main([str(a) for a in args])
        except SystemExit as exit_:  # argparse refuses a bad value with exit code 2
            return exit_.code

    return run


def mismatched_encoder(lab: Lab) -> Path:
    """An encoder file whose config names resnet18 but whose weights are a small_cnn's."""
    from fairgen.contrastive import TrainConfig
    from fairgen.contrastive.encoders import build_encoder
    from plumbing.files import save_safetensors

    backbone, _ = build_encoder("small_cnn", True)
    path = lab.folder / "mismatched.safetensors"
    save_safetensors(
        backbone.state_dict(), path, metadata={"config": TrainConfig(encoder="resnet18").to_dict()}
    )
    return path


def configless_checkpoint(lab: Lab) -> Path:
    folder = lab.run_folder("configless")
    torch.save(
        {"format": 1, "step": 3, "model": {}, "optimizer": {}, "scheduler": {}},
        folder / "checkpoint.pt",
    )
    return folder


def trained_run(lab: Lab) -> Path:
    """A 2-step run to resume."""
    from fairgen.cli import main

    folder = lab.folder / "trained"
    if not (folder / "checkpoint.pt").exists():
        assert (
            main(
                [
                    "train",
                    "--spec",
                    str(lab.spec),
                    "--out",
                    str(folder),
                    "--steps",
                    "2",
                    "--batch-size",
                    "4",
                ]
            )
            == 0
        )
    return folder


def api(fn):
    return fn


def _augment(images):
    from fairgen.augment import augment

    return augment(images, "light", torch.Generator().manual_seed(0))


def _judge(images):
    from fairgen.world import load_judges

    return load_judges()["shape"].predict(images)


def _spec(**changes):
    from fairgen.stream import StreamSpec

    return StreamSpec(**changes)


def _trainer_step(views):
    from fairgen.contrastive import TrainConfig, Trainer

    trainer = Trainer(
        TrainConfig(
            augment=None,
            projection_hidden_dim=16,
            projection_dim=8,
            total_steps=3,
            warmup_steps=0,
            log_every=1,
            progress=False,
        )
    )
    trainer.fit([{"views": views, "labels": torch.zeros(len(views), dtype=torch.long)}] * 3)


def _nan_views():
    views = torch.rand(4, 2, 3, 16, 16)
    views[0, 0, 0, 0, 0] = float("nan")
    return views


def _load_encoder(path_of):
    from fairgen.contrastive import load_encoder

    return lambda lab: load_encoder(path_of(lab))


def _from_checkpoint(path_of):
    from fairgen.contrastive import Trainer

    return lambda lab: Trainer.from_checkpoint(path_of(lab))


def _load_generator(path_of):
    from fairgen import load_generator

    return lambda lab: load_generator(str(path_of(lab)))


def _world_sample(n):
    from fairgen.world import World

    return lambda lab: World(32).sample(n, seed=0)


def _stream(batch_size):
    from fairgen.stream import Stream

    return lambda lab: Stream.from_spec(_spec(generator_sha256=lab.generator.checksum), batch_size)


OUT = lambda lab: lab.folder / "out"  # noqa: E731  (a folder the commands may write into)

CASES = [
    # ------------------------------------------------------------ command line
    (
        "cli: --device that does not exist",
        "cli",
        cli("sample", "--n", "4", "--device", "tpu9", "--out", OUT),
        "--device",
    ),
    (
        "cli: --device cuda without a GPU",
        "cli",
        cli("sample", "--n", "4", "--device", "cuda:7", "--out", OUT),
        "--device",
    ),
    (
        "cli: empty generator weights",
        "cli",
        cli("sample", "--generator", lambda lab: lab.folder / "empty.safetensors", "--out", OUT),
        "empty.safetensors",
    ),
    (
        "cli: truncated generator weights",
        "cli",
        cli(
            "sample", "--generator", lambda lab: lab.folder / "truncated.safetensors", "--out", OUT
        ),
        "truncated.safetensors",
    ),
    (
        "cli: garbage generator weights",
        "cli",
        cli("sample", "--generator", lambda lab: lab.folder / "garbage.safetensors", "--out", OUT),
        "garbage.safetensors",
    ),
    (
        "cli: garbage eraser card",
        "cli",
        cli(
            "stream",
            "--new",
            lambda lab: lab.folder / "s.json",
            "--eraser",
            lambda lab: lab.file("bad/card.json", b"{not json"),
        ),
        "card.json",
    ),
    (
        "cli: eraser card of another generator",
        "cli",
        cli(
            "stream",
            "--new",
            lambda lab: lab.folder / "s2.json",
            "--eraser",
            lambda lab: lab.foreign_card,
        ),
        "fitted on",
    ),
    (
        "cli: empty encoder",
        "cli",
        cli(
            "audit",
            "--encoder",
            lambda lab: lab.folder / "empty.safetensors",
            "--n-probe",
            "50",
            "--n-test",
            "50",
            "--out",
            OUT,
        ),
        "empty.safetensors",
    ),
    (
        "cli: truncated encoder",
        "cli",
        cli(
            "audit",
            "--encoder",
            lambda lab: lab.folder / "truncated.safetensors",
            "--n-probe",
            "50",
            "--n-test",
            "50",
            "--out",
            OUT,
        ),
        "truncated.safetensors",
    ),
    (
        "cli: encoder whose config and weights disagree",
        "cli",
        cli(
            "audit",
            "--encoder",
            mismatched_encoder,
            "--n-probe",
            "50",
            "--n-test",
            "50",
            "--out",
            OUT,
        ),
        "do not fit",
    ),
    (
        "cli: empty checkpoint",
        "cli",
        cli(
            "train",
            "--spec",
            lambda lab: lab.spec,
            "--resume",
            "--out",
            lambda lab: lab.run_folder("c1", b""),
        ),
        "checkpoint",
    ),
    (
        "cli: truncated checkpoint",
        "cli",
        cli(
            "train",
            "--spec",
            lambda lab: lab.spec,
            "--resume",
            "--out",
            lambda lab: lab.run_folder("c2", b"PK\x03\x04" + b"\x00" * 40),
        ),
        "checkpoint",
    ),
    (
        "cli: garbage checkpoint",
        "cli",
        cli(
            "train",
            "--spec",
            lambda lab: lab.spec,
            "--resume",
            "--out",
            lambda lab: lab.run_folder("c3", b"garbage" * 30),
        ),
        "checkpoint",
    ),
    (
        "cli: checkpoint without its config",
        "cli",
        cli("train", "--spec", lambda lab: lab.spec, "--resume", "--out", configless_checkpoint),
        "lacks",
    ),
    (
        "cli: --resume without a checkpoint",
        "cli",
        cli(
            "train",
            "--spec",
            lambda lab: lab.spec,
            "--resume",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--out",
            lambda lab: lab.run_folder("none"),
        ),
        "no checkpoint",
    ),
    (
        "cli: --resume with another --lr",
        "cli",
        cli("train", "--resume", "--lr", "0.5", "--steps", "3", "--out", trained_run),
        "lr",
    ),
    (
        "cli: --resume with another --batch-size",
        "cli",
        cli("train", "--resume", "--batch-size", "8", "--steps", "3", "--out", trained_run),
        "batch_size",
    ),
    (
        "cli: --resume with another spec",
        "cli",
        cli(
            "train",
            "--resume",
            "--spec",
            lambda lab: lab.spec_with("seed9.json", seed=9),
            "--steps",
            "3",
            "--out",
            trained_run,
        ),
        "stream",
    ),
    (
        "cli: --resume to fewer steps than trained",
        "cli",
        cli("train", "--resume", "--steps", "1", "--out", trained_run),
        "below",
    ),
    (
        "cli: class weights NaN",
        "cli",
        cli(
            "train",
            "--spec",
            lambda lab: lab.spec_with(
                "nan.json", classes=[0, 1], class_weights=[float("nan"), 1.0]
            ),
            "--out",
            OUT,
            "--steps",
            "1",
            "--batch-size",
            "4",
        ),
        "class_weights",
    ),
    (
        "cli: class weights inf",
        "cli",
        cli(
            "train",
            "--spec",
            lambda lab: lab.spec_with(
                "inf.json", classes=[0, 1], class_weights=[float("inf"), 1.0]
            ),
            "--out",
            OUT,
            "--steps",
            "1",
            "--batch-size",
            "4",
        ),
        "class_weights",
    ),
    (
        "cli: refresh as a string",
        "cli",
        cli(
            "train",
            "--spec",
            lambda lab: lab.spec_with("refresh.json", refresh="0.5"),
            "--out",
            OUT,
            "--steps",
            "1",
            "--batch-size",
            "4",
        ),
        "refresh",
    ),
    (
        "cli: resolution 30000",
        "cli",
        cli(
            "train",
            "--spec",
            lambda lab: lab.spec_with("huge.json", resolution=30000),
            "--out",
            OUT,
            "--steps",
            "1",
            "--batch-size",
            "4",
        ),
        "resolution",
    ),
    (
        "cli: spec missing most keys",
        "cli",
        cli(
            "train",
            "--spec",
            lambda lab: lab.file("sparse.json", b'{"generator": "world-sprites-32"}'),
            "--out",
            OUT,
            "--steps",
            "1",
        ),
        "lacks",
    ),
    (
        "cli: train --batch-size 1",
        "cli",
        cli(
            "train",
            "--spec",
            lambda lab: lab.spec,
            "--out",
            lambda lab: lab.run_folder("b1"),
            "--steps",
            "1",
            "--batch-size",
            "1",
        ),
        "batch",
    ),
    (
        "cli: train --lr 1e30 diverges",
        "cli",
        cli(
            "train",
            "--spec",
            lambda lab: lab.spec,
            "--out",
            lambda lab: lab.run_folder("lr"),
            "--steps",
            "4",
            "--batch-size",
            "4",
            "--lr",
            "1e30",
            "--optimizer",
            "sgd",
            "--log-every",
            "1",
            "--quiet",
        ),
        "NaN",
    ),
    (
        "cli: train --config with an unknown key",
        "cli",
        cli(
            "train",
            "--config",
            lambda lab: lab.file("run.yaml", b"spec: stream.json\nepochs: 3\n"),
            "--out",
            OUT,
        ),
        "unknown keys",
    ),
    (
        "cli: train --config that is not YAML",
        "cli",
        cli(
            "train",
            "--config",
            lambda lab: lab.file("bad.yaml", b"spec: [unclosed\n"),
            "--out",
            OUT,
        ),
        "not valid YAML",
    ),
    (
        "cli: zoo train --steps 0",
        "cli",
        cli("zoo", "train", "world-sprites-32", "--steps", "0", "--out", OUT),
        "positive integer",
    ),
    (
        "cli: zoo train --steps -1",
        "cli",
        cli("zoo", "train", "world-sprites-32", "--steps", "-1", "--out", OUT),
        "positive integer",
    ),
    (
        "cli: steer --protected shape (the class)",
        "cli",
        cli("steer", "--protected", "shape", "--n", "100", "--out", lambda lab: lab.folder / "c"),
        "class",
    ),
    (
        "cli: world --n 20000 (one grid)",
        "cli",
        cli("world", "--n", "20000", "--out", OUT),
        "at most",
    ),
    (
        "cli: world --resolution 30000",
        "cli",
        cli("world", "--resolution", "30000", "--out", OUT),
        "invalid choice",
    ),
    (
        "cli: --out naming a file",
        "cli",
        cli("sample", "--n", "4", "--out", lambda lab: lab.folder / "grid.png"),
        "folder",
    ),
    # ------------------------------------------------------------ Python API
    (
        "api: augment images in [0, 255]",
        "api",
        api(lambda lab: _augment(torch.rand(2, 3, 8, 8) * 255)),
        r"\[0, 1\]",
    ),
    (
        "api: augment images in [-1, 1]",
        "api",
        api(lambda lab: _augment(torch.rand(2, 3, 8, 8) * 2 - 1)),
        r"\[0, 1\]",
    ),
    (
        "api: augment NaN images",
        "api",
        api(lambda lab: _augment(torch.full((2, 3, 8, 8), float("nan")))),
        "NaN",
    ),
    (
        "api: judges on images in [0, 255]",
        "api",
        api(lambda lab: _judge(torch.rand(2, 3, 32, 32) * 255)),
        r"\[0, 1\]",
    ),
    (
        "api: judges on images in [-1, 1]",
        "api",
        api(lambda lab: _judge(torch.rand(2, 3, 32, 32) * 2 - 1)),
        r"\[0, 1\]",
    ),
    (
        "api: generator on NaN latents",
        "api",
        api(
            lambda lab: lab.generator.synthesize(
                torch.full((2, lab.generator.latent_dim), float("nan")),
                torch.zeros(2, dtype=torch.long),
            )
        ),
        "NaN",
    ),
    (
        "api: generator on float classes",
        "api",
        api(
            lambda lab: lab.generator.synthesize(
                torch.zeros(2, lab.generator.latent_dim), torch.zeros(2)
            )
        ),
        "int",
    ),
    (
        "api: spec with NaN class weights",
        "api",
        api(lambda lab: _spec(classes=[0, 1], class_weights=[float("nan"), 1.0])),
        "class_weights",
    ),
    ("api: spec with refresh as a string", "api", api(lambda lab: _spec(refresh="0.5")), "refresh"),
    (
        "api: spec with resolution 30000",
        "api",
        api(lambda lab: _spec(resolution=30000)),
        "resolution",
    ),
    (
        "api: spec missing most keys",
        "api",
        api(
            lambda lab: __import__("fairgen").StreamSpec.from_dict(
                {"generator": "world-sprites-32"}
            )
        ),
        "lacks",
    ),
    (
        "api: spec with unknown keys",
        "api",
        api(lambda lab: __import__("fairgen").StreamSpec.from_dict({**lab.spec_dict, "epochs": 3})),
        "unknown",
    ),
    (
        "api: make_spec with a card of another generator",
        "api",
        api(lambda lab: __import__("fairgen").make_spec(lab.generator, eraser=lab.foreign_card)),
        "fitted on",
    ),
    ("api: Stream with batch_size 0", "api", api(_stream(0)), "batch_size"),
    ("api: Stream with batch_size 2.5", "api", api(_stream(2.5)), "batch_size"),
    ("api: World.sample(-1)", "api", api(_world_sample(-1)), "n"),
    ("api: World.sample(2.5)", "api", api(_world_sample(2.5)), "n"),
    ("api: trainer on NaN views", "api", api(lambda lab: _trainer_step(_nan_views())), "NaN"),
    (
        "api: trainer on a batch of 1",
        "api",
        api(lambda lab: _trainer_step(torch.rand(1, 2, 3, 16, 16))),
        "at least 2",
    ),
    (
        "api: TrainConfig lr NaN",
        "api",
        api(lambda lab: __import__("fairgen.contrastive").contrastive.TrainConfig(lr=float("nan"))),
        "lr",
    ),
    (
        "api: TrainConfig total_steps 2.5",
        "api",
        api(lambda lab: __import__("fairgen.contrastive").contrastive.TrainConfig(total_steps=2.5)),
        "total_steps",
    ),
    (
        "api: load_encoder on an empty file",
        "api",
        _load_encoder(lambda lab: lab.folder / "empty.safetensors"),
        "empty.safetensors",
    ),
    (
        "api: load_encoder on a garbage file",
        "api",
        _load_encoder(lambda lab: lab.folder / "garbage.safetensors"),
        "garbage.safetensors",
    ),
    (
        "api: load_encoder whose config and weights disagree",
        "api",
        _load_encoder(mismatched_encoder),
        "do not fit",
    ),
    (
        "api: checkpoint that is garbage",
        "api",
        _from_checkpoint(lambda lab: lab.file("g.pt", b"garbage" * 30)),
        "g.pt",
    ),
    (
        "api: checkpoint without its config",
        "api",
        _from_checkpoint(lambda lab: configless_checkpoint(lab) / "checkpoint.pt"),
        "lacks",
    ),
    (
        "api: load_generator on a truncated file",
        "api",
        _load_generator(lambda lab: lab.folder / "truncated.safetensors"),
        "truncated.safetensors",
    ),
]


# ==================================================================== issue 18, part A (i18a)
# Received files are data: an entry point named inside a card, spec or checkpoint runs only when the
# user allows it; no read outside a card's folder (and error texts that say nothing about outside
# files); strict, bounded JSON; safetensors checked before use; strings escaped for the terminal.
# A case that runs code, reads outside or prints raw control characters raises ``Unsafe`` (the test
# fails, the benchmark counts it as "code executed", "leak" or "unescaped").

import contextlib  # noqa: E402
import io  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

SECRET = "SECRET-7f3a-outside-the-card"


class Unsafe(Exception):  # noqa: N818  (what the case proved, not an error of ours)
    """A case ran code, read outside its card's folder, or printed raw control characters."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class Received:
    """Received files built once per lab: a card folder, an outside folder with a secret, a
    marker."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.root = lab.folder / "received"
        self.outside = self.root / "outside"
        self.outside.mkdir(parents=True, exist_ok=True)
        self.marker = self.root / "code-ran.txt"
        (self.outside / "secret.txt").write_text(SECRET)

    def folder(self, name: str) -> Path:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def spec(self, name: str, **changes) -> Path:
        path = self.folder(name) / "stream.json"
        path.write_text(json.dumps({**self.lab.spec_dict, **changes}))
        return path

    def hub(self, name: str) -> Path:
        """A card folder with a hubconf.py whose entry point writes the marker (and returns the
        world generator)."""
        folder = self.folder(name)
        (folder / "hub").mkdir(exist_ok=True)
        (folder / "hub" / "hubconf.py").write_text(
            "def x(device='cpu', **options):\n"
            f"    open({str(self.marker)!r}, 'w').write('ran')\n"
            "    from fairgen import load_generator\n"
            "    return load_generator('world-sprites-32', device=device)\n"
        )
        return folder

    def card(self, name: str, edit_json=None, edit_tensors=None) -> Path:
        """A copy of the lab's eraser card, edited, with its tensors pin updated (so only the edit
        is wrong)."""
        import hashlib

        from safetensors.torch import load_file, save_file

        folder = self.folder(name)
        card = json.loads(self.lab.card.read_text())
        tensors = load_file(str(self.lab.folder / "card.safetensors"))
        if edit_tensors is not None:
            tensors = edit_tensors(tensors)
        if isinstance(tensors, bytes):
            (folder / "card.safetensors").write_bytes(tensors)
        else:
            save_file(tensors, str(folder / "card.safetensors"))
        card["tensors"]["sha256"] = hashlib.sha256(
            (folder / "card.safetensors").read_bytes()
        ).hexdigest()
        if edit_json is not None:
            card = edit_json(card)
        text = card if isinstance(card, str) else json.dumps(card)
        (folder / "card.json").write_text(text)
        return folder / "card.json"

    def checkpoint_naming(self, name: str, stream_changes: dict) -> Path:
        """A run folder whose checkpoint's embedded run names a stream with ``stream_changes``."""
        folder = self.folder(name)
        state = torch.load(
            trained_run(self.lab) / "checkpoint.pt", map_location="cpu", weights_only=True
        )
        run = json.loads(state["run"])
        run["stream"] = {**run["stream"], **stream_changes}
        state["run"] = json.dumps(run)
        torch.save(state, folder / "checkpoint.pt")
        return folder


def received(lab: Lab) -> Received:
    if not hasattr(lab, "received"):
        lab.received = Received(lab)
    return lab.received


def guarded(run, outside: str | None = None):
    """``run`` checked for code execution (the marker, a newly imported ``this``), raw control
    characters
    on stderr or in warnings, the secret in any message, and (with ``outside``, a path relative to
    the
    outside folder) a message that changes when that outside file exists or not."""

    def once(lab):
        import logging

        rec = received(lab)
        rec.marker.unlink(missing_ok=True)
        had_this = "this" in sys.modules
        err = io.StringIO()
        error = None
        code = None
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("always")
            try:
                code = run(lab)
            except Exception as e:  # noqa: BLE001  (re-raised below, after the checks)
                error = e
        for handler in list(
            logging.root.handlers
        ):  # logging:basicConfig may have pointed the root logger at the marker
            if isinstance(handler, logging.FileHandler) and handler.baseFilename == str(rec.marker):
                logging.root.removeHandler(handler)
                handler.close()
        text = (
            err.getvalue() + "".join(str(w.message) for w in caught) + (str(error) if error else "")
        )
        if rec.marker.exists() or ("this" in sys.modules and not had_this):
            sys.modules.pop("this", None)
            raise Unsafe("code executed", "an entry point named inside a received file ran")
        if SECRET in text:
            raise Unsafe("leak", "a message shows the content of a file outside the card's folder")
        if "\x1b" in text:
            raise Unsafe("unescaped", "a raw escape character reached the terminal")
        return code, error, err.getvalue()

    def checked(lab):
        code, error, err = once(lab)
        if outside is not None:
            target = received(lab).outside / outside
            kept = target.read_bytes() if target.exists() else None
            target.unlink(missing_ok=True)
            try:
                code2, error2, err2 = once(lab)
            finally:
                if kept is not None:
                    target.write_bytes(kept)
            if (code, type(error), str(error), err) != (code2, type(error2), str(error2), err2):
                raise Unsafe(
                    "leak", f"the message tells whether {outside} exists outside the card's folder"
                )
        sys.stderr.write(err)
        if error is not None:
            raise error
        return code

    return checked


def _spec_out(name, **changes):
    return lambda lab: received(lab).spec(name, **changes)


def _hub_spec(name, repo):
    """A spec naming torch.hub:load with a hubconf beside it (``repo``: how it names the hub
    folder)."""

    def make(lab):
        folder = received(lab).hub(name)
        options = {"repo_or_dir": repo(folder), "model": "x", "source": "local"}
        return received(lab).spec(name, generator="torch.hub:load", generator_options=options)

    return make


def _basic_config_options(lab):
    return {"filename": str(received(lab).marker), "filemode": "w", "force": True}


def _train(spec_of, *extra):
    """``fairgen train`` on a received spec, into a run folder of its own beside it."""
    return cli(
        "train",
        "--spec",
        spec_of,
        "--out",
        lambda lab: spec_of(lab).parent / "run",
        "--steps",
        "1",
        "--batch-size",
        "4",
        *extra,
    )


def _resume(folder_of):
    return cli("train", "--resume", "--steps", "3", "--out", folder_of)


def _load_card(path_of, use=False):
    def run(lab):
        from steering.card import load_card

        steerer, _ = load_card(path_of(lab), generator=lab.generator)
        if use:  # a card that loads must also steer
            z = lab.generator.sample_latents(64, generator=torch.Generator().manual_seed(0))
            steerer(z, torch.zeros(64, dtype=torch.long), torch.Generator().manual_seed(1))

    return run


def _stream_of(path_of):
    def run(lab):
        from fairgen.stream import Stream, StreamSpec

        Stream.from_spec(StreamSpec.load(path_of(lab)), 4).next_batch()

    return run


def _linked_tensors(lab):
    """A card whose tensors file is missing, with ``card.safetensors`` a link to a copy outside its
    folder."""
    import shutil as _shutil

    rec = received(lab)
    path = rec.card(
        "linked",
        edit_json=lambda c: {**c, "tensors": {**c["tensors"], "file": "renamed.safetensors"}},
    )
    _shutil.copy(lab.folder / "card.safetensors", rec.outside / "card.safetensors")
    (path.parent / "card.safetensors").unlink()
    (path.parent / "card.safetensors").symlink_to(rec.outside / "card.safetensors")
    return path


def _linked_generator(lab):
    """A spec whose generator is a link inside its folder to weights outside it."""
    import shutil as _shutil

    from fairgen.world.legacy import WEIGHTS

    rec = received(lab)
    folder = rec.folder("linked-generator")
    _shutil.copy(WEIGHTS, rec.outside / "generator.safetensors")
    link = folder / "generator.safetensors"
    link.unlink(missing_ok=True)
    link.symlink_to(rec.outside / "generator.safetensors")
    return rec.spec("linked-generator", generator="generator.safetensors")


def _cwd_generator(lab):
    """A spec naming a generator file that exists only in the current directory (the outside
    folder)."""
    import os as _os
    import shutil as _shutil

    from fairgen.world.legacy import WEIGHTS

    rec = received(lab)
    _shutil.copy(WEIGHTS, rec.outside / "cwd.safetensors")
    spec = rec.spec("cwd-generator", generator="cwd.safetensors")
    here = _os.getcwd()
    _os.chdir(rec.outside)
    try:
        _stream_of(lambda lab: spec)(lab)
    finally:
        _os.chdir(here)


def _local_generator(name, pin):
    """A spec naming a generator file inside its folder, pinned by ``pin(lab)``."""

    def make(lab):
        import shutil as _shutil

        from fairgen.world.legacy import WEIGHTS

        folder = received(lab).folder(name)
        _shutil.copy(WEIGHTS, folder / "generator.safetensors")
        return received(lab).spec(
            name, generator="generator.safetensors", generator_sha256=pin(lab)
        )

    return make


def _deep(n):
    return ("[" * n + "]" * n).encode()


def _half(tensors):
    return {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}


def _nan_weights(tensors):
    name = next(k for k in tensors if k.startswith("clf.") and k.endswith(".w"))
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    return tensors


def _walk_card(lab, name, directions):
    """A walk card (JSON + tensors) with the given directions, its pin correct."""
    import hashlib

    from safetensors.torch import save_file

    folder = received(lab).folder(name)
    save_file({"directions": directions}, str(folder / "walks.safetensors"))
    card = {
        "fairgen_card": "walks",
        "version": 1,
        "generator": {"name": lab.generator.name, "sha256": lab.generator.checksum},
        "transformations": ["a"],
        "alpha_ranges": {"a": [-1.0, 1.0]},
        "per_class": False,
        "latent_dim": lab.generator.latent_dim,
        "tensors": {
            "file": "walks.safetensors",
            "sha256": hashlib.sha256((folder / "walks.safetensors").read_bytes()).hexdigest(),
        },
    }
    (folder / "walks.json").write_text(json.dumps(card))
    return folder / "walks.json"


def _load_walks(make):
    def run(lab):
        from fairgen.walks import load_walks

        load_walks(make(lab), generator=lab.generator)

    return run


def _labeler(text: bytes):
    def run(lab):
        from fairgen.labelers import load_labeler

        path = received(lab).folder("labeler") / "labeler.json"
        path.write_bytes(text)
        load_labeler(str(path), generator=lab.generator)

    return run


ENTRY = "--allow-entry-point"  # the flag a refusal must name

CASES += [
    # ------------------------------------------------------------ code from received files
    (
        "i18a cli: spec runs torch.hub:load with a hubconf beside it",
        "cli",
        guarded(_train(_hub_spec("hub", lambda folder: str(folder / "hub")))),
        ENTRY,
    ),
    (
        "i18a cli: spec runs torch.hub:load (relative hub folder)",
        "cli",
        guarded(
            cli(
                "stream",
                "--spec",
                _hub_spec("hub-rel", lambda folder: "hub"),
                "--export",
                lambda lab: received(lab).folder("x1"),
                "--n",
                "2",
                "--batch-size",
                "2",
            )
        ),
        ENTRY,
    ),
    (
        "i18a cli: spec names this:s",
        "cli",
        guarded(_train(_spec_out("this", generator="this:s"))),
        ENTRY,
    ),
    (
        "i18a cli: spec names logging:basicConfig writing a file",
        "cli",
        guarded(
            _train(
                lambda lab: received(lab).spec(
                    "logging",
                    generator="logging:basicConfig",
                    generator_options=_basic_config_options(lab),
                )
            )
        ),
        ENTRY,
    ),
    (
        "i18a api: StreamSpec.load of a spec naming this:s",
        "api",
        guarded(_stream_of(_spec_out("this-api", generator="this:s"))),
        "allow_entry_points",
    ),
    (
        "i18a cli: checkpoint whose run names logging:basicConfig",
        "cli",
        guarded(
            _resume(
                lambda lab: received(lab).checkpoint_naming(
                    "ckpt-logging",
                    {
                        "generator": "logging:basicConfig",
                        "generator_options": _basic_config_options(lab),
                    },
                )
            )
        ),
        ENTRY,
    ),
    (
        "i18a cli: checkpoint whose run names this:s",
        "cli",
        guarded(
            _resume(
                lambda lab: received(lab).checkpoint_naming("ckpt-this", {"generator": "this:s"})
            )
        ),
        ENTRY,
    ),
    # ------------------------------------------------------------ reads outside the card's folder
    (
        "i18a api: missing tensors, card.safetensors a link out of the folder",
        "api",
        guarded(_load_card(_linked_tensors), outside="card.safetensors"),
        "resolves outside",
    ),
    (
        "i18a cli: generator_options.weights naming a file outside",
        "cli",
        guarded(
            _train(
                lambda lab: received(lab).spec(
                    "weights-out",
                    generator_options={"weights": str(received(lab).outside / "secret.txt")},
                )
            ),
            outside="secret.txt",
        ),
        "inside the card's folder",
    ),
    (
        "i18a cli: generator_options.weights climbing out with ..",
        "cli",
        guarded(
            _train(_spec_out("weights-up", generator_options={"weights": "../outside/secret.txt"})),
            outside="secret.txt",
        ),
        "inside the card's folder",
    ),
    (
        "i18a api: generator a link to weights outside the folder",
        "api",
        guarded(_stream_of(_linked_generator), outside="generator.safetensors"),
        "resolves outside",
    ),
    (
        "i18a api: generator file found only in the current directory",
        "api",
        guarded(_cwd_generator),
        "unknown generator",
    ),
    (
        "i18a api: local generator whose pin does not match (checked before loading)",
        "api",
        guarded(_stream_of(_local_generator("pinned", lambda lab: "0" * 64))),
        "nothing was loaded",
    ),
    (
        "i18a api: local generator without a pin",
        "api",
        guarded(_stream_of(_local_generator("unpinned", lambda lab: ""))),
        "not pinned",
    ),
    (
        "i18a cli: checkpoint's stream names an eraser outside its run folder",
        "cli",
        guarded(
            _resume(
                lambda lab: received(lab).checkpoint_naming(
                    "ckpt-eraser",
                    {
                        "eraser": str(received(lab).outside / "secret.txt"),
                        "eraser_sha256": "0" * 64,
                    },
                )
            ),
            outside="secret.txt",
        ),
        "inside the card's folder",
    ),
    # ------------------------------------------------------------ strict, bounded JSON
    (
        "i18a cli: eraser card nested 100000 deep",
        "cli",
        guarded(
            cli(
                "stream",
                "--new",
                lambda lab: received(lab).folder("deep") / "s.json",
                "--eraser",
                lambda lab: lab.file("received/deep/card.json", _deep(100_000)),
            )
        ),
        "nests",
    ),
    (
        "i18a cli: stream spec nested 100000 deep",
        "cli",
        guarded(_train(lambda lab: lab.file("received/deep-spec/stream.json", _deep(100_000)))),
        "nests",
    ),
    (
        "i18a api: labeler.json nested 100000 deep",
        "api",
        guarded(_labeler(_deep(100_000))),
        "nests",
    ),
    (
        "i18a api: eraser card of 17 MB",
        "api",
        guarded(
            _load_card(
                lambda lab: lab.file("received/big/card.json", b"{" + b" " * (17 << 20) + b"}")
            )
        ),
        "at most",
    ),
    (
        "i18a api: spec with a duplicate key",
        "api",
        guarded(
            _stream_of(
                lambda lab: lab.file(
                    "received/dup/stream.json",
                    json.dumps(lab.spec_dict)[:-1].encode() + b', "seed": 7}',
                )
            )
        ),
        "appears twice",
    ),
    (
        "i18a api: spec with a NaN class weight",
        "api",
        guarded(
            _stream_of(
                lambda lab: lab.file(
                    "received/nan/stream.json",
                    json.dumps(
                        {**lab.spec_dict, "classes": [0, 1], "class_weights": [1.0, float("nan")]}
                    ).encode(),
                )
            )
        ),
        "class_weights.1. is NaN",
    ),
    (
        "i18a api: eraser card with Infinity",
        "api",
        guarded(
            _load_card(
                lambda lab: received(lab).card(
                    "inf", edit_json=lambda c: json.dumps(c)[:-1] + ', "samples": Infinity}'
                )
            )
        ),
        "Infinity",
    ),
    # ------------------------------------------------------------ card tensors checked before use
    (
        "i18a api: card tensors with a garbage header",
        "api",
        guarded(
            _load_card(
                lambda lab: received(lab).card(
                    "garbage",
                    edit_tensors=lambda t: b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}",
                )
            )
        ),
        "not a readable safetensors",
    ),
    (
        "i18a api: card tensors truncated",
        "api",
        guarded(
            _load_card(
                lambda lab: received(lab).card(
                    "truncated",
                    edit_tensors=lambda t: (lab.folder / "card.safetensors").read_bytes()[:-40],
                )
            )
        ),
        "not a readable safetensors",
    ),
    (
        "i18a api: card tensors in float16",
        "api",
        guarded(_load_card(lambda lab: received(lab).card("half", edit_tensors=_half), use=True)),
        "F16",
    ),
    (
        "i18a api: card accept table as int64",
        "api",
        guarded(
            _load_card(
                lambda lab: received(lab).card(
                    "int-accept", edit_tensors=lambda t: {**t, "accept": t["accept"].long()}
                ),
                use=True,
            )
        ),
        "accept",
    ),
    (
        "i18a api: card with NaN classifier weights",
        "api",
        guarded(
            _load_card(
                lambda lab: received(lab).card("nan-weights", edit_tensors=_nan_weights), use=True
            )
        ),
        "NaN",
    ),
    (
        "i18a api: card tensors without 'accept'",
        "api",
        guarded(
            _load_card(
                lambda lab: received(lab).card(
                    "no-accept",
                    edit_tensors=lambda t: {k: v for k, v in t.items() if k != "accept"},
                ),
                use=True,
            )
        ),
        "accept",
    ),
    (
        "i18a api: card without its latent_dim",
        "api",
        guarded(
            _load_card(
                lambda lab: received(lab).card(
                    "no-dim",
                    edit_json=lambda c: {
                        **c,
                        "steerer": {k: v for k, v in c["steerer"].items() if k != "latent_dim"},
                    },
                ),
                use=True,
            )
        ),
        "latent_dim",
    ),
    (
        "i18a api: card claiming a million classes",
        "api",
        guarded(
            _load_card(
                lambda lab: received(lab).card(
                    "million",
                    edit_json=lambda c: {
                        **c,
                        "steerer": {**c["steerer"], "num_classes": 10**6},
                    },
                ),
                use=True,
            )
        ),
        "num_classes",
    ),
    (
        "i18a api: walk card with NaN directions",
        "api",
        guarded(
            _load_walks(
                lambda lab: _walk_card(
                    lab, "walk-nan", torch.full((1, 1, lab.generator.latent_dim), float("nan"))
                )
            )
        ),
        "NaN",
    ),
    # ------------------------------------------------------------ strings escaped for the terminal
    (
        "i18a cli: ANSI escapes in a spec's fairgen_version",
        "cli",
        guarded(_train(_spec_out("ansi", fairgen_version="\x1b[2J\x1b[31mfake", resolution=30000))),
        "resolution",
    ),
    (
        "i18a cli: ANSI escapes in an eraser card's generator name",
        "cli",
        guarded(
            cli(
                "stream",
                "--new",
                lambda lab: received(lab).folder("ansi-card") / "s.json",
                "--eraser",
                lambda lab: received(lab).card(
                    "ansi-card",
                    edit_json=lambda c: {
                        **c,
                        "generator": {"name": "red", "sha256": "\x1b[31m" + "0" * 64},
                    },
                ),
            )
        ),
        "fitted on",
    ),
]


# ============================================================ issue 18, part B (branch i18b):
# images, outputs, numbers
# Images decoded right or refused, outputs written whole by one writer (locks, disk full), honest
# audit numbers.
# Error cases join CASES; cases whose right answer is not an error (a silent wrong result before)
# are RIGHT_CASES:
# ``(name, check)`` where ``check(lab)`` returns True when the result is right.


def _photos(lab: Lab, name: str, odd: tuple[str, bytes] | None = None, bits: int = 8) -> Path:
    """``name/kind=<a|b>/tone=<x|y>/<i>.png``: 24 images of 16x16 (``bits`` per channel), plus one
    odd file."""
    import numpy as np

    folder = lab.folder / name
    if not folder.exists():
        rng = np.random.default_rng(0)
        for i in range(24):
            image = rng.integers(0, 256, size=(16, 16, 3))
            path = folder / f"kind={'ab'[i % 2]}" / f"tone={'xy'[i // 12]}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png(image * (257 if bits == 16 else 1), bits))
        if odd is not None:
            lab.file(f"{name}/kind=a/tone=x/{odd[0]}", odd[1])
    return folder


def _tiny_encoder(lab: Lab) -> Path:
    path = lab.folder / "tiny_encoder.safetensors"
    if not path.exists():
        from fairgen.contrastive import TrainConfig
        from fairgen.contrastive.encoders import build_encoder
        from plumbing.files import save_safetensors

        config = TrainConfig(encoder="small_cnn")
        backbone, _ = build_encoder(config.encoder, config.small_images)
        save_safetensors(backbone.state_dict(), path, metadata={"config": config.to_dict()})
    return path


def _gif(frames: int) -> bytes:
    import io

    from PIL import Image

    images = [Image.new("RGB", (16, 16), (40 * i, 0, 0)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:])
    return buffer.getvalue()


def _float_tiff() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), dtype=np.float32)).save(buffer, format="TIFF")
    return buffer.getvalue()


def _audit_photos(name, odd=None):
    return cli(
        "audit",
        "--encoder",
        _tiny_encoder,
        "--data",
        lambda lab: _photos(lab, name, odd),
        "--target",
        "kind",
        "--protected",
        "tone",
        "--permutations",
        "19",
        "--bootstrap",
        "20",
        "--out",
        lambda lab: lab.folder / f"a-{name}",
    )


def _locked(name: str):
    """An output folder whose lock is held by a live process (pid 1) on this host."""

    def path(lab: Lab) -> Path:
        import socket

        lab.file(
            f".{name}.lock",
            json.dumps(
                {
                    "pid": 1,
                    "host": socket.gethostname(),
                    "command": "fairgen train",
                    "started": "earlier",
                }
            ).encode(),
        )
        return lab.folder / name

    return path


def _with_foreign_file(name: str):
    def path(lab: Lab) -> Path:
        lab.file(f"{name}/thesis.tex", b"not fairgen's")
        return lab.folder / name

    return path


def _disk_full(run):
    """Run a case with every output write failing with ENOSPC."""

    def with_full_disk(lab: Lab):
        import errno
        import os

        from plumbing import outputs

        def full(*args):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        original, outputs._write_chunk = outputs._write_chunk, full
        try:
            return run(lab)
        finally:
            outputs._write_chunk = original

    return with_full_disk


def _shard_with_huge_json(lab: Lab) -> Path:
    import io
    import tarfile

    path = lab.folder / "huge-json" / "shard-000000.tar"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w") as tar:
            for name, data in (
                ("0.png", png([[[1, 2, 3]]])),
                ("0.json", b'{"a": "' + b"x" * (2 << 20) + b'"}'),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path.parent


def _export(out):
    return cli(
        "stream",
        "--spec",
        lambda lab: lab.spec,
        "--export",
        out,
        "--n",
        "2",
        "--batch-size",
        "2",
        "--quiet",
    )


def _card_again(lab: Lab, note: str = "again"):
    """Save the lab's card again, with one more provenance field (so its JSON changes)."""
    import steering

    steerer, _ = steering.load_card(lab.card)
    return steering.save_card(
        steerer,
        lab.folder / "card",
        {"generator": {"name": lab.generator.name, "sha256": lab.generator.checksum}, "note": note},
    )


CASES += [
    (
        "cli: audit on a PNG declaring 20000x20000 pixels",
        "cli",
        _audit_photos("bomb", ("bomb.png", png([[[1, 2, 3]]], size=(20000, 20000)))),
        "declares 400,000,000 pixels",
    ),
    (
        "cli: audit on an animated GIF",
        "cli",
        _audit_photos("gif", ("anim.gif", _gif(3))),
        r"anim\.gif .*is animated \(3 frames\)",
    ),
    (
        "cli: audit on a truncated PNG",
        "cli",
        _audit_photos("cut", ("cut.png", png([[[1, 2, 3]] * 4] * 4)[:50])),
        r"cut\.png .*cannot be read",
    ),
    (
        "cli: audit on a 32-bit float TIFF",
        "cli",
        _audit_photos("float", ("f.tif", _float_tiff())),
        "32-bit float",
    ),
    (
        "cli: audit on a shard with a 2 MB .json",
        "cli",
        cli(
            "audit",
            "--encoder",
            _tiny_encoder,
            "--data",
            _shard_with_huge_json,
            "--target",
            "class",
            "--protected",
            "a",
            "--out",
            OUT,
        ),
        "at most",
    ),
    (
        "cli: train into an --out another process is writing",
        "cli",
        cli(
            "train",
            "--spec",
            lambda lab: lab.spec,
            "--out",
            _locked("busy-run"),
            "--steps",
            "1",
            "--batch-size",
            "4",
        ),
        "being written by pid 1 .*fairgen train",
    ),
    (
        "cli: steer into a card another process is writing",
        "cli",
        cli(
            "steer",
            "--n",
            "100",
            "--out",
            lambda lab: _locked("eraser_card.json")(lab).parent,  # --out is the card's folder
        ),
        "being written by pid 1",
    ),
    (
        "cli: export into a folder holding other files",
        "cli",
        _export(_with_foreign_file("thesis")),
        "did not write",
    ),
    (
        "cli: audit report into a folder holding other files",
        "cli",
        cli(
            "audit",
            "--encoder",
            _tiny_encoder,
            "--data",
            lambda lab: _photos(lab, "plain"),
            "--target",
            "kind",
            "--protected",
            "tone",
            "--permutations",
            "19",
            "--bootstrap",
            "20",
            "--out",
            _with_foreign_file("notes"),
        ),
        "did not write",
    ),
    (
        "cli: sample on a full disk",
        "cli",
        _disk_full(cli("sample", "--n", "4", "--out", lambda lab: lab.folder / "full-grid")),
        "disk full while writing",
    ),
    (
        "cli: export on a full disk",
        "cli",
        _disk_full(_export(lambda lab: lab.folder / "full-export")),
        "disk full while writing",
    ),
    (
        "cli: train on a full disk",
        "cli",
        _disk_full(
            cli(
                "train",
                "--spec",
                lambda lab: lab.spec,
                "--out",
                lambda lab: lab.folder / "full-run",
                "--steps",
                "1",
                "--batch-size",
                "4",
                "--quiet",
            )
        ),
        "disk full while writing",
    ),
    (
        "cli: audit --max-pixels 0",
        "cli",
        cli(
            "audit",
            "--encoder",
            _tiny_encoder,
            "--data",
            lambda lab: _photos(lab, "plain"),
            "--target",
            "kind",
            "--protected",
            "tone",
            "--max-pixels",
            "0",
            "--out",
            OUT,
        ),
        "argument --max-pixels: expected a positive integer",
    ),
    (
        "cli: audit --max-pixels below the images' size",
        "cli",
        cli(
            "audit",
            "--encoder",
            _tiny_encoder,
            "--data",
            lambda lab: _photos(lab, "plain"),
            "--target",
            "kind",
            "--protected",
            "tone",
            "--max-pixels",
            "100",
            "--out",
            OUT,
        ),
        "more than the 100 allowed",
    ),
    (
        "api: load_data with max_pixels 0",
        "api",
        api(
            lambda lab: __import__("fairgen.data").data.load_data(
                _photos(lab, "plain"), max_pixels=0
            )
        ),
        "max_pixels",
    ),
    (
        "api: images over a small pixel cap",
        "api",
        api(
            lambda lab: next(
                __import__("fairgen.data")
                .data.load_data(_photos(lab, "plain"), max_pixels=100)
                .images()
            )
        ),
        "16x16 = 256 pixels, more than the 100 allowed",
    ),
    ("api: save_card on a full disk", "api", _disk_full(_card_again), "disk full while writing"),
    (
        "api: AuditReport.save into a folder holding other files",
        "api",
        api(
            lambda lab: (
                __import__("audits").AuditReport().save(_with_foreign_file("report-notes")(lab))
            )
        ),
        "did not write",
    ),
]


def _same_tensors_as_8_bit_twin(lab: Lab) -> bool:
    from fairgen.data import load_data

    eight, sixteen = (
        torch.cat(list(load_data(_photos(lab, f"twin{b}", bits=b)).images())) for b in (8, 16)
    )
    return torch.equal(eight, sixteen)


def _transparent_reads_white(lab: Lab) -> bool:
    import numpy as np

    from fairgen.data import load_data

    hidden = np.dstack([np.full((16, 16, 3), 7), np.zeros((16, 16))])  # dark pixels under alpha 0
    lab.file("clear/kind=a/0.png", png(hidden, 8, 6))
    lab.file("clear/kind=b/1.png", png(hidden, 8, 6))
    return bool((torch.cat(list(load_data(lab.folder / "clear").images())) == 1).all())


def _few_permutations_are_inconclusive(lab: Lab) -> bool:
    import numpy as np

    from audits import AuditReport, leakage

    rng = np.random.default_rng(0)
    result = leakage(
        rng.normal(size=(100, 4)),
        rng.integers(0, 2, 100),
        probe="lda",
        n_permutations=9,
        n_repeats=1,
    )
    text = AuditReport().add("x", result).to_markdown()
    return "no leakage detected" not in text and result.verdict.startswith("inconclusive")


def _one_positive_is_flagged(lab: Lab) -> bool:
    import numpy as np

    from audits import group_fairness

    y_true = np.array([1] * 30 + [0] * 30 + [1] + [0] * 29)
    y_pred = np.concatenate([y_true[:60], np.zeros(30, dtype=int)])
    train_x = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0] * 4)[:, None]
    test_x = np.where(y_pred == 1, 2.0, -2.0)[:, None]
    result = group_fairness(
        train_x,
        (train_x[:, 0] > 0).astype(int),
        test_x,
        y_true,
        ["a"] * 60 + ["b"] * 30,
        n_bootstrap=50,
    )
    s = result.summary
    return s["small_groups"] == ["b: tpr[1] from 1 positives"] and s["equalized_odds_ci_high"] <= 1


def _card_rewrite_spares_hard_links(lab: Lab) -> bool:
    import os

    card = lab.card
    linked = lab.folder / "linked" / "card.json"
    linked.parent.mkdir(exist_ok=True)
    linked.unlink(missing_ok=True)
    os.link(card, linked)
    before = linked.read_bytes()
    _card_again(lab, note=f"rewritten over {len(before)} bytes")
    modes = {(lab.folder / n).stat().st_mode & 0o777 for n in ("card.json", "card.safetensors")}
    return linked.read_bytes() == before and card.read_bytes() != before and len(modes) == 1


RIGHT_CASES = [
    ("16-bit PNGs read as their 8-bit twins (not white)", _same_tensors_as_8_bit_twin),
    ("a fully transparent PNG reads as white, not its hidden colour", _transparent_reads_white),
    ("--permutations 9 never says 'no leakage detected'", _few_permutations_are_inconclusive),
    (
        "an EO difference of 1 from one positive is flagged; its CI stays in [0, 1]",
        _one_positive_is_flagged,
    ),
    (
        "a card rewritten spares a hard-linked copy; both files get one mode",
        _card_rewrite_spares_hard_links,
    ),
]
