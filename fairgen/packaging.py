"""Packaging a stream spec: pinning the files it names by SHA-256 and placing them beside it.

``make_spec`` pins a loaded generator and its eraser/walk cards; ``StreamSpec.save`` copies (or
hard-links) each local file into the spec's folder so the folder travels as a whole;
``received`` resolves the files a received spec names inside its folder, never outside;
``check_pin_before_loading`` refuses a local generator whose bytes differ from the pin.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .entry_points import is_entry_point
from .spec import StreamSpec


def save_spec(spec: StreamSpec, path: str | Path) -> Path:
    """Write the spec as JSON. Local files it names (the eraser card, a generator folder or file)
    are written as paths relative to the spec's folder; one lying outside that folder is first
    copied beside the spec (hard-linked where possible), so the folder travels as a whole."""
    from plumbing.files import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if spec.eraser is not None:
        _bring_card(spec.eraser, path.parent)
    if spec.walks is not None:
        _bring_walk_card(spec.walks, path.parent)
    if _names_local_file(spec.generator):
        _bring(Path(spec.generator), path.parent)
    atomic_write_text(path, json.dumps(portable_dict(spec, path.parent), indent=2))
    return path


def portable_dict(spec: StreamSpec, folder: str | Path) -> dict:
    """The spec as ``save`` writes it into ``folder``: local files named relative to it, as they
    will be once placed there (nothing is copied)."""
    from steering.card import card_paths

    from .walks import walk_card_paths

    data = spec.to_dict()
    data["generator_options"] = _options_relative(spec.generator_options, Path(folder))
    if spec.eraser is not None:
        data["eraser"] = _placed_name(card_paths(spec.eraser)[0], Path(folder))
    if spec.walks is not None:
        data["walks"] = _placed_name(walk_card_paths(spec.walks)[0], Path(folder))
    if _names_local_file(spec.generator):
        data["generator"] = _placed_name(Path(spec.generator), Path(folder))
    return data


# option names that hold a file or folder (and any value that looks like a path)
TEXT_OPTIONS = {"prompts"}  # option names whose strings are text, never paths ("a cat/dog")
PATH_OPTIONS = {
    "weights",
    "weights_dir",
    "cache_dir",
    "repo_or_dir",
    "path",
    "file",
    "dir",
    "config",
    "root",
}


def received(data: dict, folder, allow_entry_points) -> dict:
    """``data`` with its entry point checked and (given ``folder``) its file names resolved inside
    ``folder``."""
    from plumbing.files import resolve_inside

    from .entry_points import check_allowed
    from .generators import list_generators

    data = dict(data)
    where = "stream spec" if folder is None else f"stream spec in {folder}"
    generator = data.get("generator")
    if is_entry_point(generator):
        check_allowed(generator, allow_entry_points, where)
    if folder is None:
        return data
    for key in ("eraser", "walks"):
        if data.get(key) is not None:
            data[key] = str(resolve_inside(folder, data[key], f"{where}: {key}"))
    if (
        isinstance(generator, str)
        and not is_entry_point(generator)
        and generator not in list_generators()
    ):
        data["generator"] = str(
            resolve_inside(folder, generator, f"{where}: generator")
        )  # never the current directory
        if not data.get("generator_sha256"):
            raise ValueError(
                f"{where}: the local generator {generator!r} is not pinned (generator_sha256 is "
                "empty)"
            )
    if isinstance(data.get("generator_options"), dict):
        data["generator_options"] = _options_inside(
            data["generator_options"], folder, f"{where}: generator_options"
        )
    return data


def _options_inside(options: dict, folder, where: str) -> dict:
    """Generator options from a card, with every path-like string resolved inside ``folder``."""
    from plumbing.files import resolve_inside

    def fix(key, value):
        if isinstance(value, dict):
            return {k: fix(str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(key, v) for v in value]
        if key in TEXT_OPTIONS:
            return value
        if isinstance(value, str) and (
            key in PATH_OPTIONS
            or key.endswith(("_dir", "_path", "_file"))
            or any(c in value for c in "/\\")
            or value.startswith((".", "~"))
        ):
            return str(resolve_inside(folder, value, f"{where}[{key!r}]"))
        return value

    return {str(k): fix(str(k), v) for k, v in options.items()}


def _names_local_file(generator: str) -> bool:
    return isinstance(generator, str) and not is_entry_point(generator) and Path(generator).exists()


def _options_relative(options: dict, folder: Path) -> dict:
    """Generator options with absolute paths inside ``folder`` written relative to it (others as
    they are)."""
    folder = folder.resolve()

    def fix(value):
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if (
            isinstance(value, str)
            and os.path.isabs(value)
            and folder in Path(value).resolve().parents
        ):
            return _placed_name(Path(value), folder)
        return value

    return fix(dict(options))


def _placed_name(source: Path, folder: Path) -> str:
    """How a spec in ``folder`` names ``source`` once ``_bring`` has placed it there."""
    from plumbing.files import relative_to_card

    source, folder = Path(source).resolve(), Path(folder).resolve()
    return relative_to_card(source, folder) if folder in source.parents else source.name


def _bring(source: Path, folder: Path) -> str:
    """``source`` as a path relative to ``folder``; copied (or hard-linked) in first if it lies
    outside."""
    import shutil

    from plumbing.files import relative_to_card, sha256_file

    source, folder = source.resolve(), folder.resolve()
    if folder in source.parents:
        return relative_to_card(source, folder)
    target = folder / source.name
    if target.exists():
        same = (
            sha256_file(target) == sha256_file(source)
            if source.is_file()
            else all(
                (target / f.relative_to(source)).is_file()
                and sha256_file(target / f.relative_to(source)) == sha256_file(f)
                for f in source.rglob("*")
                if f.is_file()
            )
        )
        if not same:
            raise ValueError(
                f"cannot place {source} beside the spec: {target} already exists with other content"
            )
        return target.name

    def link_or_copy(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    if source.is_dir():
        shutil.copytree(source, target, copy_function=link_or_copy)
    else:
        link_or_copy(source, target)
    return target.name


def _bring_card(eraser: str, folder: Path) -> str:
    """The eraser card's JSON (and the tensors file it names) beside the spec; its relative name."""
    from steering.card import card_paths, card_tensors, read_card

    json_path, _ = card_paths(eraser)
    tensors = card_tensors(read_card(json_path), json_path)
    if not tensors.is_file():
        raise FileNotFoundError(f"eraser card tensors {tensors} do not exist")
    name = _bring(json_path, folder)
    _bring(tensors, (folder / name).parent)
    return name


def _bring_walk_card(walks: str, folder: Path) -> str:
    """The walk card's JSON (and the tensors file it names) beside the spec; its relative name."""
    from plumbing.files import resolve_inside

    from .walks import read_walk_card, walk_card_paths

    json_path, _ = walk_card_paths(walks)
    entry = read_walk_card(json_path).get("tensors") or {}
    tensors = resolve_inside(
        json_path.parent, entry.get("file"), f"walk card {json_path.name} tensors"
    )
    if not tensors.is_file():
        raise FileNotFoundError(f"walk card tensors {tensors} do not exist")
    name = _bring(json_path, folder)
    _bring(tensors, (folder / name).parent)
    return name


def check_pin_before_loading(spec: StreamSpec) -> None:
    """A local generator file or folder is checked against the spec's SHA-256 before it is
    loaded."""
    from .generators.registry import local_checksum

    if not spec.generator_sha256 or not _names_local_file(spec.generator):
        return
    checksum = local_checksum(Path(spec.generator))
    if checksum is not None and checksum != spec.generator_sha256:
        raise ValueError(
            f"generator {spec.generator!r} has SHA-256 {checksum}, but the spec pins "
            f"{spec.generator_sha256}; nothing was loaded from it"
        )


def make_spec(
    generator,
    eraser: str | Path | None = None,
    walks: str | Path | None = None,
    source: str | None = None,
    **settings,
) -> StreamSpec:
    """A spec for a loaded generator (and eraser and walk cards), pinning each by SHA-256.

    ``source`` is how the spec names the generator (a registry name, an entry point or a local
    path, as given to ``load_generator``); by default the generator's own name."""
    from plumbing.files import sha256_file

    if eraser is not None:
        from steering.card import card_paths, read_card

        json_path, _ = card_paths(eraser)
        card = read_card(json_path)
        fitted_on = (card.get("generator") or {}).get("sha256")
        if fitted_on != generator.checksum:
            raise ValueError(
                f"eraser card {json_path} was fitted on a generator with SHA-256 {fitted_on}, "
                f"not on {generator.name!r} ({generator.checksum})"
            )
        settings.update(eraser=str(json_path), eraser_sha256=sha256_file(json_path))
        if card.get("guarantee") == "confirmed" and settings.get("labelers") is None:
            settings["labelers"] = card_labelers(card, json_path)
    if walks is not None:
        from .walks import walk_card_paths

        json_path, _ = walk_card_paths(walks)
        if not json_path.is_file():
            raise FileNotFoundError(f"walk card {json_path} does not exist")
        settings.update(walks=str(json_path), walks_sha256=sha256_file(json_path))
    return StreamSpec(
        generator=str(source or generator.name), generator_sha256=generator.checksum, **settings
    )


def card_labelers(card: dict, path) -> dict:
    """``{attribute: labeler name}`` a confirmed eraser card was fitted with (its ``"labelers"``
    entry)."""
    labelers = card.get("labelers")
    if (
        not isinstance(labelers, dict)
        or not labelers
        or not all(isinstance(v, str) for v in labelers.values())
    ):
        raise ValueError(
            f"eraser card {path} is labeler-confirmed but does not name its labelers "
            "('labelers': {attribute: name}); refit it with `fairgen steer --method confirmed`"
        )
    return dict(labelers)
