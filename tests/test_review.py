"""`fairgen review` and the verified set: stratified draws, strict files, and the page in a
real browser."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from fairgen.cli import main
from fairgen.review import stratified_pick
from fairgen.verified import VerifiedSet, read_verified, write_verified

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def review(tmp_path_factory):
    """A card naming the embedded generator and the texture judge, and a small review of it.

    Review reads only the card's generator, attribute and labeler, so a handmade card will do."""
    from fairgen.generators import load_generator

    folder = tmp_path_factory.mktemp("review")
    card = {
        "fairgen_card": "eraser",
        "generator": {
            "name": "world-sprites-z128",
            "sha256": load_generator("world-sprites-z128").checksum,
        },
        "protected": "texture",
        "labelers": {"protected": "world:texture"},
    }
    (folder / "card.json").write_text(json.dumps(card))
    args = ["review", "--card", str(folder / "card.json"), "--n", "40", "--pool", "400"]
    assert main([*args, "--min-per-cell", "2", "--out", str(folder / "review"), "-q"]) == 0
    return folder


def test_every_cell_gets_its_minimum_and_the_rest_goes_by_size():
    cells = np.repeat(np.arange(4), [500, 300, 3, 197])
    picked = stratified_pick(cells, 100, 4, min_per_cell=5, seed=0)
    counts = np.bincount(cells[picked], minlength=4)
    assert len(picked) == len(set(picked.tolist())) == 100
    assert counts[2] == 3  # a cell smaller than the minimum gives all it has
    assert counts.min() >= 3 and counts[0] > counts[1] > counts[3] >= 5
    rest = counts - np.minimum([500, 300, 3, 197], 5)
    assert np.allclose(rest[[0, 1, 3]] / rest.sum(), np.array([495, 295, 192]) / 982, atol=0.02)


def test_too_few_images_for_the_cells_is_refused():
    with pytest.raises(ValueError, match="too small to give 5 images to each of the 4"):
        stratified_pick(np.arange(40) % 4, 12, 4, min_per_cell=5)


def test_review_covers_every_cell_of_the_pool(review):
    items = json.loads((review / "review" / "items.json").read_text())
    pool, drawn = np.array(items["pool_counts"]), np.array(items["drawn_counts"])
    assert pool.sum() == 400 and drawn.sum() == len(items["items"]) == 40
    assert (drawn[pool > 0] >= np.minimum(pool[pool > 0], 2)).all()
    assert all((review / "review" / item["file"]).is_file() for item in items["items"])
    page = (review / "review" / "index.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script src" not in page


def test_the_latent_regenerates_the_image(review):
    import torch

    from fairgen.generators import load_generator

    items = json.loads((review / "review" / "items.json").read_text())
    item = items["items"][3]
    gen = load_generator("world-sprites-z128")
    z = gen.sample_latents(items["pool"], generator=torch.Generator().manual_seed(items["seed"]))
    assert torch.allclose(z[item["index"]], torch.tensor(item["latent"]))


def _labels(review: Path, rows: list[str]) -> Path:
    path = review / "labels.csv"
    path.write_text("id,value\n" + "".join(row + "\n" for row in rows))
    return path


def test_read_refuses_unknown_ids_values_and_duplicates(review, capsys):
    folder = review / "review"
    cases = [
        (["0000,plain", "9999,plain"], "row 3 names id '9999'"),
        (["0000,plaid"], "row 2 gives value 'plaid'"),
        (["0000,plain", "0001,dots", "0000,dots"], r"row 4 labels '0000' again \(first on row 2\)"),
    ]
    for rows, message in cases:
        labels = _labels(review, rows)
        args = ["review", "--read", str(labels), "--review", str(folder)]
        assert main([*args, "--out", str(review / "v.json")]) == 2
        assert message.replace("\\", "") in capsys.readouterr().err.replace("\\", "")
    from fairgen.verified import read_label_csv

    with pytest.raises(ValueError, match="row 3 names id"):
        read_label_csv(_labels(review, ["0000,plain", "9999,plain"]), ["0000"], ["plain"])


def test_verified_set_round_trips_and_refuses_another_card(review, tmp_path):
    labels = _labels(review, ["0000,plain", "0003,dots", "0005,checker"])
    out = tmp_path / "verified.json"
    assert (
        main(
            ["review", "--read", str(labels), "--review", str(review / "review"), "--out", str(out)]
        )
        == 0
    )
    verified = read_verified(out, card=review / "card.json")
    classes, outputs, scores, truths = verified.arrays()
    assert verified.ids == ["0000", "0003", "0005"] and truths.tolist() == [0, 2, 3]
    assert scores is None and verified.latents.shape == (3, 128)
    assert verified.weights().min() >= 1  # each verified item stands for at least itself
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"fairgen_card": "eraser"}))
    with pytest.raises(ValueError, match=f"SHA-256 {verified.card_sha256}.*SHA-256 [0-9a-f]{{64}}"):
        read_verified(out, card=other)


def test_verified_file_is_read_strictly(tmp_path):
    good = VerifiedSet("texture", ["a", "b"], "0" * 64, ["x", "y"], [0, 1], [0, 1], [1, 1])
    path = write_verified(good, tmp_path / "v.json")
    data = json.loads(path.read_text())
    data["items"][1]["truth"] = 2
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="truths must be value indices 0..1"):
        read_verified(path)
    data["items"][1]["truth"] = True
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="item 1: field 'truth' must be int"):
        read_verified(path)


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs chromium + chromium-driver (make setup installs)"
)
def test_the_page_labels_and_saves_a_csv_that_read_accepts(review, tmp_path):
    """Open index.html in headless Chromium, label by clicks and keys, save, read the CSV back."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        driver.get((review / "review" / "index.html").resolve().as_uri())
        image = driver.find_element(By.ID, "image")
        assert int(image.get_attribute("naturalWidth")) > 0  # the PNG loaded from the folder
        buttons = driver.find_elements(By.CSS_SELECTOR, "#values button")
        assert [b.text for b in buttons] == ["1: plain", "2: stripes", "3: dots", "4: checker"]
        buttons[1].click()  # 0000 stripes
        buttons[2].click()  # 0001 dots
        driver.find_element(By.TAG_NAME, "body").send_keys("4")  # 0002 checker, by key
        driver.find_element(By.ID, "next").click()  # 0003 left unlabelled
        buttons[0].click()  # 0004 plain
        for _ in range(5):
            driver.find_element(By.ID, "prev").click()
        buttons[0].click()  # 0000 relabelled: plain
        driver.find_element(By.ID, "save").click()
        saved = downloads / "labels.csv"
        for _ in range(100):
            if saved.is_file() and saved.stat().st_size:
                break
            time.sleep(0.05)
        text = saved.read_text()
    finally:
        driver.quit()
    assert text.splitlines() == [
        "id,value",
        "0000,plain",
        "0001,dots",
        "0002,checker",
        "0004,plain",
    ]
    out = tmp_path / "verified.json"
    args = ["review", "--read", str(saved), "--review", str(review / "review"), "--out", str(out)]
    assert main(args) == 0
    verified = read_verified(out, card=review / "card.json")
    assert verified.ids == ["0000", "0001", "0002", "0004"]
    assert verified.truths.tolist() == [0, 2, 3, 0]
