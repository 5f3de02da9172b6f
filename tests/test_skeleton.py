"""The cached-skeleton fast path of load_pretrained: same module as building it, and copies share nothing."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import sslhub
from sslhub.backbones import create_backbone
from sslhub.checkpoints import build as build_module
from sslhub.checkpoints import skeleton
from sslhub.checkpoints.io import save_safetensors

CASES = [
    ("resnet-18", {"width": 0.25}),  # Lightly ResNetGenerator
    ("resnet18", {}),  # torchvision
    ("vit_tiny_patch16_224", {"img_size": 32}),  # timm
]


def _reference(arch: str, kw: dict, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = create_backbone(arch, **kw)
    with torch.no_grad():  # non-trivial running stats, so BatchNorm buffers matter in eval mode
        for name, b in model.named_buffers():
            if b.is_floating_point():
                b.uniform_(0.5, 1.5)
    return model.eval()


class PathSpy:
    """Watches the names the build stage (``sslhub.checkpoints.build``) actually calls: ``assemble`` (the fast path) and, after it,
    ``create_backbone`` (the ordinary path, which constructs the module; timm families also build a meta model
    before, to name their classifier keys)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.assembled: list[nn.Module | None] = []
        self.constructed: list[dict] = []  # create_backbone calls after the first assemble call
        assemble, create = build_module.assemble, build_module.create_backbone

        def spy_assemble(*a, **k):
            self.assembled.append(assemble(*a, **k))
            return self.assembled[-1]

        def spy_create(*a, **k):
            if self.assembled:
                self.constructed.append(k)
            return create(*a, **k)

        monkeypatch.setattr(build_module, "assemble", spy_assemble)
        monkeypatch.setattr(build_module, "create_backbone", spy_create)

    def took_fast_path(self, loaded: nn.Module) -> bool:
        """The returned module is the one assemble() built, and nothing was constructed the ordinary way."""
        return len(self.assembled) == 1 and loaded is self.assembled[0] and self.constructed == []


@pytest.mark.parametrize("arch,kw", CASES)
def test_fast_path_builds_the_same_module(tmp_path, monkeypatch, arch, kw):
    ref = _reference(arch, kw)
    path = tmp_path / "w.pth"
    torch.save(ref.state_dict(), path)
    skeleton.clear_cache()
    spy = PathSpy(monkeypatch)
    loaded = sslhub.load_pretrained(path, arch=arch, **({"width": kw["width"]} if "width" in kw else {}))
    assert spy.took_fast_path(loaded)
    assert repr(loaded) == repr(ref)
    assert not any(m.training for m in loaded.modules())
    ref_sd, sd = ref.state_dict(), loaded.state_dict()
    assert list(sd) == list(ref_sd)
    assert all(torch.equal(sd[k], ref_sd[k]) and sd[k].dtype == ref_sd[k].dtype for k in sd)
    assert [type(p) for p in loaded.parameters()] == [nn.Parameter] * len(list(ref.parameters()))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), ref(x))


def test_copies_share_no_state(tmp_path, monkeypatch):
    ref = _reference("resnet-18", {"width": 0.25})
    path = tmp_path / "w.safetensors"
    save_safetensors(ref.state_dict(), path, {})
    a = sslhub.load_pretrained(path, arch="resnet-18")
    built = []
    # the skeleton cache builds through sslhub.backbones.create_backbone, the loader through its own import
    monkeypatch.setattr(sslhub.backbones, "create_backbone", lambda *a, **k: built.append(k))
    spy = PathSpy(monkeypatch)
    b = sslhub.load_pretrained(path, arch="resnet-18")
    assert spy.took_fast_path(b)
    assert a is not b and all(x is not y for x, y in zip(a.modules(), b.modules()))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = b(x)
        next(a.parameters()).add_(1.0)  # weights are separate tensors per load
        a.register_forward_hook(lambda m, i, o: o * 0)
        a.train()
        a.new_attr = nn.Linear(1, 1)
        assert torch.equal(b(x), before)
    assert not b.training and not hasattr(b, "new_attr") and not b._forward_hooks
    # A fresh load after all that is still the file's model, and an assembled model behaves like any module.
    c = sslhub.load_pretrained(path, arch="resnet-18")
    assert built == []  # the second and third load reuse the cached skeleton: nothing is constructed
    assert len(spy.assembled) == 2 and c is spy.assembled[1] and spy.constructed == []
    with torch.no_grad():
        assert torch.equal(c(x), before)
    d = copy.deepcopy(c)
    opt = torch.optim.SGD(d.parameters(), lr=0.1)
    d.train()
    d(x).sum().backward()
    opt.step()
    with torch.no_grad():
        assert torch.equal(c(x), before) and not torch.equal(d.eval()(x), before)


def test_mismatched_weights_take_the_checked_path(tmp_path, monkeypatch):
    ref = _reference("resnet-18", {"width": 0.25})
    sd = ref.state_dict()
    sd["5.1.bn2.weight"] = sd["5.1.bn2.weight"][:1]  # wrong shape: the fast path declines, the strict path reports
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    spy = PathSpy(monkeypatch)
    with pytest.raises(ValueError, match=r"bad\.pth.*shape mismatch: 5\.1\.bn2\.weight"):
        sslhub.load_pretrained(path, arch="resnet-18", width=0.25)
    assert spy.assembled == [None] and len(spy.constructed) == 1  # declined, then built and checked


def test_modules_with_extra_tensor_state_are_not_copied_structurally():
    class WithTensorAttr(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.scale = torch.ones(1)  # plain attribute: a structural copy would share it

    class WithNonPersistent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("cache", torch.zeros(1), persistent=False)

    tied = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    tied[1].weight = tied[0].weight
    assert skeleton._plan(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))) is not None
    for mod in (WithTensorAttr(), WithNonPersistent(), tied):
        assert skeleton._plan(mod) is None


def test_nested_attributes_are_copied_too():
    """Configs nest (timm ViTs keep their kwargs in pretrained_cfg); a copy must not share the inner dicts."""
    kwargs = {"arch": "vit_tiny_patch16_224", "img_size": 16, "patch_size": 8, "depth": 1}
    sd = create_backbone(**kwargs).state_dict()
    a, b = skeleton.assemble(kwargs, sd), skeleton.assemble(kwargs, sd)
    assert a is not None and b is not None and "timm_kwargs" in a.pretrained_cfg
    a.pretrained_cfg["timm_kwargs"]["changed"] = True
    assert "changed" not in b.pretrained_cfg["timm_kwargs"]
