"""Tutorial (b): an SSL ResNet-50 as the backbone of torchvision's Faster R-CNN, and its Detectron2 export.

1. SSL weights: a tiny SimCLR pretraining of a torchvision ResNet-50 (``simclr-resnet50``) on the embedded CC0
   clothing photos with ``sslhub.train``, or your own checkpoint with ``--checkpoint`` (anything
   ``sslhub.load_pretrained`` reads whose backbone is a torchvision-layout ResNet-50, e.g. a LightlySSL ImageNet
   benchmark ``.ckpt``);
2. ``sslhub.export(..., to="torchvision")`` and a *strict* load into
   ``fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).backbone.body``; the body's pooled layer4
   output is checked against sslhub's own module;
3. a small detection set built from real photos with exactly known boxes: clothing photos pasted at random
   positions and sizes onto 256 px canvases (the class is the garment);
4. a few training steps of the detector, printing each step's losses, and the loss on the training canvases
   before and after training, measured with the same RoI sampling (it falls);
5. ``sslhub.export(..., to="detectron2")``: the ``.pkl`` for ``DetectionCheckpointer`` and the config the
   weights need, printed.

Exit code 0 only if the strict load holds, the body matches sslhub's features, the losses fall and the Detectron2
file holds the same tensors under Detectron2's names.

Usage: python scripts/tutorials/detection_fasterrcnn.py [--out DIR] [--quick] [--checkpoint FILE] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import sslhub  # noqa: E402

DATA = ROOT / "training/data/clothing10_mini"
CANVAS = 256  # small images keep each detector step at a second or two on a CPU


def pretrain_resnet50(out: Path, data: Path, steps: int, batch_size: int) -> Path:
    """A tiny SimCLR pretraining of a torchvision ResNet-50 (32 px crops): real SSL weights in minutes."""
    n = sum(1 for f in data.rglob("*") if f.is_file())
    epochs = -(-steps // (n // batch_size))  # ceil: enough epochs of the folder for `steps` steps
    run = sslhub.train("simclr-resnet50", data, out, epochs=epochs, device="cpu", progress=False,
                       max_steps_per_epoch=min(steps, n // batch_size),
                       overrides=[f"batch_size={batch_size}", "schedule.warmup_epochs=0"],
                       force=True)  # fmt: skip  (a re-run of the tutorial replaces its run)
    return run / "model.safetensors"


def subset_folder(src: Path, dst: Path, per_class: int) -> Path:
    """The first ``per_class`` photos of each class of ``src``, copied to ``dst`` (a smaller pretraining set)."""
    for cls in sorted(d for d in src.iterdir() if d.is_dir()):
        (dst / cls.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(cls.iterdir())[:per_class]:
            shutil.copy2(f, dst / cls.name / f.name)
    return dst


def make_detection_set(
    n_images: int, seed: int = 0
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]], list[str]]:
    """Canvases with 1-3 real photos each, pasted without overlap; boxes are exactly where they were pasted.

    Labels are the photo's class + 1 (0 is the background class in torchvision's detectors).
    """
    import torchvision
    from torchvision.transforms import v2

    photos = torchvision.datasets.ImageFolder(str(DATA / "val"))
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(n_images):
        # a textured grey background, so that "object" is not simply "not uniform"
        canvas = 0.45 + 0.1 * torch.rand(3, CANVAS, CANVAS, generator=g)
        boxes: list[list[float]] = []
        labels: list[int] = []
        for _ in range(100):  # placement attempts
            if len(boxes) == rng.randint(1, 3) or len(boxes) == 3:
                break
            img, cls = photos[rng.randrange(len(photos))]
            side = rng.randint(56, 112)
            x0, y0 = rng.randint(0, CANVAS - side), rng.randint(0, CANVAS - side)
            box = [float(x0), float(y0), float(x0 + side), float(y0 + side)]
            if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes):
                continue  # overlaps a pasted photo: the box would not be exact
            patch = v2.functional.resize(v2.functional.pil_to_tensor(img), [side, side], antialias=True)
            canvas[:, y0 : y0 + side, x0 : x0 + side] = patch.float() / 255
            boxes.append(box)
            labels.append(cls + 1)
        images.append(canvas)
        targets.append({"boxes": torch.tensor(boxes), "labels": torch.tensor(labels, dtype=torch.int64)})
    return images, targets, photos.classes


def build_detector(num_classes: int) -> nn.Module:
    """torchvision's Faster R-CNN R50-FPN, untrained, sized for 256 px canvases and a CPU."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    return fasterrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=num_classes,
        min_size=CANVAS,
        max_size=CANVAS,
        # Fewer proposals and sampled RoIs than the COCO defaults (2000/512): a few objects per image.
        rpn_pre_nms_top_n_train=300,
        rpn_post_nms_top_n_train=100,
        rpn_batch_size_per_image=64,
        box_batch_size_per_image=64,
    )


def freeze_like_torchvision(body: nn.Module) -> None:
    """What torchvision does to a pretrained backbone: stem and layer1 frozen, BatchNorm frozen.

    ``weights_backbone=None`` gives trainable BatchNorm layers, but a batch of two images cannot estimate their
    statistics; the pretrained running averages are used instead (torchvision's FrozenBatchNorm2d behaviour).
    """
    for name, p in body.named_parameters():
        if not name.startswith(("layer2", "layer3", "layer4")):
            p.requires_grad_(False)
    for m in body.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()  # keeps running stats; re-applied after every detector.train() below
            m.requires_grad_(False)


def detector_loss(detector: nn.Module, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> float:
    """Mean training loss over ``images`` without an update, with the same proposal sampling every call.

    Faster R-CNN only computes losses in train mode, where it samples anchors and RoIs at random: a fixed seed
    makes a before/after comparison measure the weights, not the sampling.
    """
    detector.train()
    freeze_like_torchvision(detector.backbone.body)
    total = 0.0
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for i in range(0, len(images), 2):
            total += sum(detector(images[i : i + 2], targets[i : i + 2]).values()).item() * len(images[i : i + 2])
    return total / len(images)


def train_detector(detector: nn.Module, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]],
                   steps: int, batch_size: int) -> list[dict[str, float]]:  # fmt: skip
    params = [p for p in detector.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    # A short linear warmup, as torchvision's detection references do: the untrained heads overshoot at full lr.
    warmup = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=max(1, min(5, steps // 2)))
    history = []
    for step in range(steps):
        detector.train()
        freeze_like_torchvision(detector.backbone.body)
        i = (step * batch_size) % len(images)
        idx = [(i + j) % len(images) for j in range(batch_size)]
        losses = detector([images[j] for j in idx], [targets[j] for j in idx])
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise RuntimeError(f"detector loss is {loss.item()} at step {step + 1}; lower the learning rate")
        opt.zero_grad()
        loss.backward()
        # A backbone pretrained on 32 px crops sees 256 px canvases here: its frozen BatchNorm statistics do not fit
        # them and early gradients can be huge. Clipping keeps the first steps from diverging (without it a 20-step
        # pretraining diverged to NaN in 6 steps).
        torch.nn.utils.clip_grad_norm_(params, max_norm=10.0)
        opt.step()
        warmup.step()
        row = {"step": step + 1, "loss": loss.item(), **{k: v.item() for k, v in losses.items()}}
        history.append(row)
        print(f"      step {step + 1:>3}  loss {row['loss']:.3f}  (classifier {row['loss_classifier']:.3f}, "
              f"box {row['loss_box_reg']:.3f}, objectness {row['loss_objectness']:.3f}, "
              f"rpn box {row['loss_rpn_box_reg']:.3f})", flush=True)  # fmt: skip
    return history


class _ArraysOnly(pickle.Unpickler):
    """Reads the Detectron2 ``.pkl`` allowing only what it may contain (numpy arrays): never unpickle more."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("builtins", "bytearray"),
               ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")
        return super().find_class(module, name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="output folder (default: a temporary folder, deleted at exit)")
    ap.add_argument("--quick", action="store_true", help="CI size: 2 pretraining and 6 detector steps, 1 thread")
    ap.add_argument("--checkpoint", type=Path, help="your SSL ResNet-50 checkpoint instead of the tiny pretraining")
    ap.add_argument("--pretrain-steps", type=int, help="SimCLR steps (default 20, --quick 2)")
    ap.add_argument("--steps", type=int, help="detector training steps (default 30, --quick 6)")
    ap.add_argument("--images", type=int, help="canvases in the detection set (default 32, --quick 4)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.quick:
        torch.set_num_threads(1)  # on small CPU workloads one thread beats several contending ones
    with tempfile.TemporaryDirectory(prefix="sslhub_tutorial_b_") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        return run(
            out,
            checkpoint=args.checkpoint,
            pretrain_steps=args.pretrain_steps or (2 if args.quick else 20),
            steps=args.steps or (6 if args.quick else 30),
            n_images=args.images or (4 if args.quick else 32),
            batch_size=16 if args.quick else 32,
            quick=args.quick,
        )


def run(out: Path, *, checkpoint: Path | None, pretrain_steps: int, steps: int, n_images: int,
        batch_size: int, quick: bool) -> int:  # fmt: skip
    from sslhub.export import export_checkpoint

    torch.manual_seed(0)
    # 1. SSL weights.
    if checkpoint is None:
        print(f"[1/5] SimCLR pretraining of a torchvision ResNet-50, {pretrain_steps} steps ...", flush=True)
        for own in ("ssl_run", "ssl_data"):  # a fresh run: train() appends to an existing metrics.jsonl
            shutil.rmtree(out / own, ignore_errors=True)
        # --quick pretrains on 8 photos per class: the run's per-epoch monitor embeds its whole training folder.
        data = subset_folder(DATA / "train", out / "ssl_data", 8) if quick else DATA / "train"
        checkpoint = pretrain_resnet50(out / "ssl_run", data, pretrain_steps, batch_size)
    else:
        print(f"[1/5] using {checkpoint}", flush=True)
    ssl_backbone = sslhub.load_pretrained(checkpoint)
    arch = ssl_backbone.pretrained_cfg["arch"]
    if arch != "resnet50":
        print(f"{checkpoint}: the backbone is {arch}; this tutorial needs a torchvision-layout resnet50")
        return 2

    # 2. torchvision export, strict load into the detector's backbone body.
    print("[2/5] sslhub.export(..., to='torchvision') -> fasterrcnn_resnet50_fpn().backbone.body ...", flush=True)
    tv_file = sslhub.export(checkpoint, "torchvision", out / "resnet50_torchvision.pth", force=True)
    classes = sorted(d.name for d in (DATA / "val").iterdir() if d.is_dir())  # ImageFolder's class order
    torch.manual_seed(0)  # the detector's new layers (FPN, RPN, heads) start from the same init every run
    detector = build_detector(num_classes=len(classes) + 1)  # + background
    state = torch.load(tv_file, map_location="cpu", weights_only=True)
    try:
        detector.backbone.body.load_state_dict(state, strict=True)  # every key present, none left over
    except RuntimeError as e:
        print(f"{tv_file} does not load strictly into fasterrcnn_resnet50_fpn().backbone.body:\n{e}")
        return 1
    # The body returns layer1..layer4 feature maps ("0".."3"); pooling layer4 gives the classifier-free ResNet's
    # features, which must be what sslhub computes from the SSL checkpoint.
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        body_feats = detector.backbone.body.eval()(x)["3"].mean(dim=(2, 3))
        body_diff = float((body_feats - ssl_backbone(x)).abs().max())
    body_ok = body_diff <= 1e-4

    # 3. The detection set.
    print(f"[3/5] building {n_images} {CANVAS} px canvases from real photos with known boxes ...", flush=True)
    images, targets, set_classes = make_detection_set(n_images)
    assert set_classes == classes
    n_boxes = sum(len(t["boxes"]) for t in targets)

    # 4. A few training steps.
    print(f"[4/5] training the detector for {steps} steps (batch 2) ...", flush=True)
    probe = slice(0, min(8, n_images))  # the loss before/after training is measured on these canvases
    loss_before = detector_loss(detector, images[probe], targets[probe])
    history = train_detector(detector, images, targets, steps, batch_size=2)
    loss_after = detector_loss(detector, images[probe], targets[probe])
    falling = loss_after < loss_before
    detector.eval()
    with torch.no_grad():
        pred = detector([images[0]])[0]
    if len(pred["scores"]):  # sorted by score
        box = [round(v) for v in pred["boxes"][0].tolist()]
        top = f"{classes[int(pred['labels'][0]) - 1]} {pred['scores'][0]:.2f} at {box}"
    else:
        top = "none above the score threshold yet"
    truth = ", ".join(f"{classes[int(lab) - 1]} at {[round(v) for v in b.tolist()]}"
                      for b, lab in zip(targets[0]["boxes"], targets[0]["labels"]))  # fmt: skip

    # 5. Detectron2: weights under Detectron2's names and the config they need.
    print("[5/5] sslhub.export(..., to='detectron2') ...", flush=True)
    d2 = export_checkpoint(checkpoint, "detectron2", out / "resnet50_d2.pkl", force=True)
    config_text = d2.config_path.read_text()
    with open(d2.path, "rb") as f:
        d2_file = _ArraysOnly(f, encoding="latin1").load()  # latin1: as DetectionCheckpointer reads it
    d2_weights = d2_file["model"]
    pairs = {  # torchvision name -> Detectron2 name
        "conv1.weight": "stem.conv1.weight",
        "bn1.running_mean": "stem.conv1.norm.running_mean",
        "layer1.0.downsample.0.weight": "res2.0.shortcut.weight",
        "layer1.0.downsample.1.weight": "res2.0.shortcut.norm.weight",
        "layer3.5.bn2.running_var": "res4.5.conv2.norm.running_var",
        "layer4.2.conv3.weight": "res5.2.conv3.weight",
    }
    d2_ok = (
        d2_file["__author__"] == "sslhub"
        and d2_file["matching_heuristics"] is True
        and len(d2_weights) == sum(not k.endswith("num_batches_tracked") for k in state)
        and all(torch.equal(torch.from_numpy(d2_weights[d]), state[t].float()) for t, d in pairs.items())
    )

    ok = body_ok and falling and d2_ok
    results = {
        "tutorial": "detection_fasterrcnn",
        "checkpoint": str(checkpoint),
        "torchvision_export": str(tv_file),
        "strict_load": True,
        "body_vs_sslhub_max_abs_diff": body_diff,
        "detection_set": {"images": n_images, "boxes": n_boxes, "classes": classes, "canvas": CANVAS},
        "losses": history,
        "loss_before": loss_before,
        "loss_after": loss_after,
        "losses_fall": falling,
        "detectron2_pkl": str(d2.path),
        "detectron2_config_file": str(d2.config_path),
        "detectron2_config": d2.config,
        "detectron2_tensors": len(d2_weights),
        "detectron2_names_ok": d2_ok,
        "ok": ok,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))

    print("\n== tutorial (b): Faster R-CNN with an SSL ResNet-50 backbone ==")
    print(f"ssl weights         {checkpoint}")
    print(f"torchvision export  {tv_file.name}: strict load into fasterrcnn_resnet50_fpn().backbone.body OK")
    print(f"body vs sslhub      max |diff| of pooled layer4 features = {body_diff:.1e}")
    print(f"detection set       {n_images} canvases of {CANVAS} px, {n_boxes} pasted photos, {len(classes)} classes")
    print(f"detector loss       {loss_before:.3f} before -> {loss_after:.3f} after {steps} steps "
          f"(mean over {len(images[probe])} training canvases, same RoI sampling), falling: {falling}")  # fmt: skip
    print(f"first canvas        truth: {truth}; top detection after {steps} steps: {top}")
    print(f"detectron2 export   {d2.path.name}: {len(d2_weights)} tensors, names OK: {d2_ok}")
    print(f"detectron2 config   {d2.config_path.name}:")
    for line in config_text.splitlines():
        print(f"    {line}")
    print(f"result              {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
