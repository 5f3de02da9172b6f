"""Release and training files of DINOv3, I-JEPA, MSN and LightlyTrain, rebuilt key for key at tiny sizes.

Each writer builds modules with the upstream's attribute names (so ``state_dict()`` gives its keys), fills them with
random weights, saves them the way the upstream's code does and returns the file with an *independent reference*
forward written from the upstream's own model code (cited per class), to compare sslhub's features with.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from upstream_fixtures import DDP, _optimizer_state, _scaler, randomize

# --- DINOv3 ViT (dinov3/models/vision_transformer.py, layers/{attention,block,ffn_layers,rope_position_encoding}.py)


class _LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class _LinearKMaskedBias(nn.Linear):
    """layers/attention.py: the k third of the qkv bias is multiplied by ``bias_mask`` (zero there)."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim, 3 * dim, bias=True)
        mask = torch.ones(3 * dim)
        mask[dim : 2 * dim] = 0
        self.register_buffer("bias_mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias * self.bias_mask.to(self.bias.dtype))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads = heads
        self.qkv = _LinearKMaskedBias(dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        sin, cos = rope
        p = N - sin.shape[-2]  # class + storage tokens get no rotation
        q = torch.cat([q[:, :, :p], q[:, :, p:] * cos + _rotate_half(q[:, :, p:]) * sin], dim=2)
        k = torch.cat([k[:, :, :p], k[:, :, p:] * cos + _rotate_half(k[:, :, p:]) * sin], dim=2)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _SwiGLUFFN(nn.Module):
    """layers/ffn_layers.py SwiGLUFFN: hidden = int(2/3 * ratio * dim) rounded up to ``align_to``."""

    def __init__(self, dim: int, hidden: int, align_to: int = 8) -> None:
        super().__init__()
        d = int(hidden * 2 / 3)
        h = d + (-d % align_to)
        self.w1, self.w2, self.w3 = nn.Linear(dim, h), nn.Linear(dim, h), nn.Linear(h, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(F.silu(self.w1(x)) * self.w2(x))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_ratio: float, swiglu: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)  # "layernormbf16"
        self.attn = _Attention(dim, heads)
        self.ls1 = _LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = _SwiGLUFFN(dim, int(dim * ffn_ratio)) if swiglu else _Mlp(dim, int(dim * ffn_ratio))
        self.ls2 = _LayerScale(dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


class _Rope(nn.Module):
    """RopePositionEmbedding(base=100, normalize_coords='separate'), fp32 as hub/backbones.py builds it."""

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.register_buffer("periods", torch.empty(head_dim // 4), persistent=True)

    def forward(self, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
        ch = torch.arange(0.5, H) / H
        cw = torch.arange(0.5, W) / W
        coords = torch.stack(torch.meshgrid(ch, cw, indexing="ij"), dim=-1).flatten(0, 1)
        coords = 2.0 * coords - 1.0
        angles = 2 * math.pi * coords[:, :, None] / self.periods[None, None, :]
        angles = angles.flatten(1, 2).tile(2)
        return torch.sin(angles), torch.cos(angles)


class _PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # B H W C (flatten_embedding=False)


class Dinov3ViT(nn.Module):
    """DinoVisionTransformer with DINOv3's attribute names; ``forward`` is its eval ``forward`` (x_norm_clstoken)."""

    def __init__(self, dim: int = 128, depth: int = 2, heads: int = 2, ffn_ratio: float = 4.0, swiglu: bool = False,
                 patch: int = 16, n_storage: int = 4) -> None:  # fmt: skip
        super().__init__()
        self.patch_embed = _PatchEmbed(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.storage_tokens = nn.Parameter(torch.zeros(1, n_storage, dim))
        self.rope_embed = _Rope(dim // heads)
        self.blocks = nn.ModuleList(_Block(dim, heads, ffn_ratio, swiglu) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.head = nn.Identity()
        self.mask_token = nn.Parameter(torch.zeros(1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        B, H, W, _ = x.shape
        x = x.flatten(1, 2)
        cls = self.cls_token + 0 * self.mask_token
        x = torch.cat([cls.expand(B, -1, -1), self.storage_tokens.expand(B, -1, -1), x], dim=1)
        rope = self.rope_embed(H, W)
        for blk in self.blocks:
            x = blk(x, rope)
        return self.norm(x)[:, 0]


def bf16_periods(head_dim: int, base: float = 100.0) -> torch.Tensor:
    """RopePositionEmbedding._init_weights in bf16 (DINOv3's training dtype): what the release files hold."""
    return base ** (2 * torch.arange(head_dim // 4, dtype=torch.bfloat16) / (head_dim // 2))


def dinov3_vit(path: Path, *, seed: int = 0, zero_qkv_bias: bool = False, **kw: Any) -> tuple[Path, nn.Module]:
    """A ``dinov3_vit*16_pretrain_lvd1689m-*.pth`` file: the bare state dict, RoPE periods in bf16."""
    torch.manual_seed(seed)
    ref = randomize(Dinov3ViT(**kw), seed)
    with torch.no_grad():
        for blk in ref.blocks:
            d = blk.attn.qkv.bias.shape[0] // 3
            blk.attn.qkv.bias_mask.copy_(torch.cat([torch.ones(d), torch.zeros(d), torch.ones(d)]))
            if zero_qkv_bias:  # the distilled releases: all-zero qkv biases
                blk.attn.qkv.bias.zero_()
        periods = bf16_periods(ref.rope_embed.periods.numel() * 4)
        ref.rope_embed.periods.copy_(periods.float())  # DINOv3's load_state_dict copies them into fp32
    sd = ref.state_dict()
    sd["rope_embed.periods"] = periods  # stored in bf16
    torch.save(sd, path)
    return path, ref.eval()


# --- DINOv3 ConvNeXt (dinov3/models/convnext.py) --------------------------------------------------------------------


class _LN2d(nn.Module):
    """convnext.py LayerNorm(data_format='channels_first')."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, 1e-6).permute(0, 3, 1, 2)


class _CNBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1, self.act, self.pwconv2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Dinov3ConvNeXt(nn.Module):
    def __init__(self, depths: tuple[int, ...] = (1, 1, 2, 1), dims: tuple[int, ...] = (16, 32, 48, 64)) -> None:
        super().__init__()
        self.downsample_layers = nn.ModuleList([nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), _LN2d(dims[0]))])
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(_LN2d(dims[i]), nn.Conv2d(dims[i], dims[i + 1], 2, 2)))
        self.stages = nn.ModuleList(nn.Sequential(*[_CNBlock(d) for _ in range(n)]) for d, n in zip(dims, depths))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Identity()
        self.norms = nn.ModuleList([nn.Identity() for _ in range(3)])
        self.norms.append(self.norm)  # the same module: its tensors appear twice in the state dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.norm(x.mean([-2, -1]))  # x_norm_clstoken: the norm of the pooled features


def dinov3_convnext(path: Path, *, seed: int = 0, **kw: Any) -> tuple[Path, nn.Module]:
    torch.manual_seed(seed)
    ref = randomize(Dinov3ConvNeXt(**kw), seed)
    torch.save(ref.state_dict(), path)
    return path, ref.eval()


# --- DINOv2 ViT-g/14 (dinov2/layers/swiglu_ffn.py SwiGLUFFNFused: w12 packs both halves, w3) ----------------------


def _fill_cheaply(model: nn.Module, seed: int) -> nn.Module:
    """Random values for a model built on the meta device (fast enough for 1.1B parameters; no init pass)."""
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.named_parameters():
            if t.ndim == 1 and name.endswith(("weight", "gamma")):
                t.uniform_(0.5, 1.5, generator=g)
            else:
                t.normal_(0, 1 / math.sqrt(t.shape[-1]) if t.ndim > 1 else 0.1, generator=g)
    return model.eval()


def dinov2_giant(path: Path, *, registers: bool = False, img_size: int = 56, tiny: bool = True,
                 ) -> tuple[Path, nn.Module]:  # fmt: skip
    """A ``dinov2_vitg14[_reg4]_pretrain.pth`` (DINOv2's keys: ``mlp.w12``/``mlp.w3``, ``mask_token``, cls position
    in ``pos_embed``, ``register_tokens``). Reference: timm's ``vit_giant_patch14[_reg4]_dinov2`` holding the same
    tensors, i.e. what timm's own ``_convert_dinov2`` makes of the file. ``tiny`` keeps SwiGLU at 128 dim, 2 blocks."""
    import timm

    name = f"vit_giant_patch14{'_reg4' if registers else ''}_dinov2"
    sizes = dict(embed_dim=128, depth=2, num_heads=2, mlp_ratio=2.66667 * 2) if tiny else {}
    with torch.device("meta"):
        ref = timm.create_model(name, pretrained=False, num_classes=0, img_size=img_size, **sizes)
    ref = _fill_cheaply(ref, 7)
    t = ref.state_dict()
    up: dict[str, torch.Tensor] = {}
    d = t["cls_token"].shape[-1]
    if registers:
        p0 = torch.randn(1, 1, d, generator=torch.Generator().manual_seed(1)) * 0.02
        up["cls_token"], up["pos_embed"] = t["cls_token"] - p0, torch.cat([p0, t["pos_embed"]], dim=1)
        up["register_tokens"] = t["reg_token"]
    else:
        up["cls_token"], up["pos_embed"] = t["cls_token"], t["pos_embed"]
    up["mask_token"] = torch.zeros(1, d)
    for k, v in t.items():
        if k in ("cls_token", "pos_embed", "reg_token"):
            continue
        up[k.replace("mlp.fc1.", "mlp.w12.").replace("mlp.fc2.", "mlp.w3.")] = v
    torch.save(up, path)
    if registers:  # timm's no_embed_class: the cls token carries its position (as _convert_dinov2 builds it)
        with torch.no_grad():
            ref.cls_token.copy_(up["cls_token"] + up["pos_embed"][:, :1])
    return path, ref


# --- I-JEPA (src/models/vision_transformer.py, src/train.py) and MSN (src/deit.py, src/msn_train.py) ---------------


class _PlainAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = ((q * (C // self.num_heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class _PlainBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _PlainAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbedFlat(nn.Module):
    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class JepaViT(nn.Module):
    """I-JEPA's encoder (no class token; ``forward`` = mean of the final-norm'd tokens, the paper's linear probe)
    or, with ``cls=True``, MSN's deit (``forward`` = final-norm'd class token, ``linear_eval.py`` with fc=None)."""

    def __init__(self, dim: int, depth: int, heads: int, patch: int, grid: int, cls: bool = False) -> None:
        super().__init__()
        if cls:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.patch_embed = _PatchEmbedFlat(dim, patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + int(cls), dim), requires_grad=False)
        self.blocks = nn.ModuleList(_PlainBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.has_cls = cls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if self.has_cls:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return x[:, 0] if self.has_cls else x.mean(dim=1)


def _jepa_predictor(dim: int, pdim: int, grid: int) -> dict[str, torch.Tensor]:
    """VisionTransformerPredictor keys (one block): they must be dropped, never read as the backbone."""
    g = torch.Generator().manual_seed(5)
    sd = {"predictor_embed.weight": torch.randn(pdim, dim, generator=g), "predictor_embed.bias": torch.zeros(pdim),
          "mask_token": torch.zeros(1, 1, pdim), "predictor_pos_embed": torch.randn(1, grid * grid, pdim, generator=g),
          "predictor_norm.weight": torch.ones(pdim), "predictor_norm.bias": torch.zeros(pdim),
          "predictor_proj.weight": torch.randn(dim, pdim, generator=g), "predictor_proj.bias": torch.zeros(dim)}  # fmt: skip
    blk = _PlainBlock(pdim, 2).state_dict()
    sd.update({f"predictor_blocks.0.{k}": v for k, v in blk.items()})
    return sd


def ijepa(path: Path, *, dim: int = 192, depth: int = 12, heads: int = 3, patch: int = 16, grid: int = 4,
          ddp: bool = True) -> tuple[Path, nn.Module, nn.Module]:  # fmt: skip
    """``src/train.py`` save_checkpoint. Returns (file, target encoder, online encoder) as references."""
    from sslhub.checkpoints.readers.mae import mae_sincos_pos_embed

    torch.manual_seed(1)
    target = randomize(JepaViT(dim, depth, heads, patch, grid), 1)
    online = randomize(JepaViT(dim, depth, heads, patch, grid), 2)
    with torch.no_grad():  # get_2d_sincos_pos_embed(cls_token=False): the fixed table, in both copies
        for m in (target, online):
            m.pos_embed.copy_(mae_sincos_pos_embed(dim, grid)[:, 1:])
    wrap = (lambda m: DDP(m).state_dict()) if ddp else (lambda m: m.state_dict())
    pred = {("module." if ddp else "") + k: v for k, v in _jepa_predictor(dim, 64, grid).items()}
    torch.save({"encoder": wrap(online), "predictor": pred, "target_encoder": wrap(target),
                "opt": _optimizer_state(online, lr=1e-3), "scaler": _scaler(), "epoch": 300, "loss": 0.12,
                "batch_size": 128, "world_size": 16, "lr": 1e-3}, path)  # fmt: skip
    return path, target.eval(), online.eval()


def msn(path: Path, *, dim: int = 192, depth: int = 12, heads: int = 3, patch: int = 16, grid: int = 4,
        ) -> tuple[Path, nn.Module]:  # fmt: skip
    """``src/msn_train.py`` checkpoint: DDP encoders with the projection head as ``fc`` (fc1, bn1, fc2, bn2, fc3)."""
    from collections import OrderedDict

    def encoder(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        m = JepaViT(dim, depth, heads, patch, grid, cls=True)
        m.fc = nn.Sequential(OrderedDict(fc1=nn.Linear(dim, 64), bn1=nn.BatchNorm1d(64), gelu1=nn.GELU(),
                                         fc2=nn.Linear(64, 64), bn2=nn.BatchNorm1d(64), gelu2=nn.GELU(),
                                         fc3=nn.Linear(64, 32)))  # fmt: skip
        return randomize(m, seed)

    target, online = encoder(3), encoder(4)
    torch.save({"encoder": DDP(online).state_dict(), "opt": _optimizer_state(online), "prototypes": torch.randn(100, 32),
                "target_encoder": DDP(target).state_dict(), "epoch": 800, "loss": 2.3, "batch_size": 64,
                "world_size": 32, "lr": 1e-3, "temperature": 0.1}, path)  # fmt: skip
    return path, target.eval()


# --- LightlyTrain checkpoints/last.ckpt (lightly_train/_checkpoint.py, _callbacks/checkpoint.py) --------------------


class _FakeModules:
    """Classes pickled under ``lightly_train`` module names, as LightlyTrain's own objects are (the modules are
    registered in ``sys.modules`` only while saving, so loading can never import them)."""

    def __init__(self, payload: Any = None) -> None:
        import sys

        self.sys = sys
        self.names = ["lightly_train", "lightly_train._models", "lightly_train._models.model_wrapper"]
        self.payload = payload

    def __enter__(self) -> dict[str, type]:
        mods = {n: types_module(n) for n in self.names}
        leaf = mods["lightly_train._models.model_wrapper"]

        class DINOv2ViTModelWrapper(nn.Module):
            pass

        class EmbeddingModel(nn.Module):
            pass

        for cls in (DINOv2ViTModelWrapper, EmbeddingModel):
            cls.__module__, cls.__qualname__ = leaf.__name__, cls.__name__
            setattr(leaf, cls.__name__, cls)
        self.sys.modules.update(mods)
        return {"wrapper": DINOv2ViTModelWrapper, "embedding": EmbeddingModel}

    def __exit__(self, *exc: object) -> None:
        for n in self.names:
            self.sys.modules.pop(n, None)


def types_module(name: str) -> Any:
    import types

    return types.ModuleType(name)


def lightly_train_ckpt(path: Path, *, method: str = "dinov2", payload: Any = None,
                       extra: dict[str, Any] | None = None) -> tuple[Path, nn.Module]:  # fmt: skip
    """A LightlyTrain ``last.ckpt``: Lightning's entries, the Method's ``state_dict`` and ``lightly_train`` with
    pickled model objects (and ``payload``, an object to pickle inside it). Returns (file, the exported model's
    reference): the DINOv2 teacher (method 'dinov2', a ViT-S/14 with 4 registers at 224 px, reference: timm's
    own DINOv2 conversion) or a torchvision ResNet-18 (method 'distillation': the student; 'simclr': the one copy)."""
    import upstream_fixtures as uf

    state: dict[str, torch.Tensor] = {}
    if method == "dinov2":
        _p, ref, up = uf.dinov2(path.with_suffix(".tmp"), registers=True, img_size=224)
        _p.unlink()
        state.update({f"teacher_embedding_model.wrapped_model._model.{k}": v for k, v in up.items()})
        state.update({f"student_embedding_model.wrapped_model._model.{k}": v + 1.0 for k, v in up.items()})
        d = up["cls_token"].shape[-1]
        for who in ("teacher", "student"):
            state[f"{who}_dino_head.mlp.0.weight"] = torch.randn(64, d)
            state[f"{who}_ibot_head.mlp.0.weight"] = torch.randn(64, d)
    else:
        ref = uf.tv_resnet("resnet18", 11)
        feats = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
        copy = "student_embedding_model" if method == "distillation" else "embedding_model"
        state.update({f"{copy}.wrapped_model._features.{k}": v for k, v in feats.items()})
        if method == "distillation":  # the frozen DINOv2 teacher sits outside any wrapped_model
            state["teacher_embedding_model.cls_token"] = torch.randn(1, 1, 32)
            state["teacher_embedding_model.patch_embed.proj.weight"] = torch.randn(32, 3, 14, 14)
            state["student_projection_head.weight"] = torch.randn(32, 512)
        else:
            state["projection_head.layers.0.weight"] = torch.randn(32, 512)
    with _FakeModules() as fake:
        wrapper = fake["wrapper"]()
        wrapper.proj = nn.Linear(4, 4)  # the pickled module carries its own Parameters
        wrapper._forward_hooks_seen = {1, 2, 3}  # a set, as in the real files
        emb = fake["embedding"]()
        emb.wrapped_model = wrapper
        lt = {"version": "0.18.0", "date": "2026-01-01T00:00:00+00:00",
              "models": {"model": wrapper, "wrapped_model": wrapper, "embedding_model": emb},
              "normalize_args": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}, "license_info": None}  # fmt: skip
        if payload is not None:
            lt["payload"] = payload
        ckpt = {"epoch": 99, "global_step": 1000, "pytorch-lightning_version": "2.6.6", "state_dict": state,
                "loops": {}, "callbacks": {"ModelCheckpoint{'monitor': None}": {"best_model_path": ""}},
                "optimizer_states": [], "lr_schedulers": [], "lightly_train": lt, **(extra or {})}  # fmt: skip
        torch.save(ckpt, path)
    return path, ref.eval()
