"""Benchmark: SSL pre-training with sslhub's trainer vs Lightly's own modules, side by side in one run.

For every method, the same recipe (backbone, heads, loss hyperparameters, batch size, input size, epochs,
optimizer, LR schedule, seed) is trained twice on the same image folder:

  (a) sslhub: ``sslhub.training.train`` (uint8 images decoded by the DataLoader, batched augmentation on
      the device, AMP on CUDA);
  (b) Lightly: ``lightly.loss`` + ``lightly.models.modules`` heads + ``lightly.transforms`` on a torchvision
      ``ImageFolder`` with per-sample PIL transforms in the DataLoader workers, and a plain PyTorch loop as in
      Lightly's examples (momentum update at the start of each step, ``CosineWarmupScheduler`` per step, AMP
      with ``torch.autocast`` + ``GradScaler`` on CUDA exactly as on the sslhub side). No Lightning.

Both start from the same initial weights (the weights sslhub's builder makes with the seed, copied into the
Lightly model) unless ``--independent-init``. Both use ``--workers`` DataLoader workers.

Reported per method: training images/s (time of the training loop only, evaluation excluded; epoch 1 also
pays for starting the DataLoader workers), and final kNN top-1 (k=200, t=0.1) of the evaluation backbone on
the test split against a bank of the training split, computed for both sides with the same code
(``sslhub.evaluation.knn.knn_accuracy`` on features from one shared, un-augmented uint8 copy of the data).
The random-init kNN baseline is always reported beside them.

Targets (issues 3 and 4): sslhub >= 1.2x Lightly's throughput, kNN within 1.5 points of Lightly or better.

ViT methods (issues 4 and 15): ``dino_vit``, ``mae``, ``ibot``, ``dinov2`` and ``ijepa`` train their CPU-sized recipes ``dino-vit-tiny-p4-32`` /
``mae-vit-tiny-p4-32`` (timm ViT-Tiny, patch 4, 32 px; ``--backbone``/``--width`` apply to the ResNet methods
only). Their Lightly side (``scripts/bench_lightly_vit.py``) is assembled from ``MaskedVisionTransformerTIMM``,
``DINOProjectionHead`` + ``DINOLoss`` / ``MAEDecoderTIMM`` as in Lightly's ViT benchmarks; the loop adds what
those recipes need: AdamW with the recipe's betas and sslhub's two parameter groups (no decay on norms, biases,
tokens, positional embeddings), the recipe's cosine weight-decay schedule (DINO 0.04 -> 0.4, updated with
``lightly.utils.optim.update_param_groups``), the student's last-layer freeze and the teacher-temperature warmup
by epoch. kNN uses each method's evaluation encoder on both sides (DINO: the EMA teacher, MAE: the encoder),
class-token features.

Issue-14 methods (``fastsiam``, ``mmcr``, ``smog``, ``vicregl``, ``frossl``, ``macl``, ``directclr``, ``wmse``,
``emp_ssl``): their Lightly side follows Lightly's examples (``examples/pytorch/<method>.py``) where one exists, else
Lightly's loss docstrings (W-MSE, EMP-SSL, MACL); SMoG's periodic re-clustering uses sslhub's torch k-means on
both sides (the example's scikit-learn KMeans is no dependency). DetCon-S/B call Lightly's grid
``DetConSTransform`` with a placeholder mask per image, as its docstring says. Not benchmarked: PIRL (Lightly has no
PIRL model).

Examples:
  # CPU smoke (minutes):
  python scripts/bench_vs_lightly.py --data cifar10_tiny --width 0.125 --epochs 1 --batch-size 64 \\
      --methods simclr,byol --device cpu --workers 0
  # GPU, full CIFAR-10 (archives extracted once into --data-root):
  python scripts/bench_vs_lightly.py --data cifar10 --epochs 10 --device cuda --workers 12 \\
      --methods simclr,moco,byol,simsiam,barlowtwins,vicreg --out runs/bench_cifar10_gpu
  # ViT methods, CPU smoke:
  python scripts/bench_vs_lightly.py --data cifar10_tiny --epochs 2 --batch-size 32 --methods dino_vit,mae \\
      --device cpu --workers 0 --out runs/bench_vit_smoke
  # modern ViT methods (issue 15): iBOT, DINOv2, I-JEPA on their -tiny-p4-32 recipes
  python scripts/bench_vs_lightly.py --data cifar10_tiny --epochs 2 --batch-size 32 --methods ibot,dinov2,ijepa \\
      --device cpu --workers 0 --out runs/bench_vit2_smoke

Writes ``results.json`` and ``results.md`` to ``--out`` and prints the markdown table. Needs the ``lightly``
test extra (lightly 1.6.0).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import inspect
import json
import logging
import math
import os
import platform
import random
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_lightly_vit

log = logging.getLogger("bench_vs_lightly")

# --data name -> (folder under the shared data dir, training split, evaluation split, packed as .tar.gz)
DATASETS: dict[str, tuple[str, str, str, bool]] = {
    "cifar10": ("cifar10", "train", "test", True),
    "cifar10_tiny": ("cifar10_tiny", "train", "test", False),
    "clothing10": ("clothing10_160px", "train", "test", False),
}
DEFAULT_METHODS = "simclr,moco,byol,simsiam,barlowtwins,vicreg"
TARGET_SPEEDUP = 1.2
TARGET_KNN_DELTA = -1.5


# ----------------------------------------------------------------------------------------------- data


def shared_data_dir(arg: str | None) -> Path:
    """The folder that holds cifar10/, cifar10_tiny/, clothing10_160px/ (see /work/shared/data/README.md)."""
    candidates = [arg, os.environ.get("SSLHUB_SHARED_DATA"), ROOT / "shared" / "data", ROOT.parent / "shared" / "data",
                  "/work/shared/data"]  # fmt: skip
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    raise SystemExit(f"no shared data folder found (tried {[str(c) for c in candidates if c]}); pass --shared-data")


def extract_archives(src: Path, dst: Path, splits: Sequence[str]) -> Path:
    """Unpack ``src/<split>.tar.gz`` into ``dst`` once (temp folder renamed into place; a marker file says done)."""
    marker = dst / ".extracted"
    if marker.exists():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=dst.parent))
    try:
        for split in splits:
            archive = src / f"{split}.tar.gz"
            log.info("extracting %s -> %s", archive, dst)
            with tarfile.open(archive) as tf:
                # filter="data" refuses absolute paths, links out of the tree and device files.
                kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tf.extractall(tmp, **kw)
        (tmp / ".extracted").write_text(f"from {src}\n")
        if dst.exists():  # a half-written folder from an interrupted older attempt
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


def subset_folder(src: Path, n: int, cache: Path) -> Path:
    """A class-balanced subset of ``n`` images of ``src`` as a folder of symlinks (first files of each class in
    sorted order, taken round-robin over the classes): deterministic, so both sides and reruns see the same set."""
    from sslhub.data import IMG_EXTENSIONS

    dst = cache / f"{src.parent.name}_{src.name}_{n}"
    if (dst / ".complete").exists():
        return dst
    classes = sorted(d for d in src.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = {c: sorted(f for f in c.iterdir() if f.suffix.lower() in IMG_EXTENSIONS) for c in classes}
    picked: list[Path] = []
    for i in range(max((len(v) for v in files.values()), default=0)):
        for c in classes:
            if i < len(files[c]) and len(picked) < n:
                picked.append(files[c][i])
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=cache))
    for f in picked:
        (tmp / f.parent.name).mkdir(exist_ok=True)
        os.symlink(f.resolve(), tmp / f.parent.name / f.name)
    (tmp / ".complete").write_text(f"{len(picked)} images from {src}\n")
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)
    return dst


def prepare_data(args: argparse.Namespace) -> tuple[Path, Path]:
    """(training folder, evaluation folder) for ``--data``, extracted/subsampled under ``--data-root``."""
    if args.data not in DATASETS:
        root = Path(args.data)
        if not (root / "train").is_dir() or not (root / "test").is_dir():
            raise SystemExit(f"--data {args.data!r}: use one of {sorted(DATASETS)} or a folder with train/ and test/")
        train_dir, test_dir = root / "train", root / "test"
    else:
        folder, train_split, test_split, packed = DATASETS[args.data]
        src = shared_data_dir(args.shared_data) / folder
        base = extract_archives(src, Path(args.data_root) / folder, (train_split, test_split)) if packed else src
        train_dir, test_dir = base / train_split, base / test_split
    subsets = Path(args.data_root) / "subsets"
    if args.max_train_images:
        train_dir = subset_folder(train_dir, args.max_train_images, subsets)
    if args.max_test_images:
        test_dir = subset_folder(test_dir, args.max_test_images, subsets)
    return train_dir, test_dir


@dataclass
class EvalSet:
    """Un-augmented uint8 images (decoded once, at the input size) for the kNN bank and queries."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    classes: list[str]


def load_eval_set(train_dir: Path, test_dir: Path, size: int, workers: int) -> EvalSet:
    from torch.utils.data import DataLoader

    from sslhub.data import ImageFolderDataset, collate_skip_invalid

    def load(ds: Any) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for batch in DataLoader(ds, batch_size=512, num_workers=workers, collate_fn=collate_skip_invalid):
            if batch is not None:
                xs.append(batch[0])
                ys.append(batch[1])
        return torch.cat(xs), torch.cat(ys)

    # Same decoding as the trainer's own monitor: shorter side resized to the input size, center crop.
    tr = ImageFolderDataset(train_dir, decode_size=size, verify=False)
    te = ImageFolderDataset(test_dir, decode_size=size, verify=False, classes=tr.classes)
    (trx, try_), (tex, tey) = load(tr), load(te)
    return EvalSet(trx, try_, tex, tey, list(tr.classes))


@torch.no_grad()
def embed(backbone: nn.Module, x: Tensor, device: torch.device, batch_size: int = 512) -> Tensor:
    """Features of the frozen backbone (eval mode, fp32) for uint8 images, ImageNet-normalised as in training."""
    from sslhub.transforms import IMAGENET_NORMALIZE

    backbone = backbone.to(device).eval()
    mean = torch.tensor(IMAGENET_NORMALIZE["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_NORMALIZE["std"], device=device).view(1, 3, 1, 1)
    out = []
    for i in range(0, len(x), batch_size):
        xb = (x[i : i + batch_size].to(device).float() / 255 - mean) / std
        out.append(backbone(xb).flatten(1).float().cpu())
    return torch.cat(out)


def knn_top1(backbone: nn.Module, ev: EvalSet, device: torch.device, k: int, t: float) -> float:
    """kNN top-1 (%) of the test split against the training split; the same code for every model."""
    from sslhub.evaluation.knn import knn_accuracy

    acc = knn_accuracy(embed(backbone, ev.train_x, device), ev.train_y, embed(backbone, ev.test_x, device), ev.test_y,
                       k=k, t=t, num_classes=len(ev.classes), topk=(1,), device=device)  # fmt: skip
    return acc[1]


# -------------------------------------------------------------------------------------------- recipes


def resolve_recipe(method: str, args: argparse.Namespace, batch_size: int) -> dict[str, Any]:
    """The sslhub recipe ``<method>-<backbone>`` with the benchmark's settings; both sides train from it.

    ViT methods use their CPU-sized recipe (``dino-vit-tiny-p4-32``, ``mae-vit-tiny-p4-32``) whatever ``--backbone``/``--width``
    say: the ViT's image and patch size and the multi-crop sizes are fixed by the recipe, so ``--input-size``
    must equal the recipe's input size there."""
    from bench_lightly_vit import VIT_RECIPES

    from sslhub.recipes import get_recipe

    overrides = [
        # The Worker variant (num_ftrs conv, head without BN) is sslhub-specific; benchmark the standard model.
        "worker=null",
        f"batch_size={batch_size}",
        f"seed={args.seed}",
        f"epochs={args.epochs}",
    ]
    if method in VIT_RECIPES:
        r = get_recipe(VIT_RECIPES[method], [*overrides, *args.set])
        if int(r["input_size"]) != args.input_size:
            raise SystemExit(f"{r['name']} trains at {r['input_size']} px (ViT img_size, crop sizes); run it with "
                             f"--input-size {r['input_size']}, not {args.input_size}")  # fmt: skip
    else:
        overrides.append(f"input_size={args.input_size}")
        if args.backbone.startswith("resnet-"):
            overrides.append(f"backbone.width={args.width}")
        r = get_recipe(f"{method}-{args.backbone}", [*overrides, *args.set])
    r.setdefault("load_size", r["input_size"])
    return r


def backbone_label(recipe: dict[str, Any]) -> str:
    """A short description of the recipe's backbone for the report (``resnet-18 width 0.125``,
    ``vit_tiny_patch16_224 patch 4 img 32``)."""
    bb = recipe["backbone"]
    extra = [f"{k.replace('_size', '')} {v:g}" if isinstance(v, float) else f"{k.replace('_size', '')} {v}"
             for k, v in bb.items() if k in ("width", "patch_size", "img_size") and v is not None]  # fmt: skip
    return " ".join([bb["arch"], *extra])


def method_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    """Model hyperparameters as sslhub's method class sees them: its defaults updated with the recipe's."""
    from sslhub.methods import METHODS

    sig = inspect.signature(METHODS[recipe["method"]])
    kw = {n: p.default for n, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}
    kw.update(recipe.get("model") or {})
    kw.pop("gather_distributed", None)  # single process
    return kw


@dataclass
class SslhubInit:
    """What the Lightly side copies from sslhub's freshly built model."""

    state: dict[str, Tensor]  # initial weights
    eval_prefix: str  # state-dict prefix of the evaluation backbone (``backbone.``, ``backbone.vit.``)
    # parameter names of each optimizer group, for methods that define ``param_groups`` (the ViT methods)
    param_group_names: list[list[str]] | None = None


def sslhub_init(recipe: dict[str, Any]) -> SslhubInit:
    """The model sslhub's trainer builds first (same seed, same builder calls as ``trainer._build_model``)."""
    from sslhub.backbones import create_backbone
    from sslhub.methods import build_method

    torch.manual_seed(int(recipe["seed"]))
    random.seed(int(recipe["seed"]))
    bb = dict(recipe["backbone"])
    arch = bb.pop("arch")
    backbone = create_backbone(arch, **{k: v for k, v in bb.items() if v is not None})
    model = build_method(recipe["method"], backbone, backbone.num_features, **(recipe.get("model") or {}))
    groups = None
    if hasattr(model, "param_groups"):
        names = {id(p): n for n, p in model.named_parameters()}
        groups = [sorted(names[id(p)] for p in g["params"]) for g in model.param_groups(0.0)]
    return SslhubInit({k: v.detach().clone() for k, v in model.state_dict().items()}, model.eval_prefix, groups)


@contextlib.contextmanager
def trainer_transform_check(recipe: dict[str, Any]) -> Iterator[str | None]:
    """Make sure the trainer's augmentation produces ``input_size`` views; work around it if not.

    ``BYOLTransform``/``TiCoTransform`` take their two view transforms instead of ``input_size``, and the
    trainer builds them without arguments, i.e. with 224 px views whatever the recipe's input size (found while
    writing this benchmark; reported to the lead). Comparing that with Lightly at the recipe's size would be
    meaningless, so for the duration of the sslhub run the trainer's transform builder is replaced by one that
    passes ``input_size`` to both views. Yields a note when the workaround is active, None otherwise.
    """
    import sslhub.transforms as T
    from sslhub.training import trainer

    size, load = int(recipe["input_size"]), int(recipe["load_size"])
    original = trainer.build_recipe_transform
    views = original(recipe)(torch.zeros(2, 3, load, load, dtype=torch.uint8))
    views = [v for v in views if v.ndim == 4 and v.shape[1] == 3]  # images only (not VICRegL's grids, DetCon's masks)
    expected = expected_view_sizes(recipe)
    if [v.shape[-1] for v in views] == expected[: len(views)] and all(v.shape[-2] == v.shape[-1] for v in views):
        yield None
        return

    def fixed(r: dict[str, Any]) -> Any:
        return build_multi_view(T, r["transform"], int(r["input_size"]))

    trainer.build_recipe_transform = fixed
    try:
        yield (f"trainer's {recipe['transform']['name']} made {tuple(views[0].shape[-2:])} views for input_size={size}; "
               "benchmark patched the trainer's transform builder to pass input_size to both views")  # fmt: skip
    finally:
        trainer.build_recipe_transform = original


def expected_view_sizes(recipe: dict[str, Any]) -> list[int]:
    """Side of each view the recipe's transform should make: multi-crop (DINO) ``global_crop_size`` x 2 then
    ``local_crop_size`` x ``n_local_views``; otherwise ``input_size`` for every view."""
    args = recipe["transform"].get("args") or {}
    if "global_crop_size" in args:
        return [int(args["global_crop_size"])] * 2 + [int(args.get("local_crop_size", 0))] * int(args.get("n_local_views", 0))
    return [int(recipe["input_size"])] * 16


def build_multi_view(module: Any, spec: dict[str, Any], size: int) -> Any:
    """``spec['name']`` from ``module`` (``sslhub.transforms`` or ``lightly.transforms``) at ``size``.

    Classes taking ``input_size`` get it plus the recipe's args; BYOL-style classes get their two view
    transforms, each built with ``input_size`` and the recipe's args; multi-crop classes (DINO) take their crop
    sizes from the recipe's args. YAML lists become tuples (Lightly's signatures)."""
    name = spec["name"]
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in (spec.get("args") or {}).items()}
    cls = getattr(module, name, None)
    if cls is None and module.__name__.startswith("lightly"):
        from bench_lightly_vit import LIGHTLY_TRANSFORMS

        cls = LIGHTLY_TRANSFORMS[name]
    params = inspect.signature(cls).parameters
    if "global_crop_size" in params or "crop_sizes" in params:  # multi-crop (DINO, VICRegL, SMoG): sizes in args
        return cls(**args)
    if "input_size" in params:
        args.setdefault("input_size", size)
        return cls(**args)
    if "view_1_transform" in params:
        stem = name[: -len("Transform")]
        v1, v2 = getattr(module, f"{stem}View1Transform"), getattr(module, f"{stem}View2Transform")
        return cls(view_1_transform=v1(input_size=size, **args), view_2_transform=v2(input_size=size, **args))
    raise SystemExit(f"transform {name}: don't know how to set its input size")


# ------------------------------------------------------------------------------------ the Lightly side


def lightly_backbone(arch: str, width: float) -> tuple[nn.Module, int]:
    """The backbone built with Lightly's / torchvision's own classes, architecture-identical to sslhub's.

    ``resnet-N``: the Lightly Worker/CLI construction, ``Sequential(get_norm_layer(3, 0), *resnet.children()[:-1],
    AdaptiveAvgPool2d(1))`` (sslhub's ResNetGenerator keeps that input BatchNorm; Lightly's CIFAR-10 benchmark
    script has none). ``resnetN``: torchvision ResNet without ``fc``, as in Lightly's examples."""
    if arch.startswith("resnet-"):
        from lightly.models import ResNetGenerator
        from lightly.models.batchnorm import get_norm_layer

        resnet = ResNetGenerator(arch, width=width)
        nf = resnet.linear.in_features
        return nn.Sequential(get_norm_layer(3, 0), *list(resnet.children())[:-1], nn.AdaptiveAvgPool2d(1)), nf
    import torchvision

    if hasattr(torchvision.models, arch) and arch.startswith("resnet"):
        resnet = getattr(torchvision.models, arch)()
        return nn.Sequential(*list(resnet.children())[:-1]), resnet.fc.in_features
    raise SystemExit(f"--backbone {arch}: the Lightly side supports resnet-N (ResNetGenerator) and torchvision resnetN")


def _momentum_copy(module: nn.Module) -> nn.Module:
    from lightly.models.utils import deactivate_requires_grad

    m = copy.deepcopy(module)
    deactivate_requires_grad(m)
    return m


class LightlyModel(nn.Module):
    """A method assembled from Lightly's modules, with the attribute names of Lightly's examples.

    ``momentum`` is ``(start, end)`` of the EMA schedule for methods with a momentum encoder."""

    momentum: tuple[float, float] | None = None

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return []

    def features(self, x: Tensor) -> Tensor:
        return self.backbone(x).flatten(1)


class LSimCLR(LightlyModel):
    def __init__(self, backbone: nn.Module, nf: int, *, hidden_dim: int | None = None, out_dim: int = 128,
                 temperature: float = 0.5, memory_bank_size: int = 0, batch_norm: bool = True, loss: str = "ntxent",
                 **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.loss import DCLLoss, DCLWLoss, NTXentLoss
        from lightly.models.modules.heads import SimCLRProjectionHead

        self.backbone = backbone
        self.projection_head = SimCLRProjectionHead(nf, hidden_dim or nf, out_dim, batch_norm=batch_norm)
        self.criterion = {
            "ntxent": lambda: NTXentLoss(temperature=temperature, memory_bank_size=memory_bank_size),
            "dcl": lambda: DCLLoss(temperature=temperature),
            "dclw": lambda: DCLWLoss(temperature=temperature),
        }[loss]()

    def forward(self, views: list[Tensor]) -> Tensor:
        z0, z1 = (self.projection_head(self.features(v)) for v in views[:2])
        return self.criterion(z0, z1)


class LMoCo(LightlyModel):
    def __init__(self, backbone: nn.Module, nf: int, *, hidden_dim: int | None = None, out_dim: int = 128,
                 temperature: float = 0.2, memory_bank_size: int = 4096, momentum_start: float = 0.996,
                 momentum_end: float = 1.0, **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.loss import NTXentLoss
        from lightly.models.modules.heads import MoCoProjectionHead

        self.backbone = backbone
        self.projection_head = MoCoProjectionHead(nf, hidden_dim or nf, out_dim)
        self.backbone_momentum = _momentum_copy(self.backbone)
        self.projection_head_momentum = _momentum_copy(self.projection_head)
        self.criterion = NTXentLoss(temperature=temperature, memory_bank_size=(memory_bank_size, out_dim))
        self.momentum = (momentum_start, momentum_end)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.backbone, self.backbone_momentum), (self.projection_head, self.projection_head_momentum)]

    def forward(self, views: list[Tensor]) -> Tensor:
        q = self.projection_head(self.features(views[0]))
        with torch.no_grad():
            k = self.projection_head_momentum(self.backbone_momentum(views[1]).flatten(1))
        return self.criterion(q, k)


class LBYOL(LightlyModel):
    def __init__(self, backbone: nn.Module, nf: int, *, hidden_dim: int = 4096, out_dim: int = 256,
                 momentum_start: float = 0.99, momentum_end: float = 1.0, **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules.heads import BYOLPredictionHead, BYOLProjectionHead

        self.backbone = backbone
        self.projection_head = BYOLProjectionHead(nf, hidden_dim, out_dim)
        self.prediction_head = BYOLPredictionHead(out_dim, hidden_dim, out_dim)
        self.backbone_momentum = _momentum_copy(self.backbone)
        self.projection_head_momentum = _momentum_copy(self.projection_head)
        self.criterion = NegativeCosineSimilarity()
        self.momentum = (momentum_start, momentum_end)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.backbone, self.backbone_momentum), (self.projection_head, self.projection_head_momentum)]

    def _target(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.projection_head_momentum(self.backbone_momentum(x).flatten(1))

    def forward(self, views: list[Tensor]) -> Tensor:
        x0, x1 = views[:2]
        p0 = self.prediction_head(self.projection_head(self.features(x0)))
        p1 = self.prediction_head(self.projection_head(self.features(x1)))
        z0, z1 = self._target(x0), self._target(x1)
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))


class LTiCo(LBYOL):
    def __init__(self, backbone: nn.Module, nf: int, *, hidden_dim: int = 4096, out_dim: int = 256,
                 momentum_start: float = 0.99, momentum_end: float = 1.0, beta: float = 0.9, rho: float = 20.0,
                 **_: Any) -> None:  # fmt: skip
        LightlyModel.__init__(self)
        from lightly.loss import TiCoLoss
        from lightly.models.modules.heads import TiCoProjectionHead

        self.backbone = backbone
        self.projection_head = TiCoProjectionHead(nf, hidden_dim, out_dim)
        self.backbone_momentum = _momentum_copy(self.backbone)
        self.projection_head_momentum = _momentum_copy(self.projection_head)
        self.criterion = TiCoLoss(beta=beta, rho=rho)
        self.momentum = (momentum_start, momentum_end)

    def forward(self, views: list[Tensor]) -> Tensor:
        return self.criterion(self.projection_head(self.features(views[0])), self._target(views[1]))


class LSimSiam(LightlyModel):
    def __init__(self, backbone: nn.Module, nf: int, *, hidden_dim: int | None = None, out_dim: int = 2048,
                 pred_hidden_dim: int = 512, **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules.heads import (
            SimSiamPredictionHead,
            SimSiamProjectionHead,
        )

        self.backbone = backbone
        self.projection_head = SimSiamProjectionHead(nf, hidden_dim or nf, out_dim)
        self.prediction_head = SimSiamPredictionHead(out_dim, pred_hidden_dim, out_dim)
        self.criterion = NegativeCosineSimilarity()

    def forward(self, views: list[Tensor]) -> Tensor:
        z0, z1 = (self.projection_head(self.features(v)) for v in views[:2])
        p0, p1 = self.prediction_head(z0), self.prediction_head(z1)
        return 0.5 * (self.criterion(p0, z1.detach()) + self.criterion(p1, z0.detach()))


class LBarlowTwins(LightlyModel):
    def __init__(self, backbone: nn.Module, nf: int, *, hidden_dim: int = 8192, out_dim: int = 8192,
                 lambda_param: float = 5e-3, **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.loss import BarlowTwinsLoss
        from lightly.models.modules.heads import BarlowTwinsProjectionHead

        self.backbone = backbone
        self.projection_head = BarlowTwinsProjectionHead(nf, hidden_dim, out_dim)
        self.criterion = BarlowTwinsLoss(lambda_param=lambda_param)

    def forward(self, views: list[Tensor]) -> Tensor:
        z0, z1 = (self.projection_head(self.features(v)) for v in views[:2])
        return self.criterion(z0, z1)


class LVICReg(LightlyModel):
    def __init__(self, backbone: nn.Module, nf: int, *, hidden_dim: int = 2048, out_dim: int = 2048,
                 num_layers: int = 2, **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.loss import VICRegLoss
        from lightly.models.modules.heads import VICRegProjectionHead

        self.backbone = backbone
        self.projection_head = VICRegProjectionHead(nf, hidden_dim, out_dim, num_layers=num_layers)
        self.criterion = VICRegLoss()

    def forward(self, views: list[Tensor]) -> Tensor:
        z0, z1 = (self.projection_head(self.features(v)) for v in views[:2])
        return self.criterion(z0, z1)


class LNNCLR(LightlyModel):
    def __init__(self, backbone: nn.Module, nf: int, *, hidden_dim: int = 2048, out_dim: int = 256,
                 pred_hidden_dim: int = 4096, memory_bank_size: int = 4096, temperature: float = 0.1,
                 **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.loss import NTXentLoss
        from lightly.models.modules import NNMemoryBankModule
        from lightly.models.modules.heads import (
            NNCLRPredictionHead,
            NNCLRProjectionHead,
        )

        self.backbone = backbone
        self.projection_head = NNCLRProjectionHead(nf, hidden_dim, out_dim)
        self.prediction_head = NNCLRPredictionHead(out_dim, pred_hidden_dim, out_dim)
        self.memory_bank = NNMemoryBankModule(size=(memory_bank_size, out_dim))
        self.criterion = NTXentLoss(temperature=temperature)

    def forward(self, views: list[Tensor]) -> Tensor:
        z0, z1 = (self.projection_head(self.features(v)) for v in views[:2])
        p0, p1 = self.prediction_head(z0), self.prediction_head(z1)
        nn0 = self.memory_bank(z0.detach(), update=False)
        nn1 = self.memory_bank(z1.detach(), update=True)
        return 0.5 * (self.criterion(nn0, p1) + self.criterion(nn1, p0))


class LFastSiam(LightlyModel):
    """Lightly's examples/pytorch/fastsiam.py."""

    def __init__(self, backbone: nn.Module, nf: int, *, hidden_dim: int | None = None, out_dim: int = 2048,
                 pred_hidden_dim: int = 512, **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead

        self.backbone = backbone
        self.projection_head = SimSiamProjectionHead(nf, hidden_dim or nf, out_dim)
        self.prediction_head = SimSiamPredictionHead(out_dim, pred_hidden_dim, out_dim)
        self.criterion = NegativeCosineSimilarity()

    def forward(self, views: list[Tensor]) -> Tensor:
        feats = []
        for v in views:
            z = self.projection_head(self.features(v))
            feats.append((z.detach(), self.prediction_head(z)))
        zs, ps = torch.stack([z for z, _ in feats]), torch.stack([p for _, p in feats])
        loss = 0.0
        for i in range(len(views)):
            mask = torch.arange(len(views), device=zs.device) != i
            loss += self.criterion(ps[i], torch.mean(zs[mask], dim=0)) / len(views)
        return loss


class LMMCR(LightlyModel):
    """Lightly's examples/pytorch/mmcr.py (EMA per step here, with the recipe's cosine schedule). With the recipe's
    ``normalize`` (default) the embeddings are L2-normalised before Lightly's MMCRLoss, as sslhub's method and the
    paper do: the example's unnormalised loss is unbounded below and diverges on both sides."""

    def __init__(self, backbone: nn.Module, nf: int, *, hidden_dim: int | None = None, out_dim: int = 128,
                 num_layers: int = 2, lmda: float = 5e-3, momentum_start: float = 0.996, momentum_end: float = 1.0,
                 normalize: bool = True, **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.loss import MMCRLoss
        from lightly.models.modules import MMCRProjectionHead

        self.backbone = backbone
        self.projection_head = MMCRProjectionHead(nf, hidden_dim or nf, out_dim, num_layers=num_layers)
        self.backbone_momentum = _momentum_copy(self.backbone)
        self.projection_head_momentum = _momentum_copy(self.projection_head)
        self.criterion = MMCRLoss(lmda=lmda)
        self.momentum = (momentum_start, momentum_end)
        self.normalize = normalize

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.backbone, self.backbone_momentum), (self.projection_head, self.projection_head_momentum)]

    def forward(self, views: list[Tensor]) -> Tensor:
        z_o = torch.stack([self.projection_head(self.features(x)) for x in views], dim=1)
        z_m = torch.stack([self.projection_head_momentum(self.backbone_momentum(x).flatten(1)).detach() for x in views], dim=1)
        if self.normalize:
            z_o, z_m = nn.functional.normalize(z_o, dim=-1), nn.functional.normalize(z_m, dim=-1)
        return self.criterion(z_o, z_m)


class LSMoG(LightlyModel):
    """Lightly's examples/pytorch/smog.py; the periodic re-clustering uses sslhub's torch k-means (the example's
    scikit-learn KMeans is not a dependency), the constant EMA happens inside ``forward`` as in the example."""

    def __init__(self, backbone: nn.Module, nf: int, *, hidden_dim: int = 2048, out_dim: int = 128,
                 pred_hidden_dim: int = 2048, n_groups: int = 300, beta: float = 0.99, temperature: float = 0.1,
                 memory_bank_size: int = 76800, reset_interval: int = 300, momentum: float = 0.99, **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.models.modules import SMoGPredictionHead, SMoGProjectionHead, SMoGPrototypes
        from lightly.models.modules.memory_bank import MemoryBankModule

        self.backbone = backbone
        self.projection_head = SMoGProjectionHead(nf, hidden_dim, out_dim)
        self.prediction_head = SMoGPredictionHead(out_dim, pred_hidden_dim, out_dim)
        self.backbone_momentum = _momentum_copy(self.backbone)
        self.projection_head_momentum = _momentum_copy(self.projection_head)
        self.smog = SMoGPrototypes(group_features=torch.rand(n_groups, out_dim), beta=beta)
        self.memory_bank = MemoryBankModule(size=(memory_bank_size, out_dim))
        self.criterion = nn.CrossEntropyLoss()
        self.n_groups, self.temperature, self.reset_interval, self.ema = n_groups, temperature, reset_interval, momentum
        self.global_step = 0

    def forward(self, views: list[Tensor]) -> Tensor:
        from lightly.models import utils

        from sslhub.methods.clustering import kmeans

        x0, x1 = views[:2]
        if self.global_step % 2:
            x1, x0 = x0, x1
        if self.global_step > 0 and self.global_step % self.reset_interval == 0:
            centres = kmeans(self.memory_bank.bank.detach().float(), self.n_groups)
            self.smog.set_group_features(nn.functional.normalize(centres, dim=1))
            self.backbone_momentum = _momentum_copy(self.backbone)
            self.projection_head_momentum = _momentum_copy(self.projection_head)
        else:
            utils.update_momentum(self.backbone, self.backbone_momentum, self.ema)
            utils.update_momentum(self.projection_head, self.projection_head_momentum, self.ema)
        self.global_step += 1
        x0_encoded = self.projection_head(self.features(x0))
        x0_predicted = self.prediction_head(x0_encoded)
        x1_encoded = self.projection_head_momentum(self.backbone_momentum(x1).flatten(1))
        assignments = self.smog.assign_groups(x1_encoded)
        group_features = self.smog.get_updated_group_features(x0_encoded)
        logits = self.smog(x0_predicted, group_features, temperature=self.temperature)
        self.smog.set_group_features(group_features)
        loss = self.criterion(logits, assignments)
        self.memory_bank(x0_encoded, update=True)
        return loss


class LVICRegL(LightlyModel):
    """Lightly's examples/pytorch/vicregl.py: views then grids; the ResNet's last feature map (pooled to the grid
    size when they differ, as sslhub's VICRegL)."""

    def __init__(self, backbone: nn.Module, nf: int, *, hidden_dim: int = 2048, out_dim: int = 2048,
                 local_hidden_dim: int = 128, local_out_dim: int = 128, n_global_views: int = 2, lambda_param: float = 25.0,
                 mu_param: float = 25.0, nu_param: float = 1.0, alpha: float = 0.75, num_matches: Sequence[int] = (20, 4),
                 **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.loss import VICRegLLoss
        from lightly.models.modules import BarlowTwinsProjectionHead
        from lightly.models.modules.heads import VicRegLLocalProjectionHead

        self.backbone = backbone
        self.projection_head = BarlowTwinsProjectionHead(nf, hidden_dim, out_dim)
        self.local_projection_head = VicRegLLocalProjectionHead(nf, local_hidden_dim, local_out_dim)
        self.n_global_views = n_global_views
        self.criterion = VICRegLLoss(lambda_param=lambda_param, mu_param=mu_param, nu_param=nu_param, alpha=alpha,
                                     num_matches=tuple(num_matches))  # fmt: skip

    @staticmethod
    def feature_map(backbone: nn.Module, x: Tensor) -> Tensor:
        for m in backbone:  # the Sequential without its final pooling
            if isinstance(m, (nn.AdaptiveAvgPool2d, nn.Flatten)):
                break
            x = m(x)
        return x

    def forward(self, views_and_grids: list[Tensor]) -> Tensor:
        n = len(views_and_grids) // 2
        views, grids = views_and_grids[:n], views_and_grids[n:]
        features = []
        for view, grid in zip(views, grids):
            x = self.feature_map(self.backbone, view)
            z = self.projection_head(nn.functional.adaptive_avg_pool2d(x, 1).flatten(start_dim=1))
            if tuple(x.shape[2:]) != tuple(grid.shape[1:3]):
                x = nn.functional.adaptive_avg_pool2d(x, grid.shape[1:3])
            features.append((z, self.local_projection_head(x.permute(0, 2, 3, 1))))
        k = self.n_global_views
        loss = self.criterion(global_view_features=features[:k], global_view_grids=grids[:k],
                              local_view_features=features[k:] or None, local_view_grids=grids[k:] or None)  # fmt: skip
        return loss.reshape(())


class LightlyRegionViews:
    """Lightly's grid ``DetConSTransform`` called as its docstring says, with the image and a placeholder ``Mask``
    that ``AddGridTransform`` fills; the two ``(view, mask)`` pairs come back flat, ``[x0, mask0, x1, mask1]``,
    so the DataLoader collates them into tensors."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def __call__(self, image: Any) -> list[Tensor]:
        from torchvision.tv_tensors import Mask

        w, h = image.size
        pairs = self.transform(image, Mask(torch.zeros(1, h, w, dtype=torch.long)))
        return [t.as_subclass(Tensor) for pair in pairs for t in pair]


class LDetCon(LightlyModel):
    """Lightly's examples/pytorch/detcon.py (DetCon-S: SimCLR head, ``pool_masked`` over the grid regions of the
    last feature map); with ``byol=True`` DetCon-B: BYOL's heads and momentum encoder, ``DetConBLoss``."""

    def __init__(self, backbone: nn.Module, nf: int, *, hidden_dim: int | None = None, out_dim: int = 128,
                 num_classes: int = 25, temperature: float = 0.1, momentum_start: float = 0.99,
                 momentum_end: float = 1.0, byol: bool = False, **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.loss import DetConBLoss, DetConSLoss
        from lightly.models.modules.heads import BYOLPredictionHead, BYOLProjectionHead, SimCLRProjectionHead

        self.backbone = backbone
        self.num_classes, self.byol = num_classes, byol
        if byol:
            self.projection_head = BYOLProjectionHead(nf, hidden_dim or 4096, out_dim)
            self.prediction_head = BYOLPredictionHead(out_dim, hidden_dim or 4096, out_dim)
            self.backbone_momentum = _momentum_copy(self.backbone)
            self.projection_head_momentum = _momentum_copy(self.projection_head)
            self.criterion = DetConBLoss(temperature=temperature, gather_distributed=False)
            self.momentum = (momentum_start, momentum_end)
        else:
            self.projection_head = SimCLRProjectionHead(nf, hidden_dim or nf, out_dim)
            self.criterion = DetConSLoss(temperature=temperature, gather_distributed=False)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        if not self.byol:
            return []
        return [(self.backbone, self.backbone_momentum), (self.projection_head, self.projection_head_momentum)]

    def pooled(self, backbone: nn.Module, head: Callable[[Tensor], Tensor], x: Tensor, mask: Tensor) -> Tensor:
        from lightly.models import utils

        features = LVICRegL.feature_map(backbone, x)
        mask_down = nn.functional.interpolate(mask.float(), size=features.shape[2:], mode="nearest").long().squeeze(1)
        pooled = utils.pool_masked(features, mask_down, num_cls=self.num_classes).permute(0, 2, 1)
        b, m, d = pooled.shape
        return head(pooled.reshape(b * m, d)).reshape(b, m, -1)

    def forward(self, views: list[Tensor]) -> Tensor:
        x0, mask0, x1, mask1 = views
        idx = torch.arange(self.num_classes, device=x0.device).unsqueeze(0).expand(x0.shape[0], -1)
        if not self.byol:
            z0 = self.pooled(self.backbone, self.projection_head, x0, mask0)
            z1 = self.pooled(self.backbone, self.projection_head, x1, mask1)
            return self.criterion(z0, z1, idx, idx)
        online = lambda f: self.prediction_head(self.projection_head(f))  # noqa: E731
        p0, p1 = self.pooled(self.backbone, online, x0, mask0), self.pooled(self.backbone, online, x1, mask1)
        with torch.no_grad():
            t0 = self.pooled(self.backbone_momentum, self.projection_head_momentum, x0, mask0)
            t1 = self.pooled(self.backbone_momentum, self.projection_head_momentum, x1, mask1)
        return self.criterion(p0, p1, t0, t1, idx, idx)


class _LPooledViews(LightlyModel):
    """One projection of every view's pooled features, then ``self.loss(list of projections)``."""

    def forward(self, views: list[Tensor]) -> Tensor:
        return self.criterion([self.projection_head(self.features(v)) for v in views])


class LFroSSL(_LPooledViews):
    """Lightly's examples/pytorch/frossl.py."""

    def __init__(self, backbone: nn.Module, nf: int, *, hidden_dim: int = 2048, out_dim: int = 2048, num_layers: int = 2,
                 invariance_weight: float = 1.0, **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.loss import FroSSLLoss
        from lightly.models.modules.heads import VICRegProjectionHead

        self.backbone = backbone
        self.projection_head = VICRegProjectionHead(input_dim=nf, hidden_dim=hidden_dim, output_dim=out_dim, num_layers=num_layers)
        self.criterion = FroSSLLoss(invariance_weight=invariance_weight)


class LMACL(LightlyModel):
    """SimCLR's head with Lightly's MACLLoss (its docstring: 'feed through SimCLR or MoCo model')."""

    def __init__(self, backbone: nn.Module, nf: int, *, hidden_dim: int | None = None, out_dim: int = 128,
                 temperature: float = 0.1, alpha: float = 0.5, A_0: float = 0.0, **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.loss import MACLLoss
        from lightly.models.modules.heads import SimCLRProjectionHead

        self.backbone = backbone
        self.projection_head = SimCLRProjectionHead(nf, hidden_dim or nf, out_dim)
        self.criterion = MACLLoss(temperature=temperature, alpha=alpha, A_0=A_0)

    def forward(self, views: list[Tensor]) -> Tensor:
        z0, z1 = (self.projection_head(self.features(v)) for v in views[:2])
        return self.criterion(z0, z1)


class LDirectCLR(LightlyModel):
    """Lightly's examples/pytorch/directclr.py: no head, both views as one batch."""

    def __init__(self, backbone: nn.Module, nf: int, *, loss_dim: int = 64, temperature: float = 0.5,
                 memory_bank_size: int = 0, **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.loss import DirectCLRLoss

        self.backbone = backbone
        self.criterion = DirectCLRLoss(loss_dim=loss_dim, temperature=temperature, memory_bank_size=memory_bank_size)

    def forward(self, views: list[Tensor]) -> Tensor:
        z0, z1 = self.features(torch.cat(views[:2])).chunk(2, dim=0)
        return self.criterion(z0, z1)


def _lightly_mlp(nf: int, hidden_dim: int, out_dim: int) -> nn.Module:
    from lightly.models.modules.heads import ProjectionHead

    return ProjectionHead([(nf, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU()), (hidden_dim, out_dim, None, None)])


class LWMSE(LightlyModel):
    """Lightly's WMSELoss on a Linear-BN-ReLU-Linear projector, all views as one batch (the W-MSE authors' code)."""

    def __init__(self, backbone: nn.Module, nf: int, *, hidden_dim: int = 1024, out_dim: int = 64, num_samples: int = 2,
                 w_size: int = 128, w_iter: int = 1, momentum: float = 0.01, eps: float = 0.0, **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.loss import WMSELoss

        self.backbone = backbone
        self.projection_head = _lightly_mlp(nf, hidden_dim, out_dim)
        self.criterion = WMSELoss(embedding_dim=out_dim, momentum=momentum, eps=eps, w_iter=w_iter, w_size=w_size,
                                  num_samples=num_samples)  # fmt: skip

    def forward(self, views: list[Tensor]) -> Tensor:
        return self.criterion(self.projection_head(self.features(torch.cat(views[: self.criterion.num_samples]))))


class LEMPSSL(LightlyModel):
    """Lightly's EMPSSLLoss on normalised projections of all views (one batch, as the EMP-SSL authors' code)."""

    def __init__(self, backbone: nn.Module, nf: int, *, hidden_dim: int = 4096, out_dim: int = 512, tcr_eps: float = 0.2,
                 inv_coef: float = 200.0, **_: Any) -> None:  # fmt: skip
        super().__init__()
        from lightly.loss import EMPSSLLoss

        self.backbone = backbone
        self.projection_head = _lightly_mlp(nf, hidden_dim, out_dim)
        self.criterion = EMPSSLLoss(tcr_eps=tcr_eps, inv_coef=inv_coef)

    def forward(self, views: list[Tensor]) -> Tensor:
        z = self.projection_head(self.features(torch.cat(views)))
        return self.criterion([nn.functional.normalize(c, dim=1) for c in z.chunk(len(views))])


LIGHTLY_METHODS: dict[str, Callable[..., LightlyModel]] = {
    "simclr": LSimCLR,
    "dcl": lambda b, nf, **kw: LSimCLR(b, nf, loss="dcl", **kw),
    "dclw": lambda b, nf, **kw: LSimCLR(b, nf, loss="dclw", **kw),
    "moco": LMoCo,
    "byol": LBYOL,
    "tico": LTiCo,
    "simsiam": LSimSiam,
    "barlowtwins": LBarlowTwins,
    "vicreg": LVICReg,
    "nnclr": LNNCLR,
    # issue 14 (Lightly has no PIRL model)
    "fastsiam": LFastSiam,
    "mmcr": LMMCR,
    "smog": LSMoG,
    "vicregl": LVICRegL,
    "frossl": LFroSSL,
    "macl": LMACL,
    "directclr": LDirectCLR,
    "wmse": LWMSE,
    "emp_ssl": LEMPSSL,
    "detcon_s": LDetCon,
    "detcon_b": lambda b, nf, **kw: LDetCon(b, nf, byol=True, **kw),
}

# sslhub methods without a Lightly side here, and why.
NOT_BENCHMARKED = {"pirl": "Lightly 1.6 has PIRLTransform but no PIRL model or loss"}


def all_methods() -> list[str]:
    """Method names the benchmark knows: the ResNet ones above and the ViT ones of ``bench_lightly_vit``."""
    from bench_lightly_vit import VIT_METHODS

    return [*LIGHTLY_METHODS, *VIT_METHODS]


# Buffers that are data-dependent state, not initial weights (memory banks): never copied between sides.
_NOT_COPIED = ("criterion", "memory_bank", "dino_criterion", "ibot_criterion", "koleo_criterion", "collator")


def copy_initial_weights(src: dict[str, Tensor], model: nn.Module) -> None:
    """Load sslhub's initial state into the Lightly model, submodule by submodule (``backbone``,
    ``projection_head``, ``backbone_momentum`` ...): by key where the names agree (the heads, the ResNetGenerator
    backbone), else by position with every shape checked (torchvision backbone: ``conv1`` vs ``0``)."""
    dst = model.state_dict()
    new: dict[str, Tensor] = {}
    for top in dict.fromkeys(k.split(".", 1)[0] for k in dst):
        if top in _NOT_COPIED:
            continue
        d = [k for k in dst if k.split(".", 1)[0] == top]
        s = [k for k in src if k.split(".", 1)[0] == top]
        if sorted(d) == sorted(s):
            pairs = [(k, k) for k in d]
        elif len(d) == len(s):
            pairs = list(zip(d, s))
        else:
            raise ValueError(f"{top}: the sslhub model has {len(s)} tensors, the Lightly model {len(d)}")
        for dk, sk in pairs:
            if dst[dk].shape != src[sk].shape:
                raise ValueError(f"{top}: {sk} {tuple(src[sk].shape)} does not fit {dk} {tuple(dst[dk].shape)}")
            new[dk] = src[sk]
    missing = [k for k in dst if k not in new and k.split(".", 1)[0] not in _NOT_COPIED]
    if missing:
        raise ValueError(f"no sslhub tensor for {missing[:4]}")
    model.load_state_dict(new, strict=False)
    # Read back: every copied tensor must now equal sslhub's bit for bit (catches tensors that a module
    # recomputes or re-initialises on load, and dtype casts).
    after = model.state_dict()
    differ = [k for k, v in new.items() if after[k].dtype != v.dtype or not torch.equal(after[k], v)]
    if differ:
        raise ValueError(f"copied initial weights differ after loading: {differ[:4]}")
    log.info("copied %d initial tensors from sslhub's model into the Lightly model (read back equal)", len(new))


# ------------------------------------------------------------------------------------------- training


@dataclass
class SideResult:
    """One side's measurements for one method."""

    images_per_s: float = 0.0  # all epochs: images / training-loop seconds
    images_per_s_steady: float | None = None  # epochs >= 2 (no DataLoader start-up of epoch 1, warm caches)
    knn_top1: float = 0.0
    final_loss: float = 0.0
    train_s: float = 0.0  # training loops only
    wall_s: float = 0.0  # everything the side did (trainer: + per-epoch monitor, checkpoints)
    epochs: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summarise(self) -> None:
        images = sum(e["images"] for e in self.epochs)
        self.train_s = sum(e["time_s"] for e in self.epochs)
        self.images_per_s = images / self.train_s if self.train_s else 0.0
        later = self.epochs[1:]
        if later:
            self.images_per_s_steady = sum(e["images"] for e in later) / sum(e["time_s"] for e in later)
        self.final_loss = self.epochs[-1]["loss"] if self.epochs else float("nan")

    @property
    def headline(self) -> float:
        return self.images_per_s_steady if self.images_per_s_steady is not None else self.images_per_s


def run_sslhub(recipe: dict[str, Any], train_dir: Path, run_dir: Path, args: argparse.Namespace,
               device: torch.device, max_steps: int | None = None) -> tuple[nn.Module, SideResult]:  # fmt: skip
    from sslhub.checkpoints.build import build_from_state
    from sslhub.loading import load_backbone_state
    from sslhub.training import train

    res = SideResult()
    t0 = time.perf_counter()
    with trainer_transform_check(recipe) as note:
        if note:
            log.warning("%s", note)
            res.notes.append(note)
        train(recipe, train_dir, run_dir, epochs=1 if max_steps else args.epochs, device=str(device),
              num_workers=args.workers, max_steps_per_epoch=max_steps, progress=not args.no_progress,
              augment_on=args.augment_on, force=True)  # fmt: skip  (a fresh run each time, even in --work-dir)
    res.wall_s = time.perf_counter() - t0
    # The trainer times each epoch's loop without its kNN/collapse monitor: images_per_s * time_s = images.
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            res.epochs.append({"images": row["images_per_s"] * row["time_s"], "time_s": row["time_s"], "loss": row["loss"]})
    res.summarise()
    backbone = build_from_state(load_backbone_state(run_dir / "model.safetensors"))
    return backbone, res


def check_param_groups(model: nn.Module, opt: torch.optim.Optimizer, expected: list[list[str]]) -> None:
    """The Lightly side's optimizer groups must hold the parameters (by name) that sslhub's method puts in its
    groups, so that weight decay falls on the same tensors."""
    names = {id(p): n for n, p in model.named_parameters()}
    got = [sorted(names[id(p)] for p in g["params"]) for g in opt.param_groups]
    if got != expected:
        diff = [sorted(set(a) ^ set(b))[:6] for a, b in zip(got, expected)]
        raise ValueError(f"Lightly side's parameter groups differ from sslhub's (sizes {[len(g) for g in got]} vs "
                         f"{[len(g) for g in expected]}; differing names per group: {diff})")  # fmt: skip
    log.info("parameter groups match sslhub's: %s tensors (decay, no decay)", [len(g) for g in got])


def run_lightly(recipe: dict[str, Any], train_dir: Path, init: SslhubInit | None, args: argparse.Namespace,
                device: torch.device, max_steps: int | None = None) -> tuple[nn.Module, SideResult]:  # fmt: skip
    import lightly.transforms as LT
    import torchvision
    import torchvision.transforms as T
    from bench_lightly_vit import VIT_METHODS, timm_vit_factory
    from lightly.models.utils import update_momentum
    from lightly.utils.optim import update_param_groups
    from lightly.utils.scheduler import CosineWarmupScheduler, cosine_schedule
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    res = SideResult()
    t_start = time.perf_counter()
    seed = int(recipe["seed"])
    torch.manual_seed(seed)
    random.seed(seed)
    bb = recipe["backbone"]
    model: nn.Module
    if recipe["method"] in VIT_METHODS:
        model = VIT_METHODS[recipe["method"]](timm_vit_factory(bb), **method_kwargs(recipe))
    else:
        backbone, nf = lightly_backbone(bb["arch"], float(bb.get("width") or 1.0))
        model = LIGHTLY_METHODS[recipe["method"]](backbone, nf, **method_kwargs(recipe))
    if init is not None:
        copy_initial_weights(init.state, model)
    model.to(device)

    # Same input to the augmentation as the trainer's decode (shorter side to load_size, center crop): a no-op for
    # CIFAR-10 at 32 px; then Lightly's per-sample PIL augmentation.
    load = int(recipe["load_size"])
    views_t = build_multi_view(LT, recipe["transform"], int(recipe["input_size"]))
    if recipe["transform"]["name"] == "DetConSTransform":
        views_t = LightlyRegionViews(views_t)
    transform = T.Compose([T.Resize(load), T.CenterCrop(load), views_t])
    dataset = torchvision.datasets.ImageFolder(str(train_dir), transform=transform)
    batch_size = int(recipe["batch_size"])
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
                        generator=torch.Generator().manual_seed(seed))  # fmt: skip

    o = recipe["optimizer"]
    scale = {"linear": batch_size / float(o.get("reference_batch_size", 256)),
             "sqrt": math.sqrt(batch_size / float(o.get("reference_batch_size", 256))), "none": 1.0}  # fmt: skip
    lr = float(o["lr"]) * scale[o.get("lr_scaling", "linear")]
    wd = float(o.get("weight_decay", 0.0))
    # ViT methods: sslhub's two groups (no decay on norms, biases, tokens, positional embeddings).
    params: Any = model.param_groups(wd) if hasattr(model, "param_groups") else [p for p in model.parameters() if p.requires_grad]
    if o["name"] == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr, momentum=float(o.get("momentum", 0.9)), weight_decay=wd)
    else:
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=tuple(o.get("betas", (0.9, 0.999))))
    if init is not None and init.param_group_names is not None:
        check_param_groups(model, opt, init.param_group_names)
    steps_per_epoch = len(loader)
    total = steps_per_epoch * int(args.epochs)
    # DINO's cosine weight-decay schedule (recipe optimizer.weight_decay_end), as in Lightly's ViT DINO benchmark:
    # set on the decayed group before each optimizer step.
    wd_end = o.get("weight_decay_end")
    if wd_end is not None and not hasattr(model, "param_groups"):
        raise SystemExit(f"{recipe['name']}: optimizer.weight_decay_end needs named parameter groups on the Lightly side")
    sch = recipe.get("schedule", {})
    warm = min(int(float(sch.get("warmup_epochs", 0)) * steps_per_epoch), total // 2)
    sched = CosineWarmupScheduler(opt, warmup_epochs=warm, max_epochs=total, end_value=float(sch.get("min_lr_ratio", 0.0)))
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    step = 0
    clip = float(o.get("clip_grad") or 0.0)
    for epoch in range(1 if max_steps else int(args.epochs)):
        model.train()
        model.current_epoch = epoch  # DINO: teacher-temperature warmup and last-layer freeze go by epoch
        # As in Lightly's examples (total_loss += loss.detach()) and sslhub's trainer: no host-device sync per step.
        t0, seen, total_loss, n_steps = time.perf_counter(), 0, torch.zeros((), dtype=torch.float64, device=device), 0
        bar = tqdm(loader, desc=f"lightly {recipe['method']} {epoch + 1}/{args.epochs}", disable=args.no_progress, leave=False)
        for i, (views, _) in enumerate(bar):
            if max_steps is not None and i >= max_steps:
                break
            views = [v.to(device, non_blocking=True) for v in views]
            if model.momentum is not None:  # as in Lightly's examples: EMA update before the forward pass
                m = model.momentum_at(step, total) if hasattr(model, "momentum_at") else cosine_schedule(step, total, *model.momentum)
                for online, target in model.momentum_pairs():
                    update_momentum(online, target, m=m)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                loss = model(views)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if hasattr(model, "before_optimizer_step"):
                model.before_optimizer_step()
            if wd_end is not None:
                wd_now = cosine_schedule(min(step, total - 1), total, wd, float(wd_end))
                update_param_groups(opt, updates=[{"name": "decay", "weight_decay": wd_now}])
            if clip:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            seen += views[0].shape[0]
            total_loss += loss.detach().double()
            n_steps += 1
            if not amp or n_steps % 25 == 0:  # read back as often as the trainer does (every 25 steps on a GPU)
                bar.set_postfix(loss=f"{float(total_loss) / n_steps:.3f}", img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        mean_loss = float(total_loss) / max(1, n_steps)
        elapsed = time.perf_counter() - t0
        if mean_loss != mean_loss or abs(mean_loss) == float("inf"):
            raise RuntimeError(f"lightly {recipe['method']}: the mean loss of epoch {epoch + 1} is {mean_loss}")
        res.epochs.append({"images": float(seen), "time_s": elapsed, "loss": mean_loss})
        log.info("lightly %s epoch %d: loss %.4g, %.0f img/s", recipe["method"], epoch + 1, res.epochs[-1]["loss"], seen / elapsed)
    res.summarise()
    res.wall_s = time.perf_counter() - t_start
    return model.backbone, res


def warmup(recipe: dict[str, Any], train_dir: Path, work: Path, args: argparse.Namespace, device: torch.device) -> None:
    """A few untimed steps of both sides before the first timed epoch: lazy imports, first-call set-up of the
    augmentation ops, the CUDA context, cuDNN/cuBLAS handles and kernels would otherwise be charged to whichever
    side happens to run first."""
    log.info("warm-up: %d untimed steps per side", args.warmup_steps)
    run_sslhub(recipe, train_dir, work / "warmup-sslhub", args, device, max_steps=args.warmup_steps)
    run_lightly(recipe, train_dir, None, args, device, max_steps=args.warmup_steps)
    shutil.rmtree(work / "warmup-sslhub", ignore_errors=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


# -------------------------------------------------------------------------------------------- report


def environment(device: torch.device) -> dict[str, Any]:
    import lightly
    import torchvision

    import sslhub

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightly": lightly.__version__,
        "sslhub": sslhub.__version__,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def markdown(results: list[dict[str, Any]], config: dict[str, Any], env: dict[str, Any]) -> str:
    steady = config["epochs"] >= 2
    by_backbone: dict[str, list[str]] = {}
    for r in results:
        by_backbone.setdefault(r["backbone"], []).append(r["method"])
    backbones = (next(iter(by_backbone)) if len(by_backbone) == 1 else
                 ", ".join(f"{b} ({', '.join(m)})" for b, m in by_backbone.items()))  # fmt: skip
    lines = [
        (f"Data {config['data']} ({config['num_train']} train / {config['num_test']} test images), {backbones}"
         f", batch {config['batch_size']}, input {config['input_size']} px, {config['epochs']} epoch(s), "
         f"seed {config['seed']}, {env['device']}{' ' + env['gpu'] if 'gpu' in env else ''}"
         f"{' (AMP fp16 both sides)' if config['amp'] else ''}, {config['workers']} DataLoader workers, "
         f"sslhub augments on: {config.get('augment_on', 'auto')}, {env['cpus']} CPUs, {env['torch_threads']} torch threads, torch {env['torch']}, lightly {env['lightly']}."),
        (f"img/s: training loop only{', epochs >= 2' if steady else ' (epoch 1, includes DataLoader start-up)'}; "
         f"kNN: top-1 % (k={config['knn_k']}, t={config['knn_t']}) on the test split, same code for both sides; "
         f"targets: ratio >= {TARGET_SPEEDUP}, Δ kNN >= {TARGET_KNN_DELTA}."),
        "",
        "| method | sslhub img/s | Lightly img/s | ratio | sslhub kNN | Lightly kNN | Δ kNN (pts) | random-init kNN | targets |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        s, li = r["sslhub"], r["lightly"]
        ok = [f"speed {'✓' if r['throughput_ratio'] >= TARGET_SPEEDUP else '✗'}",
              f"kNN {'✓' if r['knn_delta'] >= TARGET_KNN_DELTA else '✗'}"]  # fmt: skip
        note = " *" if s["notes"] else ""
        lines.append(
            f"| {r['method']}{note} | {r['sslhub_headline_img_s']:.0f} | {r['lightly_headline_img_s']:.0f} | "
            f"{r['throughput_ratio']:.2f}× | {s['knn_top1']:.2f} | {li['knn_top1']:.2f} | {r['knn_delta']:+.2f} | "
            f"{r['random_init_knn_top1']:.2f} | {' · '.join(ok)} |"
        )
    notes = sorted({n for r in results for n in r["sslhub"]["notes"]})
    if notes:
        lines += ["", *[f"\\* {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    from sslhub.checkpoints.io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))  # fmt: skip
    ap.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated, from {','.join(all_methods())} "
                    "(ViT methods: their *-vit-tiny-p4-32 recipe)")  # fmt: skip
    ap.add_argument("--backbone", default="resnet-18", help="ResNet methods: resnet-9/18/34/50 (Lightly ResNetGenerator) "
                    "or resnet18/34/50 (torchvision)")  # fmt: skip
    ap.add_argument("--width", type=float, default=1.0, help="ResNetGenerator width (ResNet methods)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--input-size", type=int, default=32, help="ResNet methods; ViT methods need their recipe's (32)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available); AMP fp16 on cuda for both sides")
    ap.add_argument("--data", default="cifar10_tiny", help=f"{'|'.join(DATASETS)}, or a folder with train/ and test/")
    ap.add_argument("--shared-data", default=None, help="folder holding cifar10/, cifar10_tiny/, clothing10_160px/ "
                    "(default: $SSLHUB_SHARED_DATA, <repo>/shared/data, <repo>/../shared/data, /work/shared/data)")  # fmt: skip
    ap.add_argument("--data-root", default=str(ROOT / "runs" / "bench_data"), help="where archives are extracted and subsets made")
    ap.add_argument("--max-train-images", type=int, default=0, help="class-balanced subset of the training split (0: all)")
    ap.add_argument("--max-test-images", type=int, default=0, help="class-balanced subset of the test split (0: all)")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers for both sides (default: 0 on cpu, min(8, CPUs) on cuda)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads of the main process, both sides (default: torch's, one per core). "
                    "With many DataLoader workers on a GPU machine the default oversubscribes the cores")  # fmt: skip
    ap.add_argument("--augment-on", choices=["auto", "workers", "device"], default="auto",
                    help="sslhub side: where the batched augmentation runs (trainer default auto: the DataLoader "
                         "workers on CPU, the GPU on cuda)")
    ap.add_argument("--knn-k", type=int, default=200)
    ap.add_argument("--knn-t", type=float, default=0.1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override for both sides (repeatable)")
    ap.add_argument("--warmup-steps", type=int, default=3, help="untimed steps of both sides before the first method (0: none)")
    ap.add_argument("--independent-init", action="store_true", help="do not copy sslhub's initial weights into the Lightly model")
    ap.add_argument("--order", choices=["alternate", "sslhub-first", "lightly-first"], default="alternate",
                    help="which side trains first for each method (alternate: flips from method to method)")  # fmt: skip
    ap.add_argument("--out", default=None, help="folder for results.json and results.md (default: runs/bench_vs_lightly/<data>-<backbone>)")
    ap.add_argument("--work-dir", default=None, help="sslhub run folders (default: a temp folder, removed unless --keep-runs)")
    ap.add_argument("--keep-runs", action="store_true")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bars (both sides)")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.workers is None:
        args.workers = 0 if device.type == "cpu" else min(8, len(os.sched_getaffinity(0)))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    skipped = [f"{m} ({NOT_BENCHMARKED[m]})" for m in methods if m in NOT_BENCHMARKED]
    if skipped:
        raise SystemExit(f"no Lightly side for {', '.join(skipped)}; train them with `sslhub train` alone")
    unknown = [m for m in methods if m not in all_methods()]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {sorted(all_methods())}")

    train_dir, test_dir = prepare_data(args)
    log.info("training on %s, evaluating on %s", train_dir, test_dir)
    ev = load_eval_set(train_dir, test_dir, args.input_size, args.workers)
    n_train = len(ev.train_y)
    batch_size = args.batch_size
    if n_train < batch_size:  # the trainer would shrink it itself; do it up front so both sides agree
        batch_size = max(2, n_train)
        log.warning("only %d training images: batch size %d for both sides", n_train, batch_size)

    if args.knn_k > n_train // 4:
        log.warning("k=%d neighbours out of a bank of %d images: the vote is close to the class frequencies, so kNN "
                    "accuracy says little here (use more training images or a smaller --knn-k)", args.knn_k, n_train)  # fmt: skip
    from bench_lightly_vit import VIT_RECIPES

    only_vit = all(m in VIT_RECIPES for m in methods)
    out_name = "vit-tiny-p4-32" if only_vit else args.backbone
    out = Path(args.out or ROOT / "runs" / "bench_vs_lightly" / f"{Path(args.data).name}-{out_name}")
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="sslhub-bench-runs-"))
    env = environment(device)
    config = {
        "data": args.data, "train_dir": str(train_dir), "test_dir": str(test_dir), "num_train": n_train,
        "num_test": len(ev.test_y), "backbone": None if only_vit else args.backbone, "width": args.width, "batch_size": batch_size,
        "input_size": args.input_size, "epochs": args.epochs, "seed": args.seed, "workers": args.workers,
        "augment_on": args.augment_on if args.augment_on != "auto" else  # as the trainer resolves it
            ("workers" if device.type == "cpu" and args.workers > 0 else "device"),
        "amp": device.type == "cuda", "knn_k": args.knn_k, "knn_t": args.knn_t, "overrides": args.set,
        "shared_init": not args.independent_init, "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
    }  # fmt: skip
    results: list[dict[str, Any]] = []
    random_init: dict[str, float] = {}  # backbone state fingerprint -> kNN
    try:
        for i, method in enumerate(methods):
            recipe = resolve_recipe(method, args, batch_size)
            if i == 0 and args.warmup_steps > 0:
                warmup(recipe, train_dir, work, args, device)
            init = sslhub_init(recipe)
            prefix = init.eval_prefix  # the evaluation backbone: backbone. (ResNet), backbone.vit. (ViT)
            bb_state = {k[len(prefix):]: v for k, v in init.state.items() if k.startswith(prefix)}
            key = f"{recipe['backbone']}|{sum(float(v.double().sum()) for v in bb_state.values()):.10e}"
            if key not in random_init:
                from sslhub.backbones import create_backbone

                bb = dict(recipe["backbone"])
                net = create_backbone(bb.pop("arch"), **{k: v for k, v in bb.items() if v is not None})
                net.load_state_dict(bb_state)
                random_init[key] = knn_top1(net, ev, device, args.knn_k, args.knn_t)
                log.info("random-init kNN top-1: %.2f", random_init[key])

            first_sslhub = {"alternate": i % 2 == 0, "sslhub-first": True, "lightly-first": False}[args.order]
            sides: dict[str, tuple[nn.Module, SideResult]] = {}
            for side in (["sslhub", "lightly"] if first_sslhub else ["lightly", "sslhub"]):
                log.info("=== %s: %s", method, side)
                if side == "sslhub":
                    sides[side] = run_sslhub(recipe, train_dir, work / f"sslhub-{method}", args, device)
                else:
                    sides[side] = run_lightly(recipe, train_dir, None if args.independent_init else init, args, device)
                bb_trained, res = sides[side]
                res.knn_top1 = knn_top1(bb_trained, ev, device, args.knn_k, args.knn_t)
                log.info("%s %s: %.0f img/s, kNN %.2f", method, side, res.headline, res.knn_top1)
                sides[side] = (nn.Identity(), res)  # drop the model before the next side trains
                del bb_trained
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            s, li = sides["sslhub"][1], sides["lightly"][1]
            results.append({
                "method": method, "recipe": recipe["name"], "backbone": backbone_label(recipe),
                "sslhub": asdict(s), "lightly": asdict(li),
                "sslhub_headline_img_s": s.headline, "lightly_headline_img_s": li.headline,
                "throughput_ratio": s.headline / li.headline if li.headline else float("nan"),
                "knn_delta": s.knn_top1 - li.knn_top1,
                "random_init_knn_top1": random_init[key],
                "resolved_recipe": recipe,
            })  # fmt: skip
            # Written after every method, so a run cut short still leaves its results.
            table = markdown(results, config, env)
            write_atomic(out / "results.md", table)
            write_atomic(out / "results.json", json.dumps({"config": config, "environment": env, "results": results}, indent=2, default=str))
    finally:
        if not args.keep_runs and not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(markdown(results, config, env))
    print(f"wrote {out / 'results.md'} and {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
