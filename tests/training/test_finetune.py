"""`python -m training finetune` and `subset`: images paired with their labels by name, every
bad pair refused in one line naming the file (exit 2, TensorFlow never loaded), a model at OUT
never silently replaced by a worse one, and a lab's case end to end on real DSB2018 images."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from nuclei.card import sha256_file
from nuclei.segmenter import Segmenter
from tests.conftest import MODEL, ROOT, VERSION, png_bytes, write_kaggle_layout
from training.__main__ import main
from training.data import Sample
from training.finetune import FinetuneError, Plan, publish, tuning_fold
from training.heldout import Scored
from training.pairs import content_hash, find_pairs

VALIDATION_ID = json.loads(MODEL.with_suffix(".json").read_text())["training"]["validation_ids"][0]
# Runs the command line and says whether TensorFlow was imported by the time it answered.
RUNNER = "import sys; from training.__main__ import main; rc = main(sys.argv[1:]); " \
         "print('tensorflow' in sys.modules); sys.exit(rc)"


def nuclei(seed: int, shape: tuple[int, int] = (64, 64)) -> tuple[np.ndarray, np.ndarray]:
    """A grey image of bright discs and its 16-bit labels."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    for k in range(1, 5):
        centre = (int(rng.integers(8, shape[1] - 8)), int(rng.integers(8, shape[0] - 8)))
        cv2.circle(labels, centre, 5, k, -1)
    image = np.where(labels > 0, 200, 20).astype(np.uint8)
    return image, labels


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """tmp/images/{a,b,c}.png with tmp/labels/{a,b,c}.png: a good lab folder to spoil."""
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    for seed, name in enumerate("abc"):
        image, labels = nuclei(seed)
        (tmp_path / "images" / f"{name}.png").write_bytes(png_bytes(image))
        (tmp_path / "labels" / f"{name}.png").write_bytes(png_bytes(labels))
    return tmp_path


def test_pairs_by_name_in_each_layout(tmp_path, lab):
    assert [(p.name, p.labels.name) for p in find_pairs(lab)] == [("a", "a.png"), ("b", "b.png"), ("c", "c.png")]
    beside = tmp_path / "beside"  # CellProfiler's habit: a_labels.tiff next to a.png, or a GeoJSON
    beside.mkdir()
    shutil.copy(lab / "images" / "a.png", beside / "a.png")
    shutil.copy(lab / "labels" / "a.png", beside / "a_labels.png")
    shutil.copy(lab / "images" / "b.png", beside / "b.png")
    (beside / "b.geojson").write_text("{}")
    assert [(p.name, p.labels.name) for p in find_pairs(beside)] == [("a", "a_labels.png"), ("b", "b.geojson")]
    kaggle = tmp_path / "kaggle" / "id1"  # DSB2018's: id/images/id.png + id/masks/*.png
    (kaggle / "images").mkdir(parents=True)
    (kaggle / "masks").mkdir()
    shutil.copy(lab / "images" / "a.png", kaggle / "images" / "id1.png")
    [pair] = find_pairs(kaggle.parent)
    assert (pair.name, pair.labels) == ("id1", kaggle / "masks")


def spoil(lab: Path, case: str) -> tuple[list[str], Path, str]:
    """Make one bad pair: (extra arguments, the file the error must name, words it must say)."""
    images, labels = lab / "images", lab / "labels"
    if case == "image without labels":
        (labels / "b.png").unlink()
        return [], images / "b.png", "no labels"
    if case == "labels without image":
        shutil.copy(labels / "a.png", labels / "d.png")
        return [], labels / "d.png", "labels without an image"
    if case == "size mismatch":
        (labels / "b.png").write_bytes(png_bytes(np.ones((64, 80), np.uint16)))
        return [], labels / "b.png", "labels are 80×64, the image 64×64"
    if case == "empty image":
        (images / "b.png").write_bytes(b"")
        return [], images / "b.png", "empty file"
    if case == "empty labels":
        (labels / "b.png").write_bytes(b"")
        return [], labels / "b.png", "empty file"
    if case == "unreadable image":
        (images / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
        return [], images / "b.png", "not a readable image"
    if case == "corrupt labels":
        (labels / "b.png").write_bytes((labels / "b.png").read_bytes()[:60])
        return [], labels / "b.png", "not a readable label image"
    if case == "no nucleus":
        (labels / "b.png").write_bytes(png_bytes(np.zeros((64, 64), np.uint16)))
        return [], labels / "b.png", "no nucleus"
    if case == "bad mask in a folder":
        (labels / "b.png").unlink()
        (labels / "b" / "masks").mkdir(parents=True)
        (labels / "b" / "masks" / "1.png").write_bytes(png_bytes(np.full((32, 32), 255, np.uint8)))
        return [], labels / "b" / "masks" / "1.png", "the mask is 32×32"
    if case == "two label files":
        (labels / "b.geojson").write_text("{}")
        return [], labels / "b.geojson", "a second label file for b.png (also b.png)"
    if case == "one image only":
        for name in "bc":
            (images / f"{name}.png").unlink()
            (labels / f"{name}.png").unlink()
        return [], images, "at least 2 are needed"
    if case == "parent's validation image":  # trained on: IMAGES is all training with --val
        for folder in (images, labels):
            (folder / "a.png").rename(folder / f"{VALIDATION_ID}.png")
            (lab / "val" / folder.name).mkdir(parents=True)
        image, labels_ = nuclei(9)
        (lab / "val" / "images" / "z.png").write_bytes(png_bytes(image))
        (lab / "val" / "labels" / "z.png").write_bytes(png_bytes(labels_))
        return ["--val", str(lab / "val")], images / f"{VALIDATION_ID}.png", "one of the parent's validation images"
    if case == "held out and trained on":
        shutil.copytree(lab / "images", lab / "val" / "images")
        shutil.copytree(lab / "labels", lab / "val" / "labels")
        (lab / "val" / "images" / "a.png").rename(lab / "val" / "images" / "z.png")
        (lab / "val" / "labels" / "a.png").rename(lab / "val" / "labels" / "z.png")
        return ["--val", str(lab / "val")], lab / "val" / "images" / "b.png", "also among the training images"
    raise AssertionError(case)


CASES = ["image without labels", "labels without image", "size mismatch", "empty image", "empty labels",
         "unreadable image", "corrupt labels", "no nucleus", "bad mask in a folder", "two label files",
         "one image only", "parent's validation image", "held out and trained on"]


@pytest.mark.parametrize("case", CASES)
def test_each_bad_pair_is_one_line_naming_the_file_before_tensorflow(lab, case):
    extra, culprit, words = spoil(lab, case)
    out = lab / "models" / "lab"
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, "finetune", str(lab / "images"), str(lab / "labels"), "--out", str(out),
         "--steps", "1", *extra], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, f"one line: {result.stderr!r}"
    assert result.stderr.startswith(f"finetune: {culprit}: ") and words in result.stderr, result.stderr
    assert result.stdout.strip() == "False", "TensorFlow was loaded before the input was checked"
    assert not out.parent.exists()


def scored(model: Path, dsb: float) -> Scored:
    return Scored("x", model, [{"image": "a", "dsb_score": dsb, "ap_50": dsb, "count_error": 0.0, "merged": 0}])


@pytest.mark.parametrize("better", [False, True])
def test_a_model_at_out_is_replaced_only_by_a_better_one(tmp_path, better):
    suffixes = (".weights.h5", ".finetune.csv", ".json", ".int8.json", ".onnx", ".int8.onnx")
    out, staging = tmp_path / "models" / "lab", tmp_path / "models" / ".lab.finetune"
    staging.mkdir(parents=True)
    for suffix in suffixes:
        Path(f"{out}{suffix}").write_text("old")
        (staging / f"lab{suffix}").write_text("new")
    plan = Plan(out, SimpleNamespace(), ([], []), ([], []), Path(f"{out}.int8.onnx"), tmp_path / "run")
    existing = scored(Path(f"{out}.int8.onnx"), 0.5)
    code = publish(plan, staging, scored(staging / "lab.int8.onnx", 0.6 if better else 0.4), existing)
    assert code == (0 if better else 1)
    assert {Path(f"{out}{s}").read_text() for s in suffixes} == {"new" if better else "old"}
    if not better:
        assert sorted(p.name for p in (tmp_path / "run" / "rejected").iterdir()) == sorted(f"lab{s}" for s in suffixes)


@pytest.fixture
def he_family(tmp_path) -> list[str]:
    """A DSB2018 folder of one family made from the committed H&E sample (CI has no dataset):
    the sample itself under its own id, a validation image of the served model's split, and
    three flipped copies under new ids, training images."""
    root = write_kaggle_layout(tmp_path / "dsb", ["he_stained_256x320"])
    (source,) = [p for p in root.iterdir() if p.is_dir()]
    image = cv2.imread(str(source / "images" / f"{source.name}.png"), cv2.IMREAD_UNCHANGED)
    masks = [cv2.imread(str(m), cv2.IMREAD_UNCHANGED) for m in sorted((source / "masks").iterdir())]
    for k, turn in enumerate((lambda a: a[::-1], lambda a: a[:, ::-1], lambda a: a[::-1, ::-1]), 1):
        copy = root / f"he-train-{k}"
        (copy / "images").mkdir(parents=True)
        (copy / "masks").mkdir()
        cv2.imwrite(str(copy / "images" / f"{copy.name}.png"), np.ascontiguousarray(turn(image)))
        for n, mask in enumerate(masks):
            cv2.imwrite(str(copy / "masks" / f"{n:04d}.png"), np.ascontiguousarray(turn(mask)))
    return ["--data", str(root), "--size", "256x320", "--modality", "colour tissue"]


@pytest.mark.slow
def test_a_labs_case_end_to_end(tmp_path, capsys, he_family):
    """A few steps of a lab's case: training-split images of one DSB2018 family (256×320 H&E)
    in, scored against the parent on that family's validation images, both models written."""
    family = he_family
    train_dir, val_dir, out = tmp_path / "train", tmp_path / "val", tmp_path / "models" / "he-lab"
    assert main(["subset", "--split", "training", "--limit", "3", "--out", str(train_dir), *family]) == 0
    assert main(["subset", "--split", "validation", "--limit", "2", "--out", str(val_dir), *family]) == 0
    assert len(list((train_dir / "images").iterdir())) == 3 and len(list((val_dir / "images").iterdir())) == 1
    assert json.loads((val_dir / "subset.json").read_text())["split"] == "validation"
    with pytest.raises(SystemExit):  # no default split: a subset says which half it is
        main(["subset", "--out", str(tmp_path / "x"), *family])

    assert main(["finetune", str(train_dir), "--val", str(val_dir), "--out", str(out), "--steps", "2",
                 "--batch-size", "2", "--modality", "colour tissue", "--run-dir", str(tmp_path / "run")]) == 0
    table = capsys.readouterr().out
    assert "| parent int8 | nuclei-unet.int8.onnx |" in table and "| he-lab int8 | he-lab.int8.onnx |" in table

    models = sorted(p.name for p in out.parent.iterdir())
    assert models == [f"he-lab{s}" for s in (".finetune.csv", ".int8.json", ".int8.onnx", ".json", ".onnx",
                                             ".weights.h5")], "no staging folder left behind"
    float_card = json.loads(Path(f"{out}.json").read_text())
    int8_card = json.loads(Path(f"{out}.int8.json").read_text())
    assert (float_card["name"], int8_card["name"]) == ("he-lab", "he-lab.int8")
    assert float_card["export"]["parity_max_abs_diff"] <= 1e-4
    assert int8_card["derived"]["from_sha256"] == sha256_file(Path(f"{out}.onnx"))
    assert int8_card["derived"]["settings"]["reduce_range"], "the served INT8's 7-bit weights"
    assert float_card["postprocess"] == int8_card["postprocess"] == json.loads(MODEL.with_suffix(".json").read_text())[
        "postprocess"], "the parent's thresholds, untuned"
    for card in (float_card, int8_card):
        finetune = card["finetune"]
        assert card["modalities"] == ["colour tissue"]
        assert finetune["parent"] == {"name": "nuclei-unet.int8", "version": VERSION, "sha256": sha256_file(MODEL),
                                      "file": MODEL.name}
        assert finetune["images"] == sorted(p.stem for p in (train_dir / "images").iterdir())
        assert finetune["images_sha256"] == content_hash(find_pairs(train_dir))
        assert finetune["held_out"] == json.loads((val_dir / "subset.json").read_text())["ids"]
        assert finetune["steps"] == 2 and finetune["minutes"] > 0
        for when in ("before", "after"):
            for precision in ("float32", "int8"):
                scores = finetune["metrics"][when][precision]
                assert scores["images"] == 1 and 0 < scores["dsb_score"] <= 1 and scores["count_error"] >= 0
        after, before = (finetune["metrics"][w]["int8"]["dsb_score"] for w in ("after", "before"))
        assert finetune["worse_than_parent"] == (after < before)
    for model in (Path(f"{out}.onnx"), Path(f"{out}.int8.onnx")):
        Segmenter(model)  # both load in the service's class, card and sha256 checked


def test_contact_adds_the_third_channel_to_a_two_channel_parent(tmp_path, he_family):
    """`--contact`: the served parent has foreground and boundary; the child gets the contact
    channel too (warm-started as a copy of the boundary), its card says so, its ONNX has it.
    `--views 4`: both cards average four views at inference."""
    family = he_family
    train_dir, out = tmp_path / "train", tmp_path / "models" / "touching"
    assert main(["subset", "--split", "training", "--limit", "3", "--out", str(train_dir), *family]) == 0
    assert main(["finetune", str(train_dir), "--val-fraction", "0.34", "--out", str(out), "--steps", "1",
                 "--batch-size", "2", "--contact", "--views", "4", "--run-dir", str(tmp_path / "run")]) in (0, 1)
    parent = json.loads(MODEL.with_suffix(".json").read_text())
    assert len(parent["output"]["channels"]) == 2
    for model in (Path(f"{out}.onnx"), Path(f"{out}.int8.onnx")):
        card = json.loads(model.with_suffix(".json").read_text())
        assert sorted(card["output"]["channels"]) == ["0", "1", "2"] and "contact" in card["output"]["channels"]["2"]
        assert card["finetune"]["settings"]["contact_added"] and card["finetune"]["settings"]["tuned"]
        assert card["inference"]["views"] == 4 and card["finetune"]["settings"]["views"] == 4
        segmenter = Segmenter(model)
        image = np.zeros((64, 64), np.uint8)
        assert segmenter.probabilities(image).shape == (64, 64, 3)


@pytest.mark.parametrize("steps", [0, 300])
def test_learning_rate_decays_only_when_the_run_knows_its_end(tmp_path, steps):
    """`--steps`: a cosine to `train`'s floor by the last step; minutes alone: constant."""
    from training.child import Recipe
    from training.train import TrainConfig

    recipe = Recipe(weights=tmp_path / "w.h5", filters=(8, 16), outputs=3, run_dir=tmp_path, minutes=5,
                    steps=steps, batch_size=8, learning_rate=3e-4, augment="light", precision="float32", seed=1)
    cfg = recipe.config("data")
    if steps:  # the schedule's length is the run's: it ends at the floor on the last step
        assert cfg.lr_floor == TrainConfig.lr_floor < 1 and cfg.epochs * cfg.steps_per_epoch == steps
    else:
        assert cfg.lr_floor == 1.0


def test_a_tuning_fold_is_kept_out_of_training_and_is_all_the_thresholds_see():
    training = [Sample(f"img{k:02d}", np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.int32)) for k in range(20)]
    fit_on, tune_on = tuning_fold(training, 0.2, 2018)
    assert len(tune_on) == 4 and len(fit_on) == 16
    assert {s.image_id for s in fit_on}.isdisjoint(s.image_id for s in tune_on)
    assert [s.image_id for s in tuning_fold(training, 0.2, 2018)[1]] == [s.image_id for s in tune_on]  # seeded
    assert tuning_fold(training, 0.0, 2018) == (training, training)  # no fold: the parent's behaviour
    with pytest.raises(FinetuneError, match="leaves none to train on"):
        tuning_fold(training[:1], 0.2, 2018)
