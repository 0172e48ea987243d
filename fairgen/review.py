"""``fairgen review``: the images a person checks, so the labeler's error can be measured.

``write_review`` draws a pool of generated images (the card's generator, seeded), labels them with
the labeler, and picks ``n`` so that every (class, labeler output) cell is covered: at least
``min_per_cell`` from each (all of a cell that holds fewer), the rest in proportion to the cells'
sizes in the pool. It writes them as PNGs with ``items.json`` and a static ``index.html`` (inline
JS/CSS, no network) that shows each image, takes the person's label by button or key, and saves
the labels as a CSV. The page does not show the labeler's output (it would anchor the person).
``read_review`` turns that CSV into the verified set (``fairgen.verified``), with the pool's cell
counts so the error model can undo the stratification.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

FORMAT = "fairgen_review"
VERSION = 1
REPLACEABLE = ("items.json", "index.html", "images")
MAX_REVIEW = 5000  # a person labels hundreds; thousands of PNGs is a data set, not a review


def stratified_pick(cells: np.ndarray, n: int, n_cells: int, min_per_cell: int, seed: int = 0):
    """Indices of ``n`` rows of ``cells`` (a cell id per pooled row): ``min_per_cell`` from every
    cell (all of a smaller one), the rest proportional to the cells' sizes (largest remainders)."""
    rng = np.random.default_rng(seed)
    members = [rng.permutation(np.flatnonzero(cells == c)) for c in range(n_cells)]
    sizes = np.array([len(m) for m in members])
    n = min(n, int(sizes.sum()))
    take = np.minimum(sizes, min_per_cell)
    if take.sum() > n:
        raise ValueError(
            f"--n {n} is too small to give {min_per_cell} images to each of the "
            f"{int((sizes > 0).sum())} non-empty (class, labeler output) cells; raise --n or lower "
            "--min-per-cell"
        )
    left = n - int(take.sum())
    room = sizes - take
    if left and room.sum():
        share = left * room / room.sum()
        extra = np.minimum(np.floor(share).astype(int), room)
        order = np.argsort(-(share - extra), kind="stable")
        for c in order:  # hand out the rest by largest remainder, where there is room
            if extra.sum() >= left:
                break
            if extra[c] < room[c]:
                extra[c] += 1
        take = take + extra
    picked = np.concatenate([m[:t] for m, t in zip(members, take, strict=True)])
    return np.sort(picked)


def write_review(
    card,
    out,
    *,
    labeler: str | None = None,
    n: int = 200,
    min_per_cell: int = 5,
    pool: int | None = None,
    seed: int = 0,
    generator: str | None = None,
    values: list[str] | None = None,
    device="cpu",
    batch_size: int = 256,
) -> dict:
    """Draw, label and pick the images to review for ``card``; write ``out/`` whole. Returns the
    review's description (what ``items.json`` holds)."""
    from plumbing.outputs import staged_folder
    from steering.card import card_paths, read_card

    from .generators import load_generator
    from .labelers import load_labeler
    from .verified import card_sha256

    if not 1 <= n <= MAX_REVIEW:
        raise ValueError(f"--n must be in 1..{MAX_REVIEW}, got {n}")
    if min_per_cell < 1:
        raise ValueError(f"--min-per-cell must be at least 1, got {min_per_cell}")
    pool = pool or max(2000, 10 * n)
    if pool < n:
        raise ValueError(f"--pool {pool} must be at least --n {n}")
    card_json, _ = card_paths(card)
    info = read_card(card_json)
    attribute = info.get("protected")
    if not isinstance(attribute, str):
        raise ValueError(
            f"--card {card_json}: review checks one protected attribute, and this card steers "
            f"{attribute!r}"
        )
    gen_info = info.get("generator") or {}
    name = generator or gen_info.get("name")
    from .entry_points import is_entry_point

    if generator is None and is_entry_point(str(name)) and not Path(str(name)).exists():
        raise ValueError(
            f"--card {card_json} names the entry point {name!r} as its generator; a card never "
            "runs code: give --generator to run it"
        )
    gen = load_generator(name, device=device, **(gen_info.get("options") or {}))
    if gen_info.get("sha256") and gen.checksum != gen_info["sha256"]:
        raise ValueError(
            f"--card {card_json} was fitted on generator weights with SHA-256 "
            f"{gen_info['sha256']}, but {name} has {gen.checksum}"
        )
    spec = labeler or _card_labeler(info, card_json)
    lab = load_labeler(spec, generator=gen, device=device)

    rng = torch.Generator().manual_seed(seed)
    z = gen.sample_latents(pool, generator=rng)
    y = torch.arange(pool) % gen.num_classes if gen.num_classes else None
    outputs, scores = _label_pool(gen, lab, z, y, batch_size)
    k = _value_count(values, lab, info, outputs, scores)
    names = values or lab.values or (info.get("labeler") or {}).get("values")
    names = [str(v) for v in (names or range(k))]
    if len(names) != k or len(set(names)) != k:
        raise ValueError(f"--values: expected {k} distinct value names, got {names}")
    classes = y.numpy() if y is not None else np.zeros(pool, dtype=np.int64)
    n_classes = max(gen.num_classes, 1)
    cells = classes * k + outputs
    pool_counts = np.bincount(cells, minlength=n_classes * k).reshape(n_classes, k)
    picked = stratified_pick(cells, n, n_classes * k, min_per_cell, seed)
    drawn = np.bincount(cells[picked], minlength=n_classes * k).reshape(n_classes, k)

    review = {
        FORMAT: VERSION,
        "attribute": attribute,
        "values": names,
        "card": {"file": card_json.name, "sha256": card_sha256(card_json)},
        "generator": {"name": str(name), "sha256": gen.checksum, "num_classes": gen.num_classes},
        "labeler": lab.provenance(),
        "seed": seed,
        "pool": pool,
        "min_per_cell": min_per_cell,
        "pool_counts": pool_counts.tolist(),
        "drawn_counts": drawn.tolist(),
        "empty_cells": [
            [int(c), names[v]] for c, v in zip(*np.nonzero(pool_counts == 0), strict=True)
        ],
        "items": [],
    }
    with staged_folder(out, REPLACEABLE, "fairgen review") as stage:
        (stage / "images").mkdir()
        for start in range(0, len(picked), batch_size):
            part = picked[start : start + batch_size]
            zb = z[part].to(gen.device)
            yb = None if y is None else y[part].to(gen.device)
            images = gen.synthesize(zb, yb).clamp(0, 1).cpu()
            for j, i in enumerate(part.tolist()):
                item_id = f"{len(review['items']):04d}"
                _save_png(images[j], stage / "images" / f"{item_id}.png")
                item = {
                    "id": item_id,
                    "file": f"images/{item_id}.png",
                    "class": int(classes[i]),
                    "output": int(outputs[i]),
                    "seed": seed,
                    "index": int(i),
                    "latent": [float(v) for v in z[i].reshape(-1)],
                }
                if scores is not None:
                    item["scores"] = [float(s) for s in scores[i]]
                review["items"].append(item)
        (stage / "items.json").write_text(json.dumps(review, indent=1) + "\n")
        (stage / "index.html").write_text(review_page(review))
    return review


def read_review(folder) -> dict:
    """``items.json`` of a review folder, read strictly, with its structure checked."""
    from plumbing.files import read_json

    path = Path(folder) / "items.json"
    review = read_json(path, "--review: items file")
    where = f"--review: {path}"
    if not isinstance(review, dict) or review.get(FORMAT) != VERSION:
        raise ValueError(f"{where} is not a fairgen review ({FORMAT!r}: {VERSION} missing)")
    for key, kind in (("values", list), ("items", list), ("card", dict), ("pool_counts", list)):
        if not isinstance(review.get(key), kind):
            raise ValueError(f"{where}: field {key!r} is missing or not a {kind.__name__}")
    if not isinstance(review["card"].get("sha256"), str):
        raise ValueError(f"{where}: field 'card' has no 'sha256'")
    return review


def verified_from_labels(review_folder, labels_csv):
    """The verified set from a review folder and the person's labels CSV (unlabelled items are
    left out)."""
    from .verified import VerifiedSet, read_label_csv

    review = read_review(review_folder)
    items = review["items"]
    ids = [str(item.get("id")) for item in items]
    labels = read_label_csv(labels_csv, ids, [str(v) for v in review["values"]])
    kept = [item for item in items if item["id"] in labels]
    scores = [item["scores"] for item in kept] if all("scores" in i for i in kept) else None
    try:
        return VerifiedSet(
            attribute=str(review.get("attribute")),
            values=[str(v) for v in review["values"]],
            card_sha256=review["card"]["sha256"],
            ids=[item["id"] for item in kept],
            classes=[item["class"] for item in kept],
            outputs=[item["output"] for item in kept],
            truths=[labels[item["id"]] for item in kept],
            scores=scores,
            latents=np.asarray([item["latent"] for item in kept], dtype=np.float64),
            draws=[{"seed": item["seed"], "index": item["index"]} for item in kept],
            pool_counts=np.asarray(review["pool_counts"], dtype=np.int64),
            provenance={
                "card": review["card"],
                "generator": review.get("generator"),
                "labeler": review.get("labeler"),
                "pool": review.get("pool"),
                "labelled": f"{len(kept)} of {len(items)} reviewed items",
            },
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"--review: {review_folder}/items.json has a malformed item ({error})"
        ) from None


def _card_labeler(info: dict, card_json: Path) -> str:
    """The labeler a card names, when it names one by a scheme (no code of its own to run)."""
    from .labelers.registry import names_registered_scheme

    spec = (info.get("labelers") or {}).get("protected")
    if spec is None or not names_registered_scheme(spec):
        raise ValueError(
            f"--card {card_json} names labeler {spec!r}; give it with --labeler (a card never "
            "runs code it names)"
        )
    return spec


@torch.no_grad()
def _label_pool(gen, lab, z, y, batch_size):
    """The labeler's outputs [N] on the pool, and its scores [N, k] when it gives scores."""
    from plumbing.validation import check_labeler_output

    outputs, scores = [], []
    for start in range(0, len(z), batch_size):
        zb = z[start : start + batch_size].to(gen.device)
        yb = None if y is None else y[start : start + batch_size].to(gen.device)
        raw = lab.fn(gen.synthesize(zb, yb))
        outputs.append(check_labeler_output(raw, len(zb), lab.name).cpu())
        is_scores = torch.is_tensor(raw) and raw.ndim == 2 and raw.is_floating_point()
        scores.append(raw.float().cpu() if is_scores else None)
    given = None if any(s is None for s in scores) else torch.cat(scores).numpy()
    return torch.cat(outputs).numpy(), given


def _value_count(values, lab, info, outputs, scores) -> int:
    for names in (values, lab.values, (info.get("labeler") or {}).get("values")):
        if names:
            return len(names)
    if scores is not None:
        return scores.shape[1]
    return max(int(outputs.max()) + 1, 2)


def _save_png(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(array).save(path, format="PNG")


def review_page(review: dict) -> str:
    """The static labelling page: the review's items inlined, no external file but the PNGs."""
    data = {
        "key": f"fairgen-review-{review['card']['sha256'][:16]}-{review['seed']}",
        "attribute": review["attribute"],
        "values": review["values"],
        "items": [{"id": item["id"], "file": item["file"]} for item in review["items"]],
    }
    inline = (
        json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    )
    return PAGE.replace("__DATA__", inline)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self' file: data:;
 style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>fairgen review</title>
<style>
body{font-family:sans-serif;margin:2em;background:#fafafa;color:#222}
#image{width:256px;height:256px;image-rendering:pixelated;border:1px solid #999;background:#fff}
#values button{margin:.3em;padding:.5em 1em;font-size:1.1em}
#values button.chosen{background:#2a6;color:#fff}
#bar{margin:1em 0}
.small{color:#666;font-size:.9em}
</style></head>
<body>
<h1>Label: <span id="attribute"></span></h1>
<p class="small">Pick the value you see (or press its number key). Left/right arrows move;
labels are kept in this browser until you save them. Unsure? Move on: unlabelled images are left
out.</p>
<div id="bar"><span id="position"></span> &middot; <span id="done"></span> labelled</div>
<img id="image" alt="image to label">
<div id="values"></div>
<p><button id="prev">&larr; previous</button> <button id="next">next &rarr;</button>
<button id="save">Save labels (CSV)</button> <a id="download" download="labels.csv"></a></p>
<script>
"use strict";
const DATA = __DATA__;
let labels = {};
try { labels = JSON.parse(localStorage.getItem(DATA.key) || "{}"); } catch (e) { labels = {}; }
let at = 0;
const $ = (id) => document.getElementById(id);
$("attribute").textContent = DATA.attribute;
DATA.values.forEach((value, i) => {
  const b = document.createElement("button");
  b.textContent = (i < 9 ? (i + 1) + ": " : "") + value;
  b.dataset.value = value;
  b.addEventListener("click", () => choose(value));
  $("values").appendChild(b);
});
function keep() { try { localStorage.setItem(DATA.key, JSON.stringify(labels)); } catch (e) {} }
function show() {
  const item = DATA.items[at];
  $("image").src = item.file;
  $("image").dataset.id = item.id;
  $("position").textContent =
    "image " + (at + 1) + " of " + DATA.items.length + " (id " + item.id + ")";
  $("done").textContent = Object.keys(labels).length;
  for (const b of $("values").children) {
    b.classList.toggle("chosen", labels[item.id] === b.dataset.value);
  }
}
function move(step) { at = Math.min(DATA.items.length - 1, Math.max(0, at + step)); show(); }
function choose(value) {
  labels[DATA.items[at].id] = value;
  keep();
  if (at < DATA.items.length - 1) move(1); else show();
}
function csvCell(text) {
  return /[",\\r\\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}
function save() {
  const rows = ["id,value"];
  for (const item of DATA.items) {
    if (item.id in labels) rows.push(csvCell(item.id) + "," + csvCell(labels[item.id]));
  }
  const blob = new Blob([rows.join("\\n") + "\\n"], {type: "text/csv"});
  const link = $("download");
  link.href = URL.createObjectURL(blob);
  link.textContent = "labels.csv";
  link.click();
}
$("prev").addEventListener("click", () => move(-1));
$("next").addEventListener("click", () => move(1));
$("save").addEventListener("click", save);
document.addEventListener("keydown", (e) => {
  const i = parseInt(e.key, 10);
  if (i >= 1 && i <= DATA.values.length) choose(DATA.values[i - 1]);
  else if (e.key === "ArrowLeft") move(-1);
  else if (e.key === "ArrowRight") move(1);
});
show();
</script>
</body></html>
"""
