"""Command line: python -m training {train,export,tune,quantize,evaluate,diameters,quality-study,package,
finetune,subset} --help."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from training import finetune, subset  # no TensorFlow: it loads once a fine-tune's input is checked

DEFAULT_DATA = "../shared/datasets/dsb2018/stage1_train.zip"
DEFAULT_MODEL = "models/nuclei-unet.onnx"
DEFAULT_INT8 = "models/nuclei-unet.int8.onnx"


def _parser() -> argparse.ArgumentParser:
    from training.augment import AUGMENT_PRESETS  # numpy + OpenCV only, no TensorFlow

    p = argparse.ArgumentParser(
        prog="python -m training",
        description="Train the nuclei U-Net on DSB2018, export it to ONNX, and score it.",
        epilog="Typical run: train → export → tune → quantize → evaluate (both models). "
               "Each step has its own --help.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    fmt = {"formatter_class": argparse.ArgumentDefaultsHelpFormatter}

    t = sub.add_parser("train", **fmt, help="fit the U-Net (resumes from its checkpoint if cut off)")
    t.add_argument("--data", default=DEFAULT_DATA, help="DSB2018 zip or folder (Kaggle layout)")
    t.add_argument("--run-dir", default="runs/unet", help="checkpoints, history, curves, log")
    t.add_argument("--epochs", type=int, default=50, help="upper bound; early stopping may end sooner")
    t.add_argument("--steps-per-epoch", type=int, default=100, help="batches of random crops per epoch")
    t.add_argument("--batch-size", type=int, default=8, help="crops per batch (the preset's size)")
    t.add_argument("--learning-rate", type=float, default=1e-3, help="Adam, cosine-decayed to 5%%")
    t.add_argument("--val-fraction", type=float, default=0.1, help="share of images held out")
    t.add_argument("--seed", type=int, default=2018, help="fixes the split and the crops")
    t.add_argument("--patience", type=int, default=10, help="early-stopping epochs")
    t.add_argument("--time-limit", type=float, default=0.0, metavar="MINUTES",
                   help="end this leg after this many wall minutes, checkpointed (0: none)")
    t.add_argument("--cpu-budget", type=float, default=0.0, metavar="MINUTES",
                   help="end the run's leg once all its legs together used this much CPU time "
                        "(process time, both cores; 0: none): runs compared at equal CPU cost")
    t.add_argument("--checkpoint", default="", metavar="NPZ",
                   help="the run's one-file state (default RUN_DIR/checkpoint.npz); when it exists the "
                        "run resumes from it with its own recipe, on any machine")
    t.add_argument("--checkpoint-minutes", type=float, default=2.0,
                   help="wall minutes between checkpoints (also at every epoch's end and on SIGTERM)")
    t.add_argument("--init-weights", default="", metavar="WEIGHTS_H5",
                   help="start from an earlier run's weights with a fresh LR schedule (warm restart)")
    t.add_argument("--augment", choices=list(AUGMENT_PRESETS), default="full",
                   help="augmentation strength; 'light' (scales 0.8–1.25, fewer colour/noise "
                        "changes) and 'native' (no rescaling at all) suit last warm-restart stages; "
                        "'scaled' brings every image to the training nucleus diameter, 128² crops; "
                        "'banded' only images whose nuclei lie outside 12-29 px, 160² crops; "
                        "'wide' the same for 12-40 px, 192² crops")
    t.add_argument("--hard-report", default="", metavar="CSV",
                   help="per-image report of `evaluate --ids training --report CSV`: the "
                        "images segmented worst are drawn more often (hard-example fine-tuning)")
    t.add_argument("--hard-fraction", type=float, default=0.2,
                   help="share of the report's images, lowest foreground IoU first, counted hard")
    t.add_argument("--hard-weight", type=float, default=3.0,
                   help="how many times as often a hard image is drawn")
    t.add_argument("--rare-weight", type=float, default=None,
                   help="how much more often colour and bright-field images are drawn (default: the preset's)")
    t.add_argument("--precision", choices=("auto", "float32", "mixed_bfloat16"), default="auto",
                   help="Keras precision policy; auto: bfloat16 on CPUs with avx512_bf16 or AMX, "
                        "where it pays, float32 elsewhere")
    t.add_argument("--max-images", type=int, default=0, help="use only the first N images (smoke)")
    t.add_argument("--smoke", action="store_true",
                   help="a few steps on a few images, to check the pipeline end to end")

    e = sub.add_parser("export", **fmt, help="best checkpoint → ONNX + model card, with parity check")
    e.add_argument("--run-dir", default="runs/unet", help="the training run to export")
    e.add_argument("--data", default=DEFAULT_DATA, help="real images for the parity check")
    e.add_argument("--out", default=DEFAULT_MODEL, help="the .onnx to write (card: same stem .json)")
    e.add_argument("--version", default="1.0.0", help="model version recorded in the card")

    u = sub.add_parser("tune", **fmt, help="choose post-processing thresholds on training images")
    u.add_argument("--model", default=DEFAULT_MODEL, help="ONNX file with its .json card beside it")
    u.add_argument("--data", default=DEFAULT_DATA, help="labelled zip or folder (Kaggle layout)")
    u.add_argument("--images", type=int, default=240, help="training images to tune on")
    u.add_argument("--seed", type=int, default=0)

    q = sub.add_parser("quantize", **fmt, help="float32 ONNX → static INT8 ONNX + card (the service's default)")
    q.add_argument("--model", default=DEFAULT_MODEL, help="the float32 ONNX file with its .json card")
    q.add_argument("--out", default=DEFAULT_INT8, help="the INT8 .onnx to write (card: same stem .json)")
    q.add_argument("--data", default=DEFAULT_DATA, help="training images to calibrate on (Kaggle layout)")
    q.add_argument("--images", type=int, default=32, help="calibration images (one crop each)")
    q.add_argument("--reduce-range", action="store_true",
                   help="7-bit weights: the variant for x86 CPUs without VNNI, whose 8-bit kernels saturate")

    v = sub.add_parser("evaluate", **fmt, help="score an ONNX model through the service's pipeline")
    v.add_argument("--model", default=DEFAULT_MODEL, help="ONNX file with its .json card beside it")
    v.add_argument("--data", default=DEFAULT_DATA, help="labelled zip or folder (Kaggle layout)")
    v.add_argument("--ids", default="validation",
                   help="'validation' (the ids in the model card), 'training' (all others), "
                        "'all', or a file of ids")
    v.add_argument("--report", default=None, help="write per-image results here (CSV)")
    v.add_argument("--update-card", action="store_true",
                   help="store the averaged metrics in the model card")
    v.add_argument("--scale", type=float, nargs="+", default=[], metavar="N",
                   help="also score the images enlarged N times (automatic diameter), next to native")

    d = sub.add_parser("diameters", **fmt, help="measure the training nucleus size (card section 'scale')")
    d.add_argument("--data", default=DEFAULT_DATA, help="labelled zip or folder (Kaggle layout)")
    d.add_argument("--update-card", nargs="*", default=[], metavar="MODEL_ONNX",
                   help="write it into these models' cards")

    s = sub.add_parser("quality-study", **fmt, help="rank trust signals by per-image DSB2018 (docs/model.md)")
    s.add_argument("--model", default=DEFAULT_INT8, help="ONNX file with its .json card beside it")
    s.add_argument("--data", default=DEFAULT_DATA, help="labelled zip or folder (Kaggle layout)")
    s.add_argument("--training-images", type=int, default=300, help="training-split images the threshold is chosen on")
    s.add_argument("--seed", type=int, default=26, help="draws the training images")
    s.add_argument("--report", default=None, help="write per-image values here (CSV)")

    k = sub.add_parser("package", **fmt, help="served models → bioimage.io packages (spec 0.5, docs/bioimageio.md)")
    k.add_argument("--model", nargs="+", default=[DEFAULT_MODEL, DEFAULT_INT8], help="ONNX files with their cards")
    k.add_argument("--out", default="dist", help="folder for <model>.bioimageio.zip")

    finetune.add_parser(sub, parent=DEFAULT_INT8)
    subset.add_parser(sub, data=DEFAULT_DATA, model=DEFAULT_INT8)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("training").setLevel(logging.INFO)
    if args.command == "package":  # no dataset: the test tensors come from samples/
        from training.package import package_command

        return package_command(args.model, args.out)
    if args.command == "finetune":  # a lab's folders: checked before TensorFlow loads
        return finetune.finetune_command(args)
    if args.command == "subset":
        return subset.subset_command(args)
    from training.data import Dataset, DatasetError

    try:
        Dataset(args.data)  # a bad path fails here, in one line, before TensorFlow loads
        if args.command == "train" and args.hard_report and not Path(args.hard_report).is_file():
            raise DatasetError(f"--hard-report {args.hard_report}: no such file; expected the CSV "
                               "that `evaluate --ids training --report CSV` writes")
        if args.command == "train":
            return _train(args)
        if args.command == "export":
            from training.export import export

            export(Path(args.run_dir), Path(args.out), args.data, args.version)
            return 0
        if args.command == "quantize":
            from training.quantize import quantize

            quantize(Path(args.model), Path(args.out), args.data, args.images, reduce_range=args.reduce_range)
            return 0
        if args.command == "tune":
            from training.tune import tune

            tune(Path(args.model), args.data, args.images, args.seed)
            return 0
        if args.command == "diameters":
            from training.diameters import diameters_command

            return diameters_command(args)
        if args.command == "quality-study":
            from training.quality_study import quality_study_command

            return quality_study_command(args)
        from training.evaluate import evaluate_command

        return evaluate_command(args)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    from training.augment import AUGMENT_PRESETS
    from training.train import TrainConfig, logged_to, train

    augment = AUGMENT_PRESETS[args.augment]
    if args.rare_weight is not None:
        augment = replace(augment, rare_weight=args.rare_weight)

    cfg = TrainConfig(
        data=args.data, run_dir=args.run_dir, epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
        learning_rate=args.learning_rate, val_fraction=args.val_fraction, seed=args.seed,
        patience=args.patience, time_limit_minutes=args.time_limit, max_images=args.max_images,
        init_weights=args.init_weights, augment=augment, precision=args.precision,
        hard_report=args.hard_report, hard_fraction=args.hard_fraction,
        hard_weight=args.hard_weight, checkpoint=args.checkpoint,
        checkpoint_minutes=args.checkpoint_minutes, cpu_budget_minutes=args.cpu_budget,
    )
    if args.smoke:
        cfg.epochs, cfg.steps_per_epoch, cfg.batch_size = 1, 2, 2
        cfg.max_images = cfg.max_images or 6
        cfg.val_fraction = 0.34
    with logged_to(Path(cfg.run_dir)):
        train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
