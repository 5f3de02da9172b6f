"""The rest of Lightly 1.6's names (issue 24) against the installed ``lightly``: HypersphereLoss, CO2Regularizer,
DSERegularizer, the functional forms (CAPI's sinkhorn_knopp, VISReg's terms, VICReg's, EMP-SSL's, MSN's),
``VICRegLLoss._global_loss``, DINO's center functions, ImageGridTransform, AIM's head signature; and Lightly's module
paths (``sslhub.losses.msn_loss`` for ``lightly.loss.msn_loss``) holding every name the Lightly module has."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
import torch

lightly = pytest.importorskip("lightly")

import lightly.loss  # noqa: E402
import lightly.models.modules  # noqa: E402
import lightly.transforms  # noqa: E402

import sslhub.heads  # noqa: E402
import sslhub.losses  # noqa: E402
import sslhub.transforms  # noqa: E402
from sslhub._lightly_paths import LIGHTLY_PATHS  # noqa: E402

ATOL = 1e-5
ROOT_SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _rand(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _params(fn: object) -> list[tuple[str, object, object]]:
    return [(p.name, p.default, p.kind) for p in inspect.signature(fn).parameters.values()]


def _same(ref_fn, our_fn, inputs: list[torch.Tensor], seed: int | None = None, grads: bool = True) -> torch.Tensor:
    """Same value (and input gradients) of a Lightly and an sslhub callable; ``seed`` reseeds before each call."""
    a = [t.clone().requires_grad_(grads) for t in inputs]
    b = [t.clone().requires_grad_(grads) for t in inputs]
    if seed is not None:
        torch.manual_seed(seed)
    ref = ref_fn(*a)
    if seed is not None:
        torch.manual_seed(seed)
    mine = our_fn(*b)
    assert mine.shape == ref.shape and torch.allclose(mine, ref, atol=ATOL, rtol=1e-5), (mine, ref)
    if grads and ref.requires_grad:
        ref.sum().backward()
        mine.sum().backward()
        for ga, gb in zip(a, b):
            assert torch.allclose(gb.grad, ga.grad, atol=ATOL, rtol=1e-4)
    return mine


# --- losses and regularisers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"t": 0.5, "lam": 2.0, "alpha": 1.0}])
def test_hypersphere_loss(kwargs) -> None:
    from lightly.loss.hypersphere_loss import HypersphereLoss

    assert _params(sslhub.losses.HypersphereLoss.__init__) == _params(HypersphereLoss.__init__)
    x, y = _rand(0, 16, 8), _rand(1, 16, 8)
    loss = _same(HypersphereLoss(**kwargs), sslhub.losses.HypersphereLoss(**kwargs), [x, y])
    # the definition by hand, default arguments: alignment + mean of the two uniformities
    if not kwargs:
        xn, yn = torch.nn.functional.normalize(x), torch.nn.functional.normalize(y)
        unif = lambda z: torch.log(torch.exp(-torch.cdist(z, z).square()[torch.triu_indices(16, 16, 1).unbind()]).mean())  # noqa: E731
        assert torch.allclose(loss, (xn - yn).norm(dim=1).square().mean() + (unif(xn) + unif(yn)) / 2, atol=1e-5)


@pytest.mark.parametrize("bank", [0, (32, 8)])
def test_co2_regularizer(bank) -> None:
    from lightly.loss.regularizer import CO2Regularizer

    assert _params(sslhub.losses.CO2Regularizer.__init__) == _params(CO2Regularizer.__init__)
    torch.manual_seed(0)
    ref = CO2Regularizer(alpha=0.7, t_consistency=0.1, memory_bank_size=bank)
    torch.manual_seed(0)
    mine = sslhub.losses.CO2Regularizer(alpha=0.7, t_consistency=0.1, memory_bank_size=bank)
    for step in range(3):  # the bank fills over the steps
        x, y = _rand(2 * step, 8, 8), _rand(2 * step + 1, 8, 8)
        _same(ref, mine, [x, y], grads=False)
    assert float(mine(_rand(7, 8, 8), _rand(7, 8, 8))) >= 0  # a symmetric KL divergence


@pytest.mark.parametrize("kwargs", [{}, {"weight": 0.5, "normalize": False, "local_clusters": 2, "global_clusters": 5}])
def test_dse_regularizer(kwargs) -> None:
    from lightly.loss.regularizer import DSERegularizer

    assert _params(sslhub.losses.DSERegularizer.__init__) == _params(DSERegularizer.__init__)
    x = _rand(3, 6, 10, 8)
    _same(DSERegularizer(**kwargs), sslhub.losses.DSERegularizer(**kwargs), [x], seed=5)
    assert float(sslhub.losses.DSERegularizer(weight=0)(x)) == 0
    for bad in ({"weight": -1}, {"local_clusters": 0}, {"tol": 0}):
        with pytest.raises(ValueError):
            sslhub.losses.DSERegularizer(**bad)
    with pytest.raises(ValueError, match="batch_size, num_tokens, dim"):
        sslhub.losses.DSERegularizer()(x[0])


def test_functional_forms() -> None:
    from lightly.loss import capi_loss, emp_ssl_loss, msn_loss, vicreg_loss, visreg_loss, wmse_loss

    from sslhub.losses import capi_loss as o_capi, emp_ssl_loss as o_emp, msn_loss as o_msn  # noqa: I001
    from sslhub.losses import vicreg_loss as o_vicreg, visreg_loss as o_visreg, wmse_loss as o_wmse

    z = _rand(4, 3, 16, 8)
    _same(lambda t: capi_loss.sinkhorn_knopp(t, 3), lambda t: o_capi.sinkhorn_knopp(t, 3), [z], grads=False)
    _same(emp_ssl_loss.invariance_loss, o_emp.invariance_loss, [z])
    _same(lambda t: emp_ssl_loss.tcr_loss(t, 0.2), lambda t: o_emp.tcr_loss(t, 0.2), [z])
    _same(visreg_loss.visreg_center_loss, o_visreg.visreg_center_loss, [z])
    _same(visreg_loss.visreg_scale_loss, o_visreg.visreg_scale_loss, [z])
    _same(lambda t: visreg_loss.visreg_shape_loss(t, 16), lambda t: o_visreg.visreg_shape_loss(t, 16), [z], seed=1)
    with pytest.raises(ValueError, match="num_slices"):
        o_visreg.visreg_shape_loss(z, 0)
    x, y = z[0], z[1]
    _same(vicreg_loss.invariance_loss, o_vicreg.invariance_loss, [x, y])
    _same(vicreg_loss.variance_loss, o_vicreg.variance_loss, [x])
    _same(vicreg_loss.covariance_loss, o_vicreg.covariance_loss, [x])
    _same(wmse_loss.norm_mse_loss, o_wmse.norm_mse_loss, [x, y])
    p = torch.softmax(z[0], dim=1)
    _same(lambda t: msn_loss.sinkhorn(t, 3), lambda t: o_msn.sinkhorn(t, 3), [p], grads=False)
    _same(lambda t: msn_loss.sharpen(t, 0.25), lambda t: o_msn.sharpen(t, 0.25), [p])


def test_vicregl_global_loss() -> None:
    from lightly.loss import VICRegLLoss

    glob = [(_rand(i, 8, 16), _rand(10 + i, 8, 2, 2, 16)) for i in range(2)]
    loc = [(_rand(20 + i, 8, 16), _rand(30 + i, 8, 1, 1, 16)) for i in range(3)]
    for local in (None, loc):
        ref = VICRegLLoss()._global_loss(global_view_features=glob, local_view_features=local)
        mine = sslhub.losses.VICRegLLoss()._global_loss(global_view_features=glob, local_view_features=local)
        assert torch.allclose(mine, ref, atol=ATOL)


def test_center_functions() -> None:
    from lightly.models.modules import center

    x = _rand(5, 8, 4)
    assert torch.equal(sslhub.heads.center_mean(x, (0,)), center.center_mean(x, (0,)))
    c, b = _rand(6, 1, 4), _rand(7, 1, 4)
    assert torch.equal(sslhub.heads.center_momentum(c, b, 0.9), center.center_momentum(c, b, 0.9))


def test_image_grid_transform() -> None:
    from lightly.transforms.image_grid_transform import ImageGridTransform

    image = torch.rand(3, 8, 8)
    pairs = [(lambda im: (im * 2, torch.zeros(2, 2, 2)), lambda v: v + 1), (lambda im: (im[:, :4], torch.ones(1, 1, 2)), lambda v: v)]
    ref, mine = ImageGridTransform(pairs)(image), sslhub.transforms.ImageGridTransform(pairs)(image)
    assert len(mine) == len(ref) == 4 and all(torch.equal(a, b) for a, b in zip(mine, ref))


def test_aim_head_signature() -> None:
    from lightly.models.modules import heads_timm

    def norm(params):  # block_fn's default is each library's own block class: compare it by name
        return [(n, getattr(d, "__name__", d), k) for n, d, k in params]

    for name in ("AIMPredictionHead", "AIMPredictionHeadBlock"):
        mine, ref = _params(getattr(sslhub.heads, name).__init__), _params(getattr(heads_timm, name).__init__)
        assert norm(mine) == norm(ref)
        assert dict((n, d) for n, d, _ in mine)["mlp_layer"] is dict((n, d) for n, d, _ in ref)["mlp_layer"]


# --- Lightly's module paths ---------------------------------------------------------------------------------------

# Lightly modules with no thin module in sslhub (docs/porting-lightlyssl.md, "Not copied"): video world models and
# superseded classes
NOT_COPIED = {"lightly.loss.latent_distance", "lightly.loss.lewm_loss", "lightly.models.modules.ijepa",
              "lightly.models.modules.masked_autoencoder", "lightly.models.modules.world_model"}  # fmt: skip
# names a Lightly module imports from another Lightly module for itself (not part of what scripts import from it):
# lightly.utils.dist's gather, lightly.utils.deprecation's warn_deprecated, the torchvision shim's class
INTERNAL = {"gather", "warn_deprecated", "DeprecatedShim"}
NOT_COPIED_NAMES = {"Location", "RandomHorizontalFlipWithLocation", "RandomResizedCropWithLocation",
                    "RandomVerticalFlipWithLocation", "MaskedCausalAttention", "MaskedCausalBlock",
                    "LeWMProjectionHead"}  # fmt: skip
PACKAGES = {"lightly.loss": "sslhub.losses", "lightly.transforms": "sslhub.transforms",
            "lightly.models.modules": "sslhub.heads"}  # fmt: skip


def _lightly_modules() -> list[tuple[str, str]]:
    out = []
    for package, ours in PACKAGES.items():
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
            if not any(info.name == n or info.name.startswith(n + ".") for n in NOT_COPIED):
                out.append((info.name, ours + info.name[len(package):]))
    return out


@pytest.mark.parametrize("theirs,ours", _lightly_modules())
def test_every_lightly_module_path_imports_with_its_names(theirs: str, ours: str) -> None:
    ref, mine = importlib.import_module(theirs), importlib.import_module(ours)
    names = {n for n, o in vars(ref).items() if not n.startswith("_") and (inspect.isclass(o) or inspect.isfunction(o))
             and getattr(o, "__module__", "").startswith("lightly")} - INTERNAL - NOT_COPIED_NAMES  # fmt: skip
    missing = sorted(n for n in names if not hasattr(mine, n))
    assert not missing, f"{ours} lacks {missing} of {theirs}"


def test_masked_vit_init_weights_is_lightlys() -> None:
    """``init_weights`` of Lightly's masked-ViT modules (defined in masked_vision_transformer_timm, imported by the
    MAE and decoder modules): the same initialisation of the same layers, from one seed."""
    from lightly.models.modules import masked_vision_transformer_timm as ref

    from sslhub.heads.masked_autoencoder_timm import init_weights as in_mae
    from sslhub.heads.masked_vision_transformer_timm import init_weights

    assert in_mae is init_weights
    for make in (lambda: torch.nn.Linear(12, 7), lambda: torch.nn.LayerNorm(12), lambda: torch.nn.Conv2d(3, 4, 2)):
        torch.manual_seed(0)
        mine, theirs = make(), make()
        with torch.no_grad():  # both start from something the init has to overwrite
            for p in (*mine.parameters(), *theirs.parameters()):
                p.fill_(0.5)
        torch.manual_seed(1)
        init_weights(mine)
        torch.manual_seed(1)
        ref.init_weights(theirs)
        for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()):
            assert torch.equal(a, b)


def test_thin_modules_are_the_real_objects_and_unknown_paths_fail() -> None:
    from sslhub.losses.msn_loss import MSNLoss, sinkhorn
    from sslhub.losses.regularizer.co2 import CO2Regularizer

    assert MSNLoss is sslhub.losses.MSNLoss and CO2Regularizer is sslhub.losses.CO2Regularizer
    assert sinkhorn is sslhub.losses.msn.msn_sinkhorn
    assert len(LIGHTLY_PATHS) > 70
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("sslhub.losses.lewm_loss")  # not copied: a plain import error


def test_run_lightly_tests_redirects_only_the_ported_packages() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_lightly_tests", ROOT_SCRIPTS / "run_lightly_tests.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)  # type: ignore[union-attr]
    src = ("from lightly.loss.msn_loss import MSNLoss\nimport lightly.transforms.random_crop_and_flip_with_grid\n"
           "from lightly.models.modules.heads import SimCLRProjectionHead\nfrom lightly.models import utils\n"
           "from lightly.utils.dist import gather\nfrom lightly.utils.scheduler import cosine_schedule\n")  # fmt: skip
    assert script.redirect(src) == (
        "from sslhub.losses.msn_loss import MSNLoss\nimport sslhub.transforms.random_crop_and_flip_with_grid\n"
        "from sslhub.heads.heads import SimCLRProjectionHead\nfrom lightly.models import utils\n"
        "from lightly.utils.dist import gather\nfrom sslhub.utils.scheduler import cosine_schedule\n")  # fmt: skip
    exec(compile(script.redirect(src).replace("from lightly.models import utils\n", ""), "<redirected>", "exec"), {})
