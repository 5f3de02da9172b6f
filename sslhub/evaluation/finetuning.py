"""Finetuning evaluation: the whole backbone plus a fresh linear head, trained for a few epochs."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from sslhub.data import ImageFolderDataset, collate_skip_invalid
from sslhub.evaluation.features import (
    as_image_folder,
    dataset_name_split,
    extract_features,
    model_input_size,
    normalize_batch,
    prepare_folder,
    resize_size_for,
    resolve_device,
)
from sslhub.evaluation.results import check_labels, make_result, topk_accuracy

logger = logging.getLogger(__name__)

__all__ = ["backbone_param_groups", "finetune", "finetune_eval", "num_features_of"]

# Mild augmentation: a few epochs of finetuning do not need (and do not recover from) strong SSL augmentation.
_MIN_CROP_SCALE = 0.5


def num_features_of(model: nn.Module, input_size: int) -> int:
    """``model.num_features``, or the width of its output on a dummy batch."""
    n = getattr(model, "num_features", None)
    if isinstance(n, int) and n > 0:
        return n
    was_training = model.training
    model.eval()
    try:
        dev = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            out = model(torch.zeros(1, 3, input_size, input_size, device=dev))
    finally:
        model.train(was_training)
    return int(out.flatten(start_dim=1).shape[1])


def _train_dataset(ds: ImageFolderDataset, input_size: int, resize: int) -> ImageFolderDataset:
    from torchvision.transforms import v2

    aug = v2.Compose(
        [
            v2.RandomResizedCrop(input_size, scale=(_MIN_CROP_SCALE, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    )
    # Decoded straight to uint8 at the resize size; crops and flips per image in the workers, normalization
    # per batch on the device.
    return ds.copy(decode_size=resize, transform=aug)


def _recalibrate_bn(
    classifier: nn.Module,
    train_ds: ImageFolderDataset,
    model: nn.Module,
    size: int,
    crop_pct: float | None,
    batch_size: int,
    dev: torch.device,
    num_workers: int,
) -> None:
    """Recompute BatchNorm running statistics for the final weights (``torch.optim.swa_utils.update_bn``).

    After a short schedule the running averages still mix in statistics of earlier weights (or of the
    initialization), and eval-mode predictions suffer: a randomly initialised ResNet finetuned for 12 steps
    classified 100% correctly with batch statistics but only 50% with its running averages. One pass over
    the training images (evaluation preprocessing, no augmentation) makes them exact for the final weights.
    """
    from torch.optim.swa_utils import update_bn

    loader = DataLoader(
        prepare_folder(train_ds, model, size, crop_pct),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_skip_invalid,
    )
    normalize = normalize_batch(model)
    batches = (normalize(b[0].to(dev)) for b in loader if b is not None)
    update_bn(batches, classifier)


def backbone_param_groups(
    backbone: nn.Module, lr: float, weight_decay: float, layer_decay: float | None = None
) -> list[dict[str, Any]]:
    """Optimizer groups for the backbone: one group at ``lr``, or with ``layer_decay`` the layer-wise learning-rate
    decay of BEiT/MAE/SimMIM finetuning as timm implements it (``param_groups_layer_decay`` over the model's
    ``group_matcher``): the last block and the final norm learn at ``lr``, each earlier block ``layer_decay`` times
    slower than the one after it, the patch embedding and tokens slowest; no weight decay on biases, norms, tokens
    and position embeddings. timm models only (load_pretrained returns timm ViTs for the ViT methods)."""
    if layer_decay is None:
        return [{"params": [p for p in backbone.parameters() if p.requires_grad], "lr": lr}]
    net = getattr(backbone, "vit", backbone)  # TokenFeatures wraps the timm model
    if not hasattr(net, "group_matcher"):
        raise ValueError(
            f"layer_decay needs a timm model that names its layers (group_matcher), e.g. a timm ViT; this backbone is "
            f"a {type(net).__name__}. Leave layer_decay unset"
        )
    from timm.optim import param_groups_layer_decay

    no_decay = net.no_weight_decay() if hasattr(net, "no_weight_decay") else ()
    groups = param_groups_layer_decay(net, weight_decay=weight_decay, no_weight_decay_list=no_decay, layer_decay=layer_decay)
    for g in groups:
        g["lr"] = lr * g.pop("lr_scale", 1.0)
    return groups


def finetune(
    model: nn.Module,
    train: str | os.PathLike | ImageFolderDataset,
    val: str | os.PathLike | ImageFolderDataset,
    *,
    epochs: int = 10,
    input_size: int | None = None,
    batch_size: int = 64,
    lr: float = 1e-3,
    backbone_lr_scale: float = 0.1,
    weight_decay: float = 1e-4,
    device: str | torch.device | None = None,
    crop_pct: float | None = None,
    num_workers: int | None = None,
    seed: int = 0,
    topk: Sequence[int] = (1, 5),
    layer_decay: float | None = None,
) -> tuple[nn.Module, dict[int, float]]:
    """Finetune a copy of ``model`` with a new ``nn.Linear`` head; ``(classifier, val top-k in percent)``.

    Training images get a random resized crop (scale 0.5 to 1) and a horizontal flip; validation images the
    evaluation preprocessing (Resize + CenterCrop). AdamW with a cosine schedule; the backbone learns at
    ``lr * backbone_lr_scale`` so a few epochs adapt rather than overwrite the pretrained features. BatchNorm
    running statistics are recomputed for the final weights on the (center-cropped) training images. With
    ``layer_decay`` (timm ViTs; MAE finetunes ViT-B with 0.65), earlier blocks learn more slowly still, see
    :func:`backbone_param_groups`.

    ``model`` itself is not changed. The classifier maps images to logits and carries the backbone's
    ``pretrained_cfg`` (with ``num_classes`` and ``classes`` added).
    """
    dev = resolve_device(device)
    train_ds = as_image_folder(train)
    val_ds = as_image_folder(val, classes=train_ds.classes)
    check_labels(torch.as_tensor(train_ds.targets), "training")
    check_labels(torch.as_tensor(val_ds.targets), "validation")
    num_classes = len(train_ds.classes)
    size = model_input_size(model, input_size)
    resize = resize_size_for(model, size, crop_pct)

    backbone = copy.deepcopy(model).to(dev)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(num_features_of(backbone, size), num_classes)
    classifier = nn.Sequential(backbone, nn.Flatten(start_dim=1), head).to(dev)
    classifier.pretrained_cfg = {  # type: ignore[assignment]
        **(getattr(model, "pretrained_cfg", None) or {}),
        "num_classes": num_classes,
        "classes": list(train_ds.classes),
    }

    if num_workers is None:
        from sslhub.utils.machine import loader_settings

        num_workers = loader_settings(device or "cpu", items=len(train_ds), batch_size=batch_size).num_workers
    loader = DataLoader(
        _train_dataset(train_ds, size, resize),
        batch_size=batch_size,
        shuffle=True,
        drop_last=len(train_ds) > batch_size,  # a last batch of one would break BatchNorm
        num_workers=num_workers,
        collate_fn=collate_skip_invalid,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=dev.type == "cuda",
    )
    groups = backbone_param_groups(backbone, lr * backbone_lr_scale, weight_decay, layer_decay)
    opt = torch.optim.AdamW([*groups, {"params": head.parameters(), "lr": lr}], weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * len(loader)))
    normalize = normalize_batch(model)
    loss_fn = nn.CrossEntropyLoss()
    classifier.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the augmentations draw from the global RNG (in the main process)
        # one bar over all steps, so that it moves during an epoch (an epoch can take minutes)
        bar = tqdm(total=epochs * len(loader), desc="finetune", unit="step", leave=False)
        for epoch in range(epochs):
            total = 0.0
            bar.set_description(f"finetune epoch {epoch + 1}/{epochs}")
            for batch in loader:
                bar.update(1)
                if batch is None:
                    continue
                images = normalize(batch[0].to(dev, non_blocking=True))
                targets = batch[1].to(dev, non_blocking=True)
                loss = loss_fn(classifier(images), targets)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item()
            bar.set_postfix(loss=f"{total / max(1, len(loader)):.3f}")
            logger.debug("finetune epoch %d: mean loss %.4f", epoch, total / max(1, len(loader)))
        bar.close()
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in classifier.modules()):
        _recalibrate_bn(classifier, train_ds, model, size, crop_pct, batch_size, dev, num_workers)
    classifier.eval()
    out = extract_features(
        classifier,
        val_ds,
        input_size=size,
        crop_pct=crop_pct,
        batch_size=batch_size,
        device=dev,
        num_workers=num_workers,
        desc="val logits",
    )
    return classifier, topk_accuracy(out.features, out.labels, topk)


def finetune_eval(
    model: nn.Module,
    train: str | os.PathLike | ImageFolderDataset,
    val: str | os.PathLike | ImageFolderDataset,
    *,
    epochs: int = 10,
    input_size: int | None = None,
    batch_size: int = 64,
    lr: float = 1e-3,
    backbone_lr_scale: float = 0.1,
    weight_decay: float = 1e-4,
    device: str | torch.device | None = None,
    crop_pct: float | None = None,
    num_workers: int | None = None,
    seed: int = 0,
    dataset: str | None = None,
    split: str | None = None,
    weights: str | None = None,
    layer_decay: float | None = None,
) -> dict[str, Any]:
    """Finetuning top-1 as a result dict; arguments as :func:`finetune` and :func:`~sslhub.evaluation.knn_eval`."""
    train_ds = as_image_folder(train)
    val_ds = as_image_folder(val, classes=train_ds.classes)
    size = model_input_size(model, input_size)
    _, acc = finetune(
        model,
        train_ds,
        val_ds,
        epochs=epochs,
        input_size=size,
        batch_size=batch_size,
        lr=lr,
        backbone_lr_scale=backbone_lr_scale,
        weight_decay=weight_decay,
        device=device,
        crop_pct=crop_pct,
        num_workers=num_workers,
        seed=seed,
        layer_decay=layer_decay,
    )
    default_name, default_split = dataset_name_split(val_ds.root)
    protocol = {
        "epochs": epochs,
        "optimizer": "adamw",
        "lr": lr,
        "backbone_lr_scale": backbone_lr_scale,
        "layer_decay": layer_decay,
        "weight_decay": weight_decay,
        "batch_size": batch_size,
        "schedule": "cosine",
        "bn_recalibration": "train images, center crop",
        "augmentation": f"RandomResizedCrop(scale=({_MIN_CROP_SCALE}, 1)), HorizontalFlip",
        "input_size": size,
        "resize_size": resize_size_for(model, size, crop_pct),
        "train_split": dataset_name_split(train_ds.root)[1],
        "num_train": len(train_ds),
        "num_val": len(val_ds),
        "num_classes": len(train_ds.classes),
        "seed": seed,
        "top5": acc.get(5),
    }
    return make_result(
        "finetune_top1",
        acc[1],
        dataset=dataset or default_name,
        split=split or default_split,
        protocol=protocol,
        weights=weights,
    )
