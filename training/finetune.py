"""`python -m training finetune IMAGES [LABELS] --out models/NAME`: a lab's labelled images → a
specialist model, started from the served model's weights (docs/finetune.md).

    prepare   pairs read whole and checked (`training.pairs`), part held out, the parent and
              OUT checked: all before TensorFlow loads, so a bad pair fails in seconds (exit 2)
    before    the parent, float32 and INT8, scored on the held-out images (`training.heldout`)
    child     `training.train`'s loop on the rest from the parent's weights for --minutes, then
              float32 ONNX (parity with Keras) and INT8, each with its card (`training.child`),
              into a hidden staging folder beside OUT that no model folder watcher reads
    after     both scored on the same held-out images; the cards get the fine-tune's record
    publish   renamed into place, each card before its model; an OUT already there that scores
              better on these images stays, and the run says so (exit 1), unless --force
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nuclei import card as cards
from nuclei.card import CardError, FineTune, ModelCard
from nuclei.modality import MODALITIES, modality
from nuclei.postprocess import OUTPUT_CHANNELS
from training.data import Sample, split_ids
from training.heldout import Scored, score, table, write_csv
from training.pairs import Pair, PairError, content_hash, find_pairs, load_pair

log = logging.getLogger("training")
INT8_DROP = 0.01  # the project's bar for an INT8 model to serve in place of its float32 export


class FinetuneError(ValueError):
    """An input that stops the fine-tune before training: `path: what is wrong` (exit 2)."""


def add_parser(sub: argparse._SubParsersAction, parent: str) -> None:
    from training.augment import AUGMENT_PRESETS

    f = sub.add_parser("finetune", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       help="a lab's labelled images → a specialist model from the served one (docs/finetune.md)")
    f.add_argument("images", type=Path, help="folder of images (or DIR/images + DIR/labels, or the Kaggle layout)")
    f.add_argument("labels", type=Path, nargs="?", help="folder of label images, mask folders or QuPath GeoJSON")
    f.add_argument("--out", type=Path, required=True, help="models/NAME → NAME.onnx, NAME.int8.onnx, cards, weights")
    f.add_argument("--parent", type=Path, default=Path(parent), help="the model to start from")
    f.add_argument("--val", type=Path, help="held-out images (same layouts); default: --val-fraction of IMAGES")
    f.add_argument("--val-fraction", type=float, default=0.2, help="share of IMAGES held out (at least one)")
    f.add_argument("--seed", type=int, default=2018, help="fixes the held-out draw and the crops")
    f.add_argument("--minutes", type=float, default=30.0, help="wall minutes of training")
    f.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: when the minutes are up)")
    f.add_argument("--batch-size", type=int, default=8, help="crops per step")
    f.add_argument("--learning-rate", type=float, default=1e-4,
                   help="Adam: constant, or with --steps cosine-decayed to 5 %% by the last")
    f.add_argument("--augment", choices=list(AUGMENT_PRESETS), default="light", help="as `train` (1.3.0: light)")
    f.add_argument("--precision", choices=("auto", "float32", "mixed_bfloat16"), default="auto")
    f.add_argument("--modality", action="append", choices=MODALITIES,
                   help="the service routes images of this kind to the new model (repeatable)")
    f.add_argument("--tune", action="store_true", help="choose thresholds on the training images (else the parent's)")
    f.add_argument("--tune-fold", type=float, default=0.0,
                   help="share of the training images kept out of training to choose thresholds on "
                        "(implies --tune): thresholds chosen on images the network learnt read too high")
    f.add_argument("--contact", action="store_true",
                   help="add the contact channel (pixels between touching nuclei) to a parent without one: "
                        "fewer merged nuclei; implies --tune, which chooses its threshold")
    f.add_argument("--views", type=int, choices=(1, 4), default=None,
                   help="mirrored views the child averages at inference (nuclei/views.py; default: the parent's)")
    f.add_argument("--version", help="the card's version; none given: the parent's +ft.DATE")
    f.add_argument("--run-dir", type=Path, help="log, history, checkpoint; none given: runs/finetune-NAME")
    f.add_argument("--force", action="store_true", help="replace OUT even when it scores better")


@dataclass(frozen=True)
class Parent:
    """The model started from: `served` (its card and sha256 go into the child's card), the
    float32 export it was made from, its INT8 model if there is one, and the Keras weights."""

    served: Path
    card: ModelCard
    float32: Path
    int8: Path | None
    weights: Path

    @classmethod
    def find(cls, path: Path) -> Parent:
        card = cards.load(path)
        source = (card.derived or {}).get("from")
        float32 = path.with_name(source) if source else path
        int8 = path if source else path.with_name(f"{path.stem}.int8.onnx")
        keras_weights = cards.load(float32).architecture.get("keras_weights")
        weights = float32.with_name(keras_weights or f"{float32.stem}.weights.h5")
        if not weights.is_file():
            raise FinetuneError(f"{weights}: the parent's Keras weights are missing (a fine-tune starts from them)")
        return cls(path, card, float32, int8 if int8.is_file() else None, weights)

    def reduce_range(self) -> bool:
        """7-bit INT8 weights like the parent's (the served 1.3.0: yes)."""
        if self.int8 is None:
            return True
        derived = cards.load(self.int8).derived or {}
        return bool(derived.get("settings", {}).get("reduce_range", True))


@dataclass
class Plan:
    out: Path  # folder/NAME
    parent: Parent
    pairs: tuple[list[Pair], list[Pair]]  # (training, held out)
    samples: tuple[list[Sample], list[Sample]]
    existing: Path | None  # a model already at OUT
    run_dir: Path

    def path(self, suffix: str, folder: Path | None = None) -> Path:
        return (folder or self.out.parent) / f"{self.out.name}{suffix}"

    @property
    def staging(self) -> Path:
        """Hidden, beside OUT (renames into place stay on one file system), its own per model."""
        return self.out.parent / f".{self.out.name}.finetune"


def output_stem(out: Path) -> Path:
    stem = out.with_suffix("") if out.suffix == ".onnx" else out
    if stem.name.endswith(".int8") or not stem.name or stem.name.startswith("."):
        raise FinetuneError(f"{out}: --out names the model: models/NAME (NAME.int8 is written beside it)")
    return stem


def held_out(pairs: list[Pair], args: argparse.Namespace) -> tuple[list[Pair], list[Pair]]:
    """(training, held out): --val's pairs, or a seeded share of IMAGES."""
    if args.val:
        return pairs, find_pairs(args.val)
    if len(pairs) < 2:
        raise FinetuneError(f"{args.images}: {len(pairs)} labelled image: at least 2 are needed to keep one "
                            "aside for the before/after scores (or give --val DIR)")
    names = split_ids([p.name for p in pairs], args.val_fraction, args.seed)
    training, held = ([p for p in pairs if p.name in set(group)] for group in names)
    if not training:
        raise FinetuneError(f"{args.images}: --val-fraction {args.val_fraction} leaves no image to train on")
    return training, held


def check_disjoint(training: list[Pair], held: list[Pair], parent: ModelCard) -> None:
    """No image both trained on and scored, and none of the parent's own validation images
    trained on: the before/after numbers and the parent's card would stop meaning anything."""
    validation = set(parent.training.validation_ids)
    for pair in training:
        if pair.name in validation:
            raise FinetuneError(f"{pair.image}: one of the parent's validation images (never train on them; "
                                "`training subset --split validation` is for --val)")
    seen = {hashlib.sha256(p.image.read_bytes()).hexdigest(): p for p in training}
    for pair in held:
        twin = seen.get(hashlib.sha256(pair.image.read_bytes()).hexdigest())
        if twin is not None or pair.name in {p.name for p in training}:
            raise FinetuneError(f"{pair.image}: also among the training images ({(twin or pair).image.name}): "
                                "an image held out must not be trained on")


def check_existing(existing: Path, held: list[Pair]) -> None:
    """A broken model at OUT is reported now, not after training; one that learnt from the
    held-out images is compared all the same, with a warning."""
    card = cards.load(existing)
    seen = set(card.finetune.images if card.finetune else ()) & {p.name for p in held}
    if seen:
        log.warning("%s trained on %d of the held-out images: the comparison favours it", existing, len(seen))


def prepare(args: argparse.Namespace) -> Plan:
    out = output_stem(args.out)
    if (args.minutes <= 0 or args.steps < 0 or args.batch_size < 1 or not 0 < args.val_fraction < 1
            or not 0 <= args.tune_fold < 1):
        raise FinetuneError("--minutes must be > 0, --steps ≥ 0, --batch-size ≥ 1, 0 < --val-fraction < 1 "
                            "and 0 ≤ --tune-fold < 1")
    parent = Parent.find(args.parent)
    training, held = held_out(find_pairs(args.images, args.labels), args)
    check_disjoint(training, held, parent.card)
    samples = [load_pair(p) for p in training], [load_pair(p) for p in held]
    tuning_fold(samples[0], args.tune_fold, args.seed)  # a fold that leaves no image fails here, before training
    existing = next((p for p in (Path(f"{out}.int8.onnx"), Path(f"{out}.onnx")) if p.is_file()), None)
    if existing and not args.force:
        check_existing(existing, held)
    run_dir = args.run_dir or Path(f"runs/finetune-{out.name}")
    return Plan(out, parent, (training, held), samples, existing, run_dir)


def same_precision(scored: dict[str, Scored], like: Path) -> Scored:
    """The INT8 result when `like` is an INT8 model (and there is one), else float32's."""
    return scored.get("int8", scored["float32"]) if like.name.endswith(".int8.onnx") else scored["float32"]


def finetune_command(args: argparse.Namespace) -> int:
    try:
        plan = prepare(args)
    except (FinetuneError, PairError, CardError) as exc:
        print(f"finetune: {exc}", file=sys.stderr)
        return 2
    training, held = plan.samples
    kinds = Counter(modality(s.image, s.labels) for s in training)
    log.info("fine-tuning %s from %s on %d images (%s), %d held out", plan.out.name, plan.parent.served,
             len(training), ", ".join(f"{n} {k}" for k, n in kinds.most_common()), len(held))
    before = {precision: score(f"parent {precision}", path, held) for precision, path in
              (("float32", plan.parent.float32), ("int8", plan.parent.int8)) if path is not None}
    existing = score("already at OUT", plan.existing, held) if plan.existing and not args.force else None
    staging = plan.staging
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        record = make_child(plan, args, staging)
        after = {precision: score(f"{plan.out.name} {precision}", plan.path(suffix, staging), held)
                 for precision, suffix in (("float32", ".onnx"), ("int8", ".int8.onnx"))}
        worse = finish_cards(plan, staging, record, before, after)
        scored = [*before.values(), *after.values(), *([existing] if existing else [])]
        write_csv(plan.path(".finetune.csv", staging), scored)
        print(f"\n{len(held)} held-out images\n{table(scored)}")
        if worse:
            print(f"\nWARNING: {plan.out.name} scores below its parent on the held-out images "
                  f"(DSB2018 {worse[0]:.4f} against {worse[1]:.4f}); its card says so (finetune.worse_than_parent)")
        new = same_precision(after, existing.model) if existing else after["int8"]
        return publish(plan, staging, new, existing)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def make_child(plan: Plan, args: argparse.Namespace, staging: Path) -> dict:
    """Train, export, tune if asked, quantize into `staging` (TensorFlow loads here)."""
    from training import child

    parent = cards.load(plan.parent.float32)
    recipe = child.Recipe(
        weights=plan.parent.weights, filters=tuple(parent.architecture["filters"]),
        outputs=len(OUTPUT_CHANNELS) if args.contact else len(parent.output.channels), run_dir=plan.run_dir,
        minutes=args.minutes, steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
        augment=args.augment, precision=args.precision, seed=args.seed)
    training, held = plan.samples
    fit_on, tune_set = tuning_fold(training, args.tune_fold, args.seed)
    model, record = child.fit(recipe, str(args.images), fit_on, held)
    version = args.version or f"{plan.parent.card.version}+ft.{datetime.now(UTC):%Y%m%d}"
    child.export_child(model, parent, plan.path(".onnx", staging), version, args.modality, held + training,
                       args.views)
    child.release()
    tuned = args.tune or args.contact or args.tune_fold > 0  # a new channel's threshold must be chosen
    if tuned:
        child.tune_child(plan.path(".onnx", staging), tune_set,
                         "images of the tuning fold" if args.tune_fold else "training images")
    child.quantize_child(plan.path(".onnx", staging), plan.path(".int8.onnx", staging), training,
                         plan.parent.reduce_range())
    return record | {"weights": plan.parent.weights.name, "learning_rate": args.learning_rate,
                     "batch_size": args.batch_size, "augment": args.augment, "seed": args.seed,
                     "tuned": tuned, "tuned_on": sorted(s.image_id for s in tune_set) if args.tune_fold else [],
                     "tuning_fold": args.tune_fold, "contact_added": args.contact, "views": args.views,
                     "minutes_limit": args.minutes}


def tuning_fold(training: list[Sample], share: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(images to train on, images to choose thresholds on): with a `share`, a seeded fold of
    the training images the network never sees; without, the training images themselves."""
    if not share:
        return training, training
    fit_names, tune_names = split_ids([s.image_id for s in training], share, seed)
    if not fit_names or not tune_names:
        raise FinetuneError(f"--tune-fold {share} of {len(training)} training images leaves none to "
                            "train on or none to tune on")
    names = set(tune_names)
    return [s for s in training if s.image_id not in names], [s for s in training if s.image_id in names]


def finish_cards(plan: Plan, staging: Path, record: dict, before: dict[str, Scored],
                 after: dict[str, Scored]) -> tuple[float, float] | None:
    """Both cards get the fine-tune's record; (child, parent) DSB2018 of the served precision
    when the child scores lower."""
    served = plan.parent.card
    training_pairs, held_pairs = plan.pairs
    child_dsb = same_precision(after, plan.parent.served).summary["dsb_score"]
    parent_dsb = same_precision(before, plan.parent.served).summary["dsb_score"]
    drop = after["float32"].summary["dsb_score"] - after["int8"].summary["dsb_score"]
    if drop > INT8_DROP:
        log.warning("INT8 scores %.4f DSB2018 below float32 on the held-out images (bar: %.2f)", drop, INT8_DROP)
    settings = {k: v for k, v in record.items() if k not in ("steps", "minutes")}
    finetune = FineTune(
        parent={"name": served.name, "version": served.version, "sha256": served.sha256,
                "file": plan.parent.served.name},
        images=[p.name for p in training_pairs], images_sha256=content_hash(training_pairs),
        held_out=[p.name for p in held_pairs], held_out_sha256=content_hash(held_pairs),
        minutes=record["minutes"], steps=record["steps"], settings=settings,
        metrics={"before": {k: s.summary for k, s in before.items()},
                 "after": {k: s.summary for k, s in after.items()}},
        worse_than_parent=child_dsb < parent_dsb)
    for suffix in (".onnx", ".int8.onnx"):
        path = plan.path(suffix, staging)
        cards.save(cards.load(path).model_copy(update={"finetune": finetune}), path)
    return (child_dsb, parent_dsb) if finetune.worse_than_parent else None


def publish(plan: Plan, staging: Path, new: Scored, existing: Scored | None) -> int:
    """Each file renamed into place (weights, cards, then models): a watcher never sees a model
    without its card. A model already at OUT that scores better stays (exit 1)."""
    if existing is not None and new.summary["dsb_score"] < existing.summary["dsb_score"]:
        kept = plan.run_dir / "rejected"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(staging, kept)
        print(f"\n{existing.model} kept: it scores {existing.summary['dsb_score']:.4f} DSB2018 on these held-out "
              f"images, the new model {new.summary['dsb_score']:.4f} (new files in {kept}; "
              "--force replaces it)", file=sys.stderr)
        return 1
    for suffix in (".weights.h5", ".finetune.csv", ".json", ".int8.json", ".onnx", ".int8.onnx"):
        os.replace(plan.path(suffix, staging), plan.path(suffix))
    print(f"\nwritten: {plan.path('.onnx')}, {plan.path('.int8.onnx')} (served by name "
          f"{plan.out.name}.int8), their cards, {plan.path('.weights.h5').name}, {plan.path('.finetune.csv').name}")
    return 0
