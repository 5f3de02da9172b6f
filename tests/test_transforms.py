"""sslhub.transforms versus lightly 1.6.0: same arguments/defaults, same views; deterministic parts equal
lightly's output; the vectorised uint8 batch path matches torchvision/lightly op by op."""

from __future__ import annotations

from shared_data import shared_data  # noqa: E402
import inspect

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

L = pytest.importorskip("lightly.transforms")

import sslhub.transforms as ours  # noqa: E402
from sslhub.transforms import batched  # noqa: E402

ATOL = 1e-5
DATA = shared_data("cifar10_tiny") / "train"

MULTI = [
    "SimCLRTransform", "MoCoV1Transform", "MoCoV2Transform", "DenseCLTransform", "SimSiamTransform",
    "VICRegTransform", "BYOLTransform", "TiCoTransform", "SwaVTransform", "DINOTransform",
]
SINGLE = [
    "SimCLRViewTransform", "SimSiamViewTransform", "VICRegViewTransform", "BYOLView1Transform",
    "BYOLView2Transform", "TiCoView1Transform", "TiCoView2Transform", "SwaVViewTransform", "DINOViewTransform",
]
OPS = ["GaussianBlur", "RandomSolarization", "RandomRotate", "RandomRotateDegrees"]

SMALL = dict(
    input_size=32, crop_size=32, crop_sizes=(32, 16), crop_counts=(2, 3), global_crop_size=32,
    local_crop_size=16, n_local_views=3,
)
ALL_OFF = dict(
    SMALL, hf_prob=0.0, vf_prob=0.0, rr_prob=0.0, cj_prob=0.0, random_gray_scale=0.0, gaussian_blur=0.0,
    solarization_prob=0.0, solarize_prob=0.0,
)
# Every random op on with probability 1 and fixed parameters (colour jitter stays off: its factors are random).
ALL_ON = dict(
    SMALL, hf_prob=1.0, vf_prob=1.0, rr_prob=1.0, cj_prob=0.0, random_gray_scale=1.0, gaussian_blur=1.0,
    sigmas=(1.0, 1.0), solarization_prob=1.0, solarize_prob=1.0,
)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    if DATA.is_dir():
        files = sorted(DATA.glob("*/*.jpg"))[::25][:8]
        return [Image.open(f).convert("RGB") for f in files]
    g = torch.Generator().manual_seed(0)  # fallback: smooth random images
    raw = TF.resize(torch.randint(0, 256, (8, 3, 8, 8), generator=g, dtype=torch.uint8), [32, 32])
    return [TF.to_pil_image(x) for x in raw]


@pytest.fixture(scope="module")
def batch(images: list[Image.Image]) -> torch.Tensor:
    return torch.stack([TF.pil_to_tensor(im) for im in images])


def _make(module: object, name: str, cfg: dict) -> object:
    cls = getattr(module, name)
    if name in ("BYOLTransform", "TiCoTransform"):
        v1, v2_ = ("TiCoView1Transform", "TiCoView2Transform") if name == "TiCoTransform" else ("BYOLView1Transform", "BYOLView2Transform")
        return cls(_make(module, v1, cfg), _make(module, v2_, cfg))
    params = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in cfg.items() if k in params}
    if name == "DINOTransform" and "gaussian_blur" in kwargs:
        kwargs["gaussian_blur"] = (kwargs["gaussian_blur"],) * 3
    return cls(**kwargs)


def _views(t: object) -> list:
    return list(getattr(t, "transforms", [t]))


@pytest.mark.parametrize("name", MULTI + SINGLE + OPS)
def test_signature_and_defaults_match_lightly(name: str) -> None:
    sig = lambda c: [(p.name, p.default, p.kind) for p in inspect.signature(c).parameters.values()]  # noqa: E731
    assert sig(getattr(ours, name)) == sig(getattr(L, name))


def test_imagenet_normalize_matches_lightly() -> None:
    from lightly.transforms.utils import IMAGENET_NORMALIZE

    assert ours.IMAGENET_NORMALIZE == IMAGENET_NORMALIZE


@pytest.mark.parametrize("name", MULTI)
def test_default_views_have_lightly_count_and_shapes(name: str, images: list[Image.Image], batch: torch.Tensor) -> None:
    image = images[0].resize((40, 36))
    ref_views, my_views = _make(L, name, SMALL)(image), _make(ours, name, SMALL)(image)
    assert [tuple(v.shape) for v in my_views] == [tuple(v.shape) for v in ref_views]
    assert all(v.dtype == torch.float32 for v in my_views)
    batched_views = _make(ours, name, SMALL)(batch)  # default probabilities, uint8 batch
    assert [tuple(v.shape) for v in batched_views] == [(len(batch), *v.shape) for v in ref_views]
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in batched_views)


@pytest.mark.parametrize("cfg_name", ["all_off", "all_on", "all_on_no_normalize", "degrees"])
@pytest.mark.parametrize("name", MULTI + SINGLE)
def test_deterministic_views_equal_lightly(name: str, cfg_name: str, images: list[Image.Image]) -> None:
    """Seeding torch before each view gives both libraries the same random crop (it is the first random
    op); with every other op at probability 0 or 1 the PIL outputs must agree exactly."""
    cfg = {
        "all_off": ALL_OFF,
        "all_on": ALL_ON,
        "all_on_no_normalize": dict(ALL_ON, normalize=None),
        "degrees": dict(ALL_OFF, rr_prob=1.0, rr_degrees=(30.0, 30.0)),
    }[cfg_name]
    ref_views, my_views = _views(_make(L, name, cfg)), _views(_make(ours, name, cfg))
    assert len(my_views) == len(ref_views)
    for i, (mine, ref) in enumerate(zip(my_views, ref_views)):
        for image in images[:3]:
            torch.manual_seed(i)
            a = ref(image)
            torch.manual_seed(i)
            b = mine(image)
            assert b.shape == a.shape
            assert torch.allclose(b, a, atol=ATOL, rtol=0), (i, (b - a).abs().max())


def _without_crop_lightly(view: object) -> object:
    view.transform.transforms[0] = v2.Identity()  # lightly's pipeline is a v2.Compose with the crop first
    return view


def _without_crop_ours(view: ours.ViewTransform) -> ours.ViewTransform:
    return ours.ViewTransform(view.ops[1:], view.normalize)


@pytest.mark.parametrize(
    ("cfg", "atol"),
    [
        (dict(ALL_ON, random_gray_scale=0.0, gaussian_blur=0.0), ATOL),  # flips, rot90, solarize: exact
        (dict(ALL_ON, solarization_prob=0.0, solarize_prob=0.0, gaussian_blur=0.0), 1.01 / 255 / 0.224),  # gray: rounding
        (dict(ALL_OFF, cj_prob=1.0, cj_strength=0.0), ATOL),
    ],
)
@pytest.mark.parametrize("name", ["SimCLRViewTransform", "VICRegViewTransform", "BYOLView2Transform", "DINOViewTransform"])
def test_batched_uint8_path_matches_lightly_pil(name: str, cfg: dict, atol: float, images: list[Image.Image], batch: torch.Tensor) -> None:
    mine = _without_crop_ours(_make(ours, name, cfg))
    out = mine(batch)
    for image, got in zip(images, out):
        ref = _without_crop_lightly(_make(L, name, cfg))(image)
        assert torch.allclose(got, ref, atol=atol, rtol=0), (got - ref).abs().max()


def test_batched_blur_is_close_to_lightly_pil_blur(images: list[Image.Image], batch: torch.Tensor) -> None:
    cfg = dict(ALL_OFF, gaussian_blur=1.0, sigmas=(1.0, 1.0), normalize=None)
    out = _without_crop_ours(_make(ours, "SimCLRViewTransform", cfg))(batch)
    ref = torch.stack([_without_crop_lightly(_make(L, "SimCLRViewTransform", cfg))(im) for im in images])
    diff = (out - ref).abs()
    # PIL approximates the Gaussian with box blurs; an exact Gaussian differs a little, mostly at edges.
    assert diff.mean() < 1.5 / 255 and diff.max() < 40 / 255
    assert (out - batch / 255).abs().mean() > 4 * diff.mean()  # and the blur did change the images


def test_batch_has_per_sample_randomness_and_is_seeded(batch: torch.Tensor) -> None:
    same = batch[:1].expand(16, -1, -1, -1).contiguous()
    t = ours.SimCLRTransform(input_size=24)
    torch.manual_seed(0)
    views = t(same)
    flat = views[0].flatten(1)
    assert (flat[1:] - flat[0]).abs().amax(dim=1).min() > 0.05  # every sample got its own augmentation
    assert not torch.allclose(views[0], views[1])
    torch.manual_seed(0)
    again = t(same)
    assert all(torch.equal(a, b) for a, b in zip(views, again))


def test_single_tensor_and_float_batch_inputs(batch: torch.Tensor) -> None:
    t = ours.DINOTransform(global_crop_size=32, local_crop_size=16, n_local_views=2)
    single = t(batch[0])
    assert [tuple(v.shape) for v in single] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 2
    floats = batch.float() / 255
    before = floats.clone()
    views = ours.SimCLRTransform(input_size=32, gaussian_blur=1.0, random_gray_scale=1.0)(floats)
    assert torch.equal(floats, before)  # input never modified in place
    assert views[0].shape == floats.shape


def test_multicrop_with_generic_transform_runs_per_sample(batch: torch.Tensor) -> None:
    t = ours.MultiCropTranform((32, 16), (1, 2), (0.5, 0.2), (1.0, 0.5), transforms=v2.RandomHorizontalFlip(p=1.0))
    views = t(batch)
    assert [tuple(v.shape[1:]) for v in views] == [(3, 32, 32), (3, 16, 16), (3, 16, 16)]
    assert views[0].max() <= 1.0 and views[0].min() >= 0.0  # no normalisation for generic transforms


@pytest.mark.parametrize(
    ("jitter", "reference"),
    [
        (dict(brightness=(1.4, 1.4)), lambda x: TF.adjust_brightness(x, 1.4)),
        (dict(contrast=(0.5, 0.5)), lambda x: TF.adjust_contrast(x, 0.5)),
        (dict(saturation=(1.8, 1.8)), lambda x: TF.adjust_saturation(x, 1.8)),
        (dict(hue=(0.3, 0.3)), lambda x: TF.adjust_hue(x, 0.3)),
        (dict(hue=(-0.45, -0.45)), lambda x: TF.adjust_hue(x, -0.45)),
    ],
)
def test_batched_color_jitter_matches_torchvision(jitter: dict, reference, batch: torch.Tensor) -> None:
    x = batch.float() / 255
    got = batched.color_jitter(x, v2.ColorJitter(**jitter))
    assert torch.allclose(got, torch.stack([reference(img) for img in x]), atol=ATOL)


def test_batched_color_jitter_probability_and_factor_ranges(batch: torch.Tensor) -> None:
    x = batch.float().repeat(8, 1, 1, 1) / 255
    torch.manual_seed(0)
    out = batched.color_jitter(x, v2.ColorJitter(brightness=(0.5, 1.5)), p=0.5)
    changed = (out - x).flatten(1).abs().amax(dim=1) > 1e-6
    assert 0.2 < changed.float().mean() < 0.8
    ratio = out.flatten(1).sum(1)[changed] / x.flatten(1).sum(1)[changed]
    assert ratio.min() > 0.45 and ratio.max() < 1.55 and ratio.std() > 0.1


def test_batched_blur_matches_torchvision_gaussian_blur(batch: torch.Tensor) -> None:
    x = batch.float() / 255
    got = batched.gaussian_blur(x, ours.GaussianBlur(prob=1.0, sigmas=(1.3, 1.3)))  # kernel 2*ceil(3.9)+1 = 9
    ref = torch.stack([TF.gaussian_blur(img, [9, 9], [1.3, 1.3]) for img in x])
    assert torch.allclose(got, ref, atol=ATOL)
    tensor_op = ours.GaussianBlur(prob=1.0, sigmas=(1.3, 1.3))(batch[0])  # standalone op on a uint8 tensor
    assert torch.allclose(tensor_op.float(), (ref[0] * 255).round(), atol=1.0)


def test_batched_crop_boxes_follow_random_resized_crop_rules() -> None:
    torch.manual_seed(0)
    boxes = batched._crop_boxes(4000, 30, 40, (0.08, 1.0), (3 / 4, 4 / 3))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert boxes.min() >= 0 and boxes[:, 2].max() <= 40 and boxes[:, 3].max() <= 30
    area = w * h / 1200
    assert area.min() >= 0.06 and area.max() <= 1.0 and area.std() > 0.2
    assert ((w / h) > 0.6).all() and ((w / h) < 1.6).all()
    assert torch.equal(boxes, boxes.round())  # integer pixel boxes, like torchvision
    # Upsampling a crop equals torchvision's resized_crop away from the crop border.
    x = torch.rand(1, 3, 30, 40)
    got = batched.roi_align(x, torch.tensor([[0.0, 6.0, 4.0, 22.0, 20.0]]), (32, 32), 1.0, -1, True)
    ref = TF.resized_crop(x, 4, 6, 16, 16, [32, 32], antialias=True)
    assert torch.allclose(got[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2], atol=ATOL)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("GaussianBlur", dict(prob=1.0, sigmas=(1.5, 1.5))),
        ("RandomSolarization", dict(prob=1.0, threshold=100)),
        ("RandomRotate", dict(prob=1.0, angle=90)),
        ("RandomRotate", dict(prob=1.0, angle=180)),
        ("RandomRotateDegrees", dict(prob=1.0, degrees=(20.0, 20.0))),
    ],
)
def test_standalone_ops_match_lightly_on_pil_and_tensors(name: str, kwargs: dict, images: list[Image.Image]) -> None:
    image = images[1]
    ref, mine = getattr(L, name)(**kwargs), getattr(ours, name)(**kwargs)
    assert TF.pil_to_tensor(mine(image)).equal(TF.pil_to_tensor(ref(image)))
    tensor = TF.pil_to_tensor(image)
    got = mine(tensor)
    assert got.dtype == torch.uint8 and got.shape == tensor.shape
    if name.startswith("RandomRotate"):  # lightly's rotations accept tensors too
        assert torch.equal(got, ref(tensor))
    elif name == "RandomSolarization":  # lightly's solarization is PIL-only
        assert torch.equal(got, TF.pil_to_tensor(ref(image)))
    # (GaussianBlur: lightly's tensor path goes through PIL; ours is a true Gaussian, tested above.)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: checks that no op makes the host wait")
@pytest.mark.parametrize("name", MULTI)
def test_batched_augmentation_on_the_gpu_never_waits_for_it(name: str, batch: torch.Tensor) -> None:
    t = _make(ours, name, {})
    x = batch.cuda()
    t(x)  # first call: pinned host buffers and normalisation constants are set up
    torch.cuda.synchronize()
    torch.manual_seed(0)
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call (.item(), nonzero, pageable copy) raises
    try:
        views = t(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.manual_seed(0)  # random parameters come from the CPU generator: the CPU run draws the same ones
    for gpu, cpu in zip(views, t(batch), strict=True):
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-3, rtol=0)
