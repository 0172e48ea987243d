"""View recipes (anchor / neighbour / flip latents) and exporting a stream to PNG folders or
WebDataset tars."""

import csv
import json
import math
import tarfile
from collections import defaultdict
from itertools import pairwise

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.io import decode_png

from fairgen import load_generator
from fairgen.export import export_stream
from fairgen.stream import Stream, StreamSpec
from fairgen.views import ViewRecipe, make_view_latents, truncated_normal

FEW = settings(max_examples=15, deadline=None)
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")


@pytest.fixture(scope="module")
def generator():
    return load_generator("world-sprites-32")


# ---------------------------------------------------------------- view recipes

recipes = st.builds(
    ViewRecipe,
    kinds=st.lists(st.sampled_from(["anchor", "neighbour", "flip"]), min_size=2, max_size=5),
    sigma=st.floats(1e-3, 5.0),
    truncate=st.floats(1e-3, 10.0),
)


@pytest.mark.parametrize(
    "bad",
    [
        {"kinds": ["anchor"]},  # V < 2
        {"kinds": []},
        {"kinds": "anchor"},
        {"kinds": ["anchor", "blur"]},
        {"sigma": 0.0},
        {"sigma": -0.5},
        {"sigma": math.nan},
        {"sigma": math.inf},
        {"truncate": 0.0},
        {"truncate": math.nan},
        {"truncate": "2"},
    ],
)
def test_invalid_view_recipes_raise_value_error(bad):
    with pytest.raises(ValueError):
        ViewRecipe(**bad)


@FEW
@given(recipe=recipes)
def test_view_recipe_survives_a_json_round_trip(recipe):
    assert ViewRecipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    assert recipe.num_views == len(recipe.kinds) >= 2
    assert recipe.needs_steerer == ("flip" in recipe.kinds)


def test_view_recipe_rejects_unknown_keys():
    with pytest.raises(ValueError, match="colour"):
        ViewRecipe.from_dict({"kinds": ["anchor", "anchor"], "colour": 1})


@FEW
@given(truncate=st.floats(1e-3, 10.0), n=st.integers(1, 5000), seed=st.integers(0, 2**32))
def test_truncated_normal_stays_within_bounds_and_is_deterministic(truncate, n, seed):
    draw = truncated_normal((n,), truncate, torch.Generator().manual_seed(seed))
    assert draw.shape == (n,) and draw.dtype == torch.float32
    assert max(abs(x) for x in draw.tolist()) <= truncate  # exact, in Python floats
    assert torch.equal(draw, truncated_normal((n,), truncate, torch.Generator().manual_seed(seed)))


def test_truncated_normal_has_the_truncated_normal_spread():
    draw = truncated_normal((200_000,), 1.0, torch.Generator().manual_seed(0))
    # a standard normal truncated to [-1, 1]: variance 1 - 2 phi(1) / (2 Phi(1) - 1) = 0.2911
    assert abs(float(draw.mean())) < 0.005
    assert abs(float(draw.std()) - math.sqrt(0.2911)) < 0.005
    assert float(
        truncated_normal((200_000,), 50.0, torch.Generator().manual_seed(0)).std()
    ) == pytest.approx(1, abs=0.01)


@FEW
@given(
    sigma=st.floats(1e-3, 3.0),
    truncate=st.floats(1e-2, 5.0),
    kinds=st.lists(st.sampled_from(["anchor", "neighbour"]), min_size=2, max_size=4),
    seed=st.integers(0, 1000),
)
def test_neighbour_views_lie_within_sigma_times_truncate_of_the_anchor(
    sigma, truncate, kinds, seed
):
    rng = torch.Generator().manual_seed(seed)
    z, y = torch.randn(64, 6, generator=rng), torch.randint(4, (64,), generator=rng)
    views = make_view_latents(z, y, ViewRecipe(kinds, sigma, truncate), rng)
    assert views.shape == (64, len(kinds), 6)
    for v, kind in enumerate(kinds):
        offset = (views[:, v] - z).abs()
        if kind == "anchor":
            assert torch.equal(views[:, v], z)
        else:
            assert float(offset.max()) <= sigma * truncate * (1 + 1e-5) + 1e-6
            assert float(offset.max()) > 0
    neighbours = [v for v, kind in enumerate(kinds) if kind == "neighbour"]
    for a, b in pairwise(neighbours):
        assert not torch.equal(views[:, a], views[:, b])  # each neighbour view draws its own noise


def test_flip_views_without_a_steerer_raise_value_error():
    z, y = torch.randn(4, 6), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="eraser card"):
        make_view_latents(z, y, ViewRecipe(("anchor", "flip")), torch.Generator())


# ---------------------------------------------------------------- export

SPEC = StreamSpec(views={"kinds": ["anchor", "neighbour"]}, augment="light", seed=5)
BATCH = 4


def reference_samples(generator, n):
    """The first ``n`` samples of the spec's stream, from a stream of its own."""
    stream = Stream.from_spec(SPEC, BATCH, generator=generator)
    batches = [stream.next_batch() for _ in range(math.ceil(n / BATCH))]
    return {key: torch.cat([b[key] for b in batches])[:n] for key in ("views", "labels", "latents")}


def read_png(data: bytes) -> torch.Tensor:
    return decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8)).float() / 255


def test_png_export_writes_every_view_and_a_readable_label_file(generator, tmp_path):
    n = 6  # not a multiple of the batch
    out = export_stream(
        Stream.from_spec(SPEC, BATCH, generator=generator),
        tmp_path / "png",
        n,
        "png",
        progress=False,
    )
    expected = reference_samples(generator, n)
    assert len(list(out.rglob("*.png"))) == n * 2
    with open(out / "labels.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [row["key"] for row in table] == [f"{i:08d}" for i in range(n)]
    assert [int(row["class"]) for row in table] == expected["labels"].tolist()
    for i, row in enumerate(table):
        for v in range(2):
            image = read_png((out / row["class"] / f"{row['key']}_v{v}.png").read_bytes())
            assert image.shape == (3, 32, 32)
            assert float((image - expected["views"][i, v]).abs().max()) <= 1 / 255


@pytest.mark.parametrize("n, shard_size, shard_counts", [(7, 3, [3, 3, 1]), (4, 10, [4])])
def test_webdataset_export_groups_members_by_key_and_honours_shard_size(
    generator, tmp_path, n, shard_size, shard_counts
):
    out = export_stream(
        Stream.from_spec(SPEC, BATCH, generator=generator),
        tmp_path / "wds",
        n,
        "webdataset",
        shard_size=shard_size,
        progress=False,
    )
    expected = reference_samples(generator, n)
    shards = sorted(out.glob("shard-*.tar"))
    assert [s.name for s in shards] == [f"shard-{i:06d}.tar" for i in range(len(shard_counts))]
    index = 0
    for shard, count in zip(shards, shard_counts, strict=True):
        with tarfile.open(shard) as tar:
            samples = defaultdict(dict)
            for member in tar.getmembers():
                key, extension = member.name.split(".", 1)
                samples[key][extension] = tar.extractfile(member).read()
        assert len(samples) == count
        for key in sorted(samples):
            sample = samples[key]
            assert key == f"{index:08d}"
            assert set(sample) == {"v0.png", "v1.png", "cls", "json"}
            meta = json.loads(sample["json"])
            assert int(sample["cls"]) == meta["class"] == int(expected["labels"][index])
            assert torch.equal(
                torch.tensor(meta["latent"], dtype=torch.float32), expected["latents"][index]
            )
            for v in range(2):
                assert (
                    float((read_png(sample[f"v{v}.png"]) - expected["views"][index, v]).abs().max())
                    <= 1 / 255
                )
            index += 1
    assert index == n


@pytest.mark.parametrize(
    "options",
    [
        {"fmt": "jpeg"},
        {"n": 0},
        {"n": -3},
        {"n": 2.5},
        {"shard_size": 0},
        {"fmt": "webdataset", "shard_size": -1},
    ],
)
def test_export_refuses_bad_format_count_or_shard_size(generator, tmp_path, options):
    settings_ = {"fmt": "png", "n": 2, **options}
    with pytest.raises(ValueError):
        export_stream(
            Stream.from_spec(SPEC, BATCH, generator=generator),
            tmp_path / "out",
            progress=False,
            **settings_,
        )
    assert not (tmp_path / "out").exists()
