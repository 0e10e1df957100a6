"""`prodlens train`, `prodlens evaluate` and `prodlens models`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from prodlens.cli._common import add_parser, report_skips
from prodlens.data.images import openable
from prodlens.data.manifest import read_dataset
from prodlens.errors import BadInputError

DEFAULT_FEATURE_CACHE = str(Path("~/.cache/prodlens/features").expanduser())


def _parse_opts(items: list[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise BadInputError(flag, f"expected KEY=VALUE, got {item!r}", f"e.g. {flag} hidden=256")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _read_classes(path: str | None) -> list[str] | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise BadInputError(p, "classes file not found", "one class name per line")
    return [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _train(args: argparse.Namespace) -> int:
    from prodlens.train.augment import AugmentConfig
    from prodlens.train.config import TrainConfig
    from prodlens.train.trainer import train_model

    ds = read_dataset(args.dataset)
    keep = _read_classes(args.classes_file)
    if keep is not None:
        ds = ds.with_classes(keep)
    skipped: list = []  # photos that do not open are left out and listed
    train = openable(ds.split(args.train_split), skipped)
    val = None if args.val_split == "none" else openable(ds.split(args.val_split), skipped)
    if val is not None and not len(val):
        raise BadInputError(args.dataset, f"split {args.val_split!r} is empty", "pass --val-split none to hold out part of train")
    cfg = TrainConfig(
        mode=args.mode, lr=args.lr, weight_decay=args.weight_decay, batch_size=args.batch_size, epochs=args.epochs,
        patience=args.patience, views=args.views, aug=AugmentConfig(**_parse_opts(args.aug_opt, "--aug-opt")),
        label_smoothing=args.label_smoothing, seed=args.seed, device=args.device, num_workers=args.workers,
        feature_cache=None if args.feature_cache == "none" else args.feature_cache,
        train_blocks=args.train_blocks, tail_lr_scale=args.tail_lr_scale, schedule=args.schedule, init_from=args.init_from,
    )
    out = Path(args.out)
    res = train_model(
        train, val, model=args.model, image_backbone=args.image_backbone, text_backbone=args.text_backbone,
        head_cfg=_parse_opts(args.head_opt, "--head-opt"), backbone_cfg=_parse_opts(args.backbone_opt, "--backbone-opt"),
        config=cfg, out=out,
    )
    m = res.metrics
    print(f"{args.model}: val top-1 {m['val_top1']:.4f}, top-5 {m['val_top5']:.4f} "
          f"(best epoch {m['best_epoch']} of {m['epochs_run']}, {m['n_train']} train / {m['n_val']} val samples)")
    print(f"wrote {res.checkpoint} ({out.stat().st_size / 1e6:.1f} MB)")
    return report_skips(skipped)


def _evaluate(args: argparse.Namespace) -> int:
    from prodlens.models.checkpoint import load_classifier
    from prodlens.train.metrics import evaluate, report_markdown, write_report

    if len(args.checkpoint) == 1 and not args.hflip_tta:
        clf = load_classifier(args.checkpoint[0], device=args.device, batch_size=args.batch_size)
    else:
        from prodlens.models.ensemble import load_ensemble

        clf = load_ensemble(args.checkpoint, hflip=args.hflip_tta, device=args.device, batch_size=args.batch_size)
    ds = read_dataset(args.dataset)
    ds = ds.split(*args.split)
    known = set(clf.classes)
    if args.known_classes_only:
        ds = ds.with_classes(sorted({s.label for s in ds.samples if s.label in known}))  # type: ignore[misc]
    report = evaluate(clf, ds, batch_size=args.batch_size,
                      meta={"checkpoint": "+".join(args.checkpoint), "dataset": str(args.dataset), "split": "+".join(args.split)})
    title = f"{' + '.join(Path(c).name for c in args.checkpoint)}{' (hflip TTA)' if args.hflip_tta else ''} on {'+'.join(args.split)}"
    print(report_markdown(report, title=title))
    if args.out:
        jp, mp = write_report(report, args.out, stem=args.stem, title=title)
        print(f"wrote {jp} and {mp}")
    return report_skips(report.skipped)


def _models(args: argparse.Namespace) -> int:
    from prodlens.models.registry import KINDS, get_entry, list_models

    for kind in KINDS if args.kind is None else [args.kind]:
        print(f"{kind}:")
        for name in list_models(kind):
            print(f"  {name:<20} {get_entry(name).summary}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_parser(
        sub, "train", "Train a recognition model (image, text, score_fusion, concat or embracenet head) on a dataset folder.",
        "prodlens train work/grocery --model embracenet --views 8 --out runs/embracenet.pt", skips=True,
    )
    p.add_argument("dataset", help="dataset folder (manifest.jsonl + classes.json) with OCR tokens attached")
    p.add_argument("--model", default="concat", help="head: image, text, score_fusion, concat, embracenet (default concat)")
    p.add_argument("--out", required=True, help="checkpoint file to write (e.g. runs/concat.pt)")
    p.add_argument("--mode", default="fast", choices=["fast", "finetune"],
                   help="fast: frozen backbones + cached features, heads only (CPU); finetune: end to end (GPU)")
    p.add_argument("--image-backbone", default="efficientnet_lite0", help="registered image backbone; join several with + (default efficientnet_lite0)")
    p.add_argument("--text-backbone", default="minilm")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val", help="split for early stopping, or 'none' to hold out 10%% of train")
    p.add_argument("--classes-file", help="train on these classes only (one name per line)")
    p.add_argument("--views", type=int, default=8, help="fast mode: views per training image (1 plain + augmented)")
    p.add_argument("--train-blocks", type=int, default=0,
                   help="fast mode: also train the image backbone's last N blocks on cached trunk maps (default 0: head only)")
    p.add_argument("--tail-lr-scale", type=float, default=0.3,  # TrainConfig's default (not imported: keeps torch out of start-up)
                   help="learning rate of those blocks relative to --lr (default %(default)s)")
    p.add_argument("--init-from", metavar="CKPT",
                   help="start the image backbone from this checkpoint's trained one (e.g. an image model trained "
                        "with --train-blocks), then train this model on its features")
    p.add_argument("--schedule", default="constant", choices=["constant", "cosine"],
                   help="fast mode learning-rate schedule (cosine: warm-up, then decay over --epochs)")
    p.add_argument("--epochs", type=int, help="max epochs (fast 100, finetune 30)")
    p.add_argument("--lr", type=float, help="learning rate (fast 1e-3, finetune 2e-5 as in the paper)")
    p.add_argument("--batch-size", type=int, help="batch size (fast 64, finetune 16)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (fast 15, finetune 5)")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--workers", type=int, default=0, help="finetune mode: data-loading worker processes")
    p.add_argument("--feature-cache", default=DEFAULT_FEATURE_CACHE, help="fast mode feature cache folder, or 'none'")
    p.add_argument("--head-opt", nargs="*", metavar="KEY=VALUE", help="head options, e.g. hidden=256 dropout=0.3")
    p.add_argument("--backbone-opt", nargs="*", metavar="KEY=VALUE", help="image backbone options, e.g. weights_path=r50.pth")
    p.add_argument("--aug-opt", nargs="*", metavar="KEY=VALUE", help="augmentation options, e.g. max_rotation=10 text_dropout=0")
    p.set_defaults(func=_train)

    p = add_parser(
        sub, "evaluate", "Top-1/top-5, per-class accuracy and most-confused pairs of a checkpoint on a dataset split.",
        "prodlens evaluate runs/embracenet.pt work/grocery --split val --out runs/eval", skips=True,
    )
    p.add_argument("checkpoint", nargs="+", help="checkpoint; several are evaluated as one ensemble (mean probability)")
    p.add_argument("dataset", help="dataset folder (manifest.jsonl + classes.json)")
    p.add_argument("--split", nargs="+", default=["val"], choices=["train", "val", "test"])
    p.add_argument("--out", help="folder for {stem}.json and {stem}.md")
    p.add_argument("--stem", default="eval")
    p.add_argument("--known-classes-only", action="store_true", help="skip samples whose label the model does not know")
    p.add_argument("--hflip-tta", action="store_true", help="also predict each photo mirrored left-right and average")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_evaluate)

    p = add_parser(sub, "models", "List the registered backbones and heads.", "prodlens models --kind head")
    p.add_argument("--kind", choices=["image", "text", "head"])
    p.set_defaults(func=_models)
