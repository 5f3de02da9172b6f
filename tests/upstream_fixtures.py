"""Checkpoints with random weights in the exact on-disk form of other SSL projects' code.

Each writer builds modules with the upstream's attribute names (so ``state_dict()`` gives its keys in its order),
wraps them as the upstream's training or release script does (DDP ``module.``, the wrapper dict with epoch, arch,
optimizer state, ``argparse.Namespace`` args, scalers...) and ``torch.save``s the result. It returns the file and
the *evaluation model* of that upstream (the module its linear-eval code would run), to compare features with.
Facts are from each upstream's own code (cited per writer).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import sys
import types
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import timm
import torch
import torchvision
from torch import nn

SEED = 0


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random weights everywhere, norms included (untrained BN/LN would hide swapped or dropped tensors)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if not t.is_floating_point():
                continue
            if name.endswith(("running_var", "weight_g")):
                t.uniform_(0.5, 2.0, generator=g)
            elif name.endswith("weight") and t.ndim == 1:  # norm scales
                t.uniform_(0.5, 1.5, generator=g)
            elif name.endswith("gamma"):  # LayerScale
                t.uniform_(0.5, 1.5, generator=g)
            else:
                fan = t[0].numel() if t.ndim > 1 else 1
                t.normal_(0, 1 / math.sqrt(fan) if t.ndim > 1 else 0.1, generator=g)
    return model.eval()


class DDP(nn.Module):
    """What ``DistributedDataParallel``'s state dict looks like: everything under ``module.``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def _optimizer_state(model: nn.Module, **group: Any) -> dict[str, Any]:
    """An optimizer state dict as torch writes it (momentum buffers for the first few parameters)."""
    params = list(model.parameters())
    state = {i: {"momentum_buffer": torch.zeros_like(p)} for i, p in enumerate(params[:3])}
    return {"state": state, "param_groups": [{"lr": 0.03, "momentum": 0.9, "weight_decay": 1e-4, **group,
                                              "params": list(range(len(params)))}]}  # fmt: skip


def _scaler() -> dict[str, Any]:
    return {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
            "_growth_tracker": 17}  # fmt: skip


def tv_resnet(arch: str, seed: int) -> nn.Module:
    """torchvision ResNet with random weights and ``fc = Identity``: every torchvision-based upstream's eval trunk."""
    torch.manual_seed(seed)
    m = getattr(torchvision.models, arch)(weights=None)
    m.fc = nn.Identity()
    return randomize(m, seed)


def _perturbed(m: nn.Module, seed: int) -> nn.Module:
    """A different copy of ``m`` (momentum encoders, students): picking it instead would change the features."""
    return randomize(copy.deepcopy(m), seed)


def _mlp(*dims: int, bn: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b, bias=not bn))
        if i < len(dims) - 2:
            layers += [nn.BatchNorm1d(b), nn.ReLU()] if bn else [nn.ReLU()]
    return nn.Sequential(*layers)


# --- facebookresearch/moco (v2) -----------------------------------------------------------------------------------


def moco_v2(path: Path, arch: str = "resnet50") -> tuple[Path, nn.Module]:
    """main_moco.py: ``{epoch, arch, state_dict, optimizer}``; moco/builder.py ``MoCo`` with ``encoder_q``/``encoder_k``
    (fc = Linear-ReLU-Linear with --mlp), then ``queue``/``queue_ptr`` buffers; DDP ``module.``."""
    trunk = tv_resnet(arch, SEED)

    class MoCo(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder_q = copy.deepcopy(trunk)
            dim = 2048 if arch == "resnet50" else 512
            self.encoder_q.fc = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 128))
            self.encoder_k = _perturbed(self.encoder_q, SEED + 1)
            self.register_buffer("queue", nn.functional.normalize(torch.randn(128, 4096), dim=0))
            self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    model = DDP(MoCo())
    torch.save({"epoch": 800, "arch": arch, "state_dict": model.state_dict(), "optimizer": _optimizer_state(model)}, path)
    return path, trunk


# --- facebookresearch/moco-v3 -------------------------------------------------------------------------------------


def moco_v3_sincos(vit: nn.Module, temperature: float = 10000.0) -> torch.Tensor:
    """moco-v3 vits.py ``build_2d_sincos_position_embedding`` (a fixed table, stored as a Parameter)."""
    h, w = vit.patch_embed.grid_size
    grid_w, grid_h = torch.meshgrid(torch.arange(w, dtype=torch.float32), torch.arange(h, dtype=torch.float32), indexing="ij")
    pos_dim = vit.embed_dim // 4
    omega = 1.0 / (temperature ** (torch.arange(pos_dim, dtype=torch.float32) / pos_dim))
    out_w = torch.einsum("m,d->md", grid_w.flatten(), omega)
    out_h = torch.einsum("m,d->md", grid_h.flatten(), omega)
    emb = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)[None]
    return torch.cat([torch.zeros(1, 1, vit.embed_dim), emb], dim=1)


def moco_v3_vit_small(seed: int) -> nn.Module:
    """vits.py ``vit_small``: timm VisionTransformer, patch 16, 384-d, depth 12, **12 heads**, LayerNorm eps 1e-6."""
    torch.manual_seed(seed)
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, num_heads=12)
    randomize(vit, seed)
    with torch.no_grad():
        vit.pos_embed.copy_(moco_v3_sincos(vit))
    return vit


def moco_v3(path: Path, kind: str = "vit_small") -> tuple[Path, nn.Module]:
    """moco-v3 main_moco.py: ``{epoch, arch, state_dict, optimizer, scaler}``; moco/builder.py ``MoCo_ResNet`` /
    ``MoCo_ViT``: ``base_encoder`` (projector as ``fc`` / ``head``), ``momentum_encoder``, ``predictor``; DDP."""
    if kind == "vit_small":
        trunk = moco_v3_vit_small(SEED)
        dim, attr = 384, "head"
    else:
        trunk = tv_resnet(kind, SEED)
        dim, attr = (2048 if kind == "resnet50" else 512), "fc"
    mlp_dim, out = 256, 64  # --moco-mlp-dim / --moco-dim are training arguments; small here

    class MoCoV3(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base_encoder = copy.deepcopy(trunk)
            setattr(self.base_encoder, attr, _mlp(dim, mlp_dim, out))
            self.momentum_encoder = _perturbed(self.base_encoder, SEED + 1)
            self.predictor = _mlp(out, mlp_dim, out)

    model = DDP(MoCoV3())
    torch.save({"epoch": 300, "arch": kind, "state_dict": model.state_dict(), "optimizer": _optimizer_state(model),
                "scaler": _scaler()}, path)  # fmt: skip
    return path, trunk


# --- facebookresearch/simsiam ---------------------------------------------------------------------------------------


def simsiam(path: Path, arch: str = "resnet50") -> tuple[Path, nn.Module]:
    """simsiam/builder.py: ``encoder`` (fc = 3-layer BN MLP) and ``predictor``; main_simsiam.py's wrapper; DDP."""
    trunk = tv_resnet(arch, SEED)
    dim = 2048 if arch == "resnet50" else 512

    class SimSiam(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = copy.deepcopy(trunk)
            self.encoder.fc = _mlp(dim, dim, dim, 128)
            self.predictor = _mlp(128, 64, 128)

    model = DDP(SimSiam())
    torch.save({"epoch": 100, "arch": arch, "state_dict": model.state_dict(), "optimizer": _optimizer_state(model)}, path)
    return path, trunk


# --- facebookresearch/swav ------------------------------------------------------------------------------------------


def swav(path: Path, training: bool = False, arch: str = "resnet50") -> tuple[Path, nn.Module]:
    """swav/src/resnet50.py: torchvision-named trunk (ConstantPad2d(1) + padding-2 conv1 = torchvision's padding 3),
    ``projection_head`` (Linear, BN, ReLU, Linear), ``prototypes`` (Linear, no bias); DDP. Released: the bare state
    dict; main_swav.py's checkpoint: ``{epoch, state_dict, optimizer, amp}``."""
    trunk = tv_resnet(arch, SEED)
    dim = 2048 if arch == "resnet50" else 512

    class SwAVResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.padding = nn.ConstantPad2d(1, 0.0)
            for name, child in trunk.named_children():
                if name not in ("fc",):
                    setattr(self, name, copy.deepcopy(child))
            self.projection_head = nn.Sequential(nn.Linear(dim, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32))
            self.prototypes = nn.Linear(32, 100, bias=False)

    model = randomize(DDP(SwAVResNet()), SEED + 5)
    # the trunk weights are the reference's (randomize above touched the heads' init only via the same seed walk)
    model.module.load_state_dict({**model.module.state_dict(), **{k: v for k, v in trunk.state_dict().items()}})
    sd = model.state_dict()
    obj: Any = sd if not training else {"epoch": 400, "state_dict": sd, "optimizer": _optimizer_state(model),
                                        "amp": {"loss_scaler0": {"loss_scale": 65536.0, "unskipped": 12}}}  # fmt: skip
    torch.save(obj, path)
    return path, trunk


# --- facebookresearch/barlowtwins and vicreg --------------------------------------------------------------------


def exclude_bias_and_norm(p: torch.Tensor) -> bool:
    """vicreg/main_vicreg.py's LARS filter; defined in ``__main__`` there, so its optimizer state pickles it."""
    return p.ndim == 1


@contextlib.contextmanager
def _as_main(fn: Any) -> Iterator[None]:
    main = sys.modules["__main__"]
    old_module = fn.__module__
    fn.__module__ = "__main__"
    setattr(main, fn.__name__, fn)
    try:
        yield
    finally:
        delattr(main, fn.__name__)
        fn.__module__ = old_module


def barlow_vicreg(path: Path, method: str, released: bool = False, arch: str = "resnet50") -> tuple[Path, nn.Module]:
    """barlowtwins/main.py and vicreg/main_vicreg.py: ``{epoch, model, optimizer}``, model = DDP(backbone, projector
    [, bn: BatchNorm1d(affine=False) for Barlow Twins]); released ``resnet50.pth``: the backbone's state dict
    (torchvision names, no fc)."""
    trunk = tv_resnet(arch, SEED)
    if released:
        torch.save(trunk.state_dict(), path)
        return path, trunk
    dim = 2048 if arch == "resnet50" else 512

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = copy.deepcopy(trunk)
            self.projector = _mlp(dim, 64, 64) if method == "barlowtwins" else nn.Sequential(
                nn.Linear(dim, 64), nn.BatchNorm1d(64), nn.ReLU(True), nn.Linear(64, 64))
            if method == "barlowtwins":
                self.bn = nn.BatchNorm1d(64, affine=False)

    model = DDP(Model())
    filt: Any = True if method == "barlowtwins" else exclude_bias_and_norm
    opt = _optimizer_state(model, eta=0.001, weight_decay_filter=filt, lars_adaptation_filter=filt)
    with _as_main(exclude_bias_and_norm) if method == "vicreg" else contextlib.nullcontext():
        torch.save({"epoch": 1000, "model": model.state_dict(), "optimizer": opt}, path)
    return path, trunk


# --- facebookresearch/dino ------------------------------------------------------------------------------------------


class DINOHead(nn.Module):
    """dino/vision_transformer.py ``DINOHead``: MLP, then a weight-normed last layer (weight_g / weight_v)."""

    def __init__(self, in_dim: int, out_dim: int = 256, hidden: int = 64, bottleneck: int = 32) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))  # fmt: skip
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck, out_dim, bias=False))


class MultiCropWrapper(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        backbone.fc, backbone.head = nn.Identity(), nn.Identity()
        self.backbone = backbone
        self.head = head


def dino_vit_small(seed: int, img_size: int = 224) -> nn.Module:
    """dino/vision_transformer.py ``vit_small``: timm's key names, 6 heads, eps 1e-6 (timm vit_small_patch16_224)."""
    torch.manual_seed(seed)
    return randomize(timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, img_size=img_size), seed)


def dino(path: Path, arch: str = "vit_small", released: bool = False, img_size: int = 224) -> tuple[Path, nn.Module]:
    """main_dino.py: ``{student, teacher, optimizer, epoch, args, dino_loss, fp16_scaler}``; student DDP, teacher DDP
    only with BatchNorm (ResNets); released ``dino_*_pretrain.pth``: the teacher backbone's bare state dict."""
    is_vit = arch.startswith("vit")
    trunk = dino_vit_small(SEED, img_size) if is_vit else tv_resnet(arch, SEED)
    if released:
        torch.save(trunk.state_dict(), path)
        return path, trunk
    dim = 384 if is_vit else (2048 if arch == "resnet50" else 512)
    teacher = randomize(MultiCropWrapper(copy.deepcopy(trunk), DINOHead(dim)), SEED + 7)
    teacher.backbone.load_state_dict(trunk.state_dict())
    student = DDP(randomize(MultiCropWrapper(copy.deepcopy(trunk), DINOHead(dim)), SEED + 8))  # weight_norm: no deepcopy
    teacher_sd = (teacher if is_vit else DDP(teacher)).state_dict()
    args = argparse.Namespace(arch=arch, patch_size=16, out_dim=256, norm_last_layer=True, momentum_teacher=0.996,
                              use_fp16=True, lr=0.0005, epochs=100, global_crops_scale=(0.4, 1.0),
                              output_dir=".", data_path="/path/to/imagenet/train", seed=0)  # fmt: skip
    save = {"student": student.state_dict(), "teacher": teacher_sd, "optimizer": _optimizer_state(student),
            "epoch": 100, "args": args, "dino_loss": {"center": torch.randn(1, 256)}, "fp16_scaler": _scaler()}  # fmt: skip
    torch.save(save, path)
    return path, trunk


# --- facebookresearch/dinov2 ------------------------------------------------------------------------------------------


def dinov2(path: Path, size: str = "small", registers: bool = False, teacher: bool = False, chunks: int = 4,
           img_size: int = 518) -> tuple[Path, nn.Module, dict[str, torch.Tensor]]:  # fmt: skip
    """dinov2/models/vision_transformer.py ``DinoVisionTransformer`` keys (``register_tokens``, ``mask_token`` (1, D),
    LayerScale ``ls1/ls2.gamma``, 518-px ``pos_embed`` incl. cls); train.py's ``{"teacher": {backbone, dino_head,
    ibot_head}}`` with ``backbone.blocks.<chunk>.<i>`` (block_chunks=4). Returns (file, timm reference model built
    with timm's own checkpoint_filter_fn from these keys, the upstream state dict)."""
    name = f"vit_{size}_patch14{'_reg4' if registers else ''}_dinov2"
    torch.manual_seed(SEED)
    src = randomize(timm.create_model(name, pretrained=False, num_classes=0, img_size=img_size), SEED)
    t = src.state_dict()
    g = torch.Generator().manual_seed(3)
    up: dict[str, torch.Tensor] = {}
    d = t["cls_token"].shape[-1]
    if registers:  # upstream: cls pos in pos_embed, registers without position
        p0 = torch.randn(1, 1, d, generator=g) * 0.02
        up["cls_token"] = t["cls_token"] - p0
        up["pos_embed"] = torch.cat([p0, t["pos_embed"]], dim=1)
        up["register_tokens"] = t["reg_token"]
    else:
        up["cls_token"], up["pos_embed"] = t["cls_token"], t["pos_embed"]
    up["mask_token"] = torch.randn(1, d, generator=g)
    depth = len(src.blocks)
    up.update({k: v for k, v in t.items() if k not in ("cls_token", "pos_embed", "reg_token")})
    released = dict(up)  # the unchunked keys, as dinov2's hub models and timm's filter know them
    if teacher:  # BlockChunk: chunk c holds the blocks c*size.. under their global index
        up = {(f"blocks.{int(k.split('.')[1]) // (depth // chunks)}.{k[len('blocks.'):]}" if k.startswith("blocks.")
               else k): v for k, v in up.items()}  # fmt: skip
    if teacher:
        heads = {"dino_head.mlp.0.weight": torch.randn(64, d), "dino_head.last_layer.weight_g": torch.ones(256, 1),
                 "dino_head.last_layer.weight_v": torch.randn(256, 64), "ibot_head.mlp.0.weight": torch.randn(64, d)}  # fmt: skip
        torch.save({"teacher": {**{f"backbone.{k}": v for k, v in up.items()}, **heads}}, path)
    else:
        torch.save(up, path)
    ref = timm.create_model(name, pretrained=False, num_classes=0, img_size=img_size)
    from timm.models.vision_transformer import checkpoint_filter_fn

    ref.load_state_dict(checkpoint_filter_fn(released, ref), strict=True)
    return path, ref.eval(), up


# --- facebookresearch/mae ---------------------------------------------------------------------------------------------


def mae_pos_embed_numpy(embed_dim: int, grid_size: int) -> np.ndarray:
    """mae/util/pos_embed.py ``get_2d_sincos_pos_embed(embed_dim, grid_size, cls_token=True)``, step by step."""

    def one_d(dim: int, pos: np.ndarray) -> np.ndarray:
        omega = np.arange(dim // 2, dtype=np.float64)
        omega /= dim / 2.0
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape([2, 1, grid_size, grid_size])
    emb = np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], axis=1)
    return np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)


def mae(path: Path, training: bool = False, img_size: int = 224) -> tuple[Path, nn.Module]:
    """mae/models_mae.py ``MaskedAutoencoderViT`` (timm encoder keys + mask_token (1,1,D) + decoder_*), fixed sin-cos
    ``pos_embed``; main_pretrain.py saves ``{model, optimizer, epoch, scaler, args}``; released: ``{model: encoder}``.
    The reference is models_vit with global_pool=False: a timm ViT, final-norm cls token."""
    torch.manual_seed(SEED)
    enc = randomize(timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, img_size=img_size), SEED)
    grid = img_size // 16
    with torch.no_grad():
        enc.pos_embed.copy_(torch.from_numpy(mae_pos_embed_numpy(384, grid)).float()[None])
    if not training:
        torch.save({"model": enc.state_dict()}, path)
        return path, enc

    class MaskedAutoencoderViT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patch_embed = copy.deepcopy(enc.patch_embed)
            self.cls_token = nn.Parameter(enc.cls_token.detach().clone())
            self.pos_embed = nn.Parameter(enc.pos_embed.detach().clone(), requires_grad=False)
            self.blocks = copy.deepcopy(enc.blocks)
            self.norm = copy.deepcopy(enc.norm)
            self.decoder_embed = nn.Linear(384, 128)
            self.mask_token = nn.Parameter(torch.randn(1, 1, 128))
            self.decoder_pos_embed = nn.Parameter(torch.randn(1, 1 + grid**2, 128), requires_grad=False)
            self.decoder_blocks = nn.ModuleList([timm.models.vision_transformer.Block(128, 4, qkv_bias=True)])
            self.decoder_norm = nn.LayerNorm(128)
            self.decoder_pred = nn.Linear(128, 16 * 16 * 3)

    model = MaskedAutoencoderViT()
    args = argparse.Namespace(model="mae_vit_small_patch16", input_size=img_size, mask_ratio=0.75, norm_pix_loss=True,
                              epochs=800, blr=1.5e-4, output_dir="./output_dir")  # fmt: skip
    torch.save({"model": model.state_dict(), "optimizer": _optimizer_state(model), "epoch": 799, "scaler": _scaler(),
                "args": args}, path)  # fmt: skip
    return path, enc


# --- solo-learn -------------------------------------------------------------------------------------------------------


def solo_cifar_resnet(arch: str, seed: int, padding: int = 2) -> nn.Module:
    """solo/methods/base.py for CIFAR: torchvision resnet, conv1 = Conv2d(3, 64, 3, stride 1, padding 2), no max-pool."""
    torch.manual_seed(seed)
    m = getattr(torchvision.models, arch)(weights=None)
    m.fc = nn.Identity()
    m.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=padding, bias=False)
    m.maxpool = nn.Identity()
    return randomize(m, seed)


def solo_learn(path: Path, arch: str = "resnet18", cifar: bool = True) -> tuple[Path, nn.Module]:
    """A solo-learn BYOL run's Lightning checkpoint: backbone, classifier, projector, predictor and momentum copies."""
    trunk = solo_cifar_resnet(arch, SEED) if cifar else tv_resnet(arch, SEED)
    dim = 512 if arch == "resnet18" else 2048

    class BYOL(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = copy.deepcopy(trunk)
            self.classifier = nn.Linear(dim, 10)
            self.projector = _mlp(dim, 64, 32)
            self.momentum_backbone = _perturbed(trunk, SEED + 2)
            self.momentum_projector = _mlp(dim, 64, 32)
            self.predictor = _mlp(32, 64, 32)

    model = BYOL()
    ckpt = {
        "epoch": 999, "global_step": 195000, "pytorch-lightning_version": "2.0.9", "state_dict": model.state_dict(),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 1000, "completed": 999}}}},
        "callbacks": {}, "optimizer_states": [_optimizer_state(model)],
        "lr_schedulers": [{"base_lrs": [1.0], "last_epoch": 999, "warmup_epochs": 10, "_step_count": 1000}],
    }  # fmt: skip
    torch.save(ckpt, path)
    return path, trunk


# --- mmpretrain / mmselfsup ---------------------------------------------------------------------------------------------


class _MMAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # mmpretrain MultiheadAttention.forward, written out
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (c // self.num_heads) ** -0.5
        return self.proj((attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c))


class _MMFFN(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0)),
                                    nn.Linear(hidden, dim), nn.Dropout(0.0))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _MMLayer(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _MMAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = _MMFFN(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ffn(self.ln2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(3, dim, patch, patch)


class MMViT(nn.Module):
    """mmpretrain ``VisionTransformer`` (out_type='cls_token', final_norm=True) with its own names and forward."""

    def __init__(self, dim: int = 192, depth: int = 12, heads: int = 3, patch: int = 16, img: int = 224) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + (img // patch) ** 2, dim))
        self.layers = nn.ModuleList([_MMLayer(dim, heads) for _ in range(depth)])
        self.ln1 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.projection(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for layer in self.layers:
            x = layer(x)
        return self.ln1(x)[:, 0]


class HistoryBuffer:
    """Stands in for ``mmengine.logging.history_buffer.HistoryBuffer`` (pickled by class in ``message_hub``)."""

    def __init__(self) -> None:
        self._log_history = np.array([0.5, 0.4])
        self._count_history = np.array([1, 1])
        self.max_length = 1000000


@contextlib.contextmanager
def _fake_mmengine() -> Iterator[None]:
    name = "mmengine.logging.history_buffer"
    mod = types.ModuleType(name)
    mod.HistoryBuffer = HistoryBuffer  # type: ignore[attr-defined]
    old = HistoryBuffer.__module__
    HistoryBuffer.__module__ = name
    saved = {n: sys.modules.get(n) for n in ("mmengine", "mmengine.logging", name)}
    sys.modules.update({"mmengine": types.ModuleType("mmengine"), "mmengine.logging": types.ModuleType("mmengine.logging"), name: mod})
    try:
        yield
    finally:
        HistoryBuffer.__module__ = old
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def mmpretrain(path: Path, kind: str = "resnet", full_run: bool = False) -> tuple[Path, nn.Module]:
    """An mmpretrain/mmselfsup model (``backbone``, ``neck``, ``head``) as ``{meta, state_dict}``; a full mmengine run
    adds ``message_hub`` (HistoryBuffer objects), ``optimizer`` and ``param_schedulers``."""
    if kind == "resnet":
        trunk: nn.Module = tv_resnet("resnet18", SEED)
        out_dim = 512
    else:
        torch.manual_seed(SEED)
        trunk = randomize(MMViT(), SEED)
        out_dim = 192

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = copy.deepcopy(trunk)
            self.neck = nn.Module()
            self.neck.mlp = _mlp(out_dim, 64, 32)
            self.head = nn.Module()
            self.head.fc = nn.Linear(32, 10)

    model = Model()
    meta = {"epoch": 200, "iter": 250200, "mmengine_version": "0.10.4", "seed": 42, "experiment_name": "mocov2",
            "time": "20240101_000000", "dataset_meta": {"classes": ["a", "b"]}, "cfg": "model = dict(type='MoCo')"}  # fmt: skip
    obj: dict[str, Any] = {"meta": meta, "state_dict": model.state_dict()}
    if full_run:
        obj["message_hub"] = {"log_scalars": {"train/loss": HistoryBuffer()}, "runtime_info": {"epoch": 200}}
        obj["optimizer"] = _optimizer_state(model)
        obj["param_schedulers"] = [{"base_values": [0.03], "last_step": 200}]
        with _fake_mmengine():
            torch.save(obj, path)
    else:
        torch.save(obj, path)
    return path, trunk


# --- facebookresearch/vissl ---------------------------------------------------------------------------------------------


def vissl(path: Path, arch: str = "resnet50") -> tuple[Path, nn.Module]:
    """A VISSL SwAV run's ``model_final_checkpoint_phase*.torch``: trunk ``_feature_blocks.<torchvision name>`` and
    heads inside ``classy_state_dict.base_model.model``, training state around them."""
    trunk = tv_resnet(arch, SEED)
    trunk_sd = {f"_feature_blocks.{k}": v for k, v in trunk.state_dict().items()}
    dim = 2048 if arch == "resnet50" else 512
    heads = {"0.projection_head.0.weight": torch.randn(64, dim), "0.projection_head.0.bias": torch.randn(64),
             "0.prototypes0.weight": torch.randn(100, 64)}  # fmt: skip
    obj = {
        "phase_idx": 799, "iteration_num": 400000, "train_phase_idx": 399, "iteration": 400000, "type": "consolidated",
        "loss": {"queue": torch.zeros(1)},
        "classy_state_dict": {"train": True, "base_model": {"model": {"trunk": trunk_sd, "heads": heads},
                                                            "meta": {"trunk": {}, "heads": {}}},
                              "optimizer": {"name": "sgd", "options": {"lr": 0.6}}, "phase_idx": 799,
                              "train_phase_idx": 399, "num_updates": 400000, "losses": [], "hooks": {}},
    }  # fmt: skip
    torch.save(obj, path)
    return path, trunk
