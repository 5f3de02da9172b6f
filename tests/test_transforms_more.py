"""The transforms of issue 14 (MMCR, FastSiam, SMoG, W-MSE, VICRegL, PIRL/Jigsaw, DetCon-S, FDA and its
frequency-domain ops, AddGridTransform, MultiViewTransformV2, ToTensor) versus lightly 1.6.0.

Lightly draws blur, solarization, 90-degree rotations, jigsaw offsets and the frequency-mask fraction from
numpy and everything else from torch. With those numpy ops off (or at probability 1 with fixed parameters) and
every torch op present in both pipelines, seeding torch gives both libraries the same random crops, flips,
colour jitter, rotations and spectra, so the PIL outputs must agree exactly."""

from __future__ import annotations

import inspect

import pytest
import torch
from PIL import Image
from shared_data import shared_data
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

L = pytest.importorskip("lightly.transforms")

import sslhub.transforms as ours  # noqa: E402

ATOL = 1e-5
DATA = shared_data("cifar10_tiny") / "train"

NAMES = [
    "MMCRTransform", "FastSiamTransform", "SMoGTransform", "SmoGViewTransform", "WMSETransform",
    "VICRegLTransform", "VICRegLViewTransform", "PIRLTransform", "Jigsaw", "DetConSTransform",
    "DetConSViewTransform", "AddGridTransform", "MultiViewTransformV2", "ToTensor", "RFFT2DTransform",
    "IRFFT2DTransform", "PhaseShiftTransform", "AmplitudeRescaleTransform", "RandomFrequencyMaskTransform",
    "GaussianMixtureMask", "FDATransform", "FDAView1Transform", "FDAView2Transform",
]  # fmt: skip

# Seeded configurations: numpy-driven ops of Lightly off, every torch-driven op at a probability in (0, 1].
RANDOM = {
    "MMCRTransform": dict(k=3, input_size=24, vf_prob=0.5, gaussian_blur=0.0),
    "FastSiamTransform": dict(num_views=3, input_size=24, vf_prob=0.5, gaussian_blur=0.0),
    "SMoGTransform": dict(crop_sizes=(24, 12), crop_counts=(2, 2), gaussian_blur_probs=(0.0, 0.0), solarize_probs=(0.0, 0.0), cj_prob=0.6),
    "WMSETransform": dict(num_samples=3, input_size=24, gaussian_blur=0.0),
    # Blur with fixed sigma at probability 1 and solarization at 1 are deterministic in both libraries.
    "SMoGTransform-blur-solarize": dict(crop_sizes=(24, 12), crop_counts=(1, 1), gaussian_blur_probs=(1.0, 1.0),
                                        gaussian_blur_sigmas=(1.0, 1.0), solarize_probs=(1.0, 1.0)),
    "MMCRTransform-blur-solarize": dict(k=2, input_size=24, vf_prob=0.5, sigmas=(0.7, 0.7), solarization_prob=1.0),
}  # fmt: skip


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    files = sorted(DATA.glob("*/*.jpg"))[::25][:6]
    return [Image.open(f).convert("RGB") for f in files]


@pytest.fixture(scope="module")
def batch(images: list[Image.Image]) -> torch.Tensor:
    return torch.stack([TF.pil_to_tensor(im) for im in images])


def _seeded(fn, seed: int):
    torch.manual_seed(seed)
    return fn()


def _assert_views_equal(mine: list, ref: list, atol: float = ATOL) -> None:
    assert len(mine) == len(ref)
    for i, (a, b) in enumerate(zip(mine, ref)):
        assert a.shape == b.shape, (i, a.shape, b.shape)
        assert torch.allclose(a.float(), b.float(), atol=atol, rtol=0), (i, (a.float() - b.float()).abs().max())


@pytest.mark.parametrize("name", NAMES)
def test_signature_and_defaults_match_lightly(name: str) -> None:
    def sig(cls: type) -> list:
        params = inspect.signature(cls).parameters.values()
        # Jigsaw's default ``transform`` is an instance: compare its type name (both are a ``ToTensor``).
        return [(p.name, type(p.default).__name__ if p.name == "transform" else p.default, p.kind) for p in params]

    assert sig(getattr(ours, name)) == sig(getattr(L, name))


def test_random_resized_crop_and_flip_signature_matches_lightly() -> None:
    from lightly.transforms.random_crop_and_flip_with_grid import RandomResizedCropAndFlip as Ref

    from sslhub.transforms.dense import RandomResizedCropAndFlip

    sig = lambda c: [(p.name, p.default, p.kind) for p in inspect.signature(c).parameters.values()]  # noqa: E731
    assert sig(RandomResizedCropAndFlip) == sig(Ref)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("MultiViewTransformV2", "IRFFT2DTransform", "AddGridTransform")])
def test_transforms_pickle_for_dataloader_workers(name: str, batch: torch.Tensor) -> None:
    import pickle

    t = getattr(ours, name)()
    clone = pickle.loads(pickle.dumps(t))
    assert type(clone) is type(t) and vars(clone).keys() == vars(t).keys()


@pytest.mark.parametrize("key", sorted(RANDOM))
def test_seeded_random_views_equal_lightly(key: str, images: list[Image.Image]) -> None:
    name = key.split("-")[0]
    ref_t, my_t = getattr(L, name)(**RANDOM[key]), getattr(ours, name)(**RANDOM[key])
    for seed, image in enumerate(images[:3]):
        if "blur" in key:  # sslhub's blur draws its sigma from torch, at the end of a view: seed every view
            for i, (mine, ref) in enumerate(zip(my_t.transforms, ref_t.transforms, strict=True)):
                _assert_views_equal([_seeded(lambda: mine(image), seed + i)], [_seeded(lambda: ref(image), seed + i)])
        else:  # one seed for all views: both libraries also draw the same numbers from view to view
            _assert_views_equal(_seeded(lambda: my_t(image), seed), _seeded(lambda: ref_t(image), seed))


def test_vicregl_views_and_grids_equal_lightly(images: list[Image.Image]) -> None:
    # vf_prob=0.5 reaches Lightly's local views too (they ignore vf_prob and use 0.5; sslhub passes it on).
    cfg = dict(global_crop_size=24, local_crop_size=12, n_local_views=2, global_gaussian_blur_prob=0.0,
               local_gaussian_blur_prob=0.0, local_solarize_prob=0.0, vf_prob=0.5, cj_prob=0.7)  # fmt: skip
    ref_t, my_t = L.VICRegLTransform(**cfg), ours.VICRegLTransform(**cfg)
    for seed, image in enumerate(images[:3]):
        mine, ref = _seeded(lambda: my_t(image), seed), _seeded(lambda: ref_t(image), seed)
        _assert_views_equal(mine, ref)
        assert [tuple(g.shape) for g in mine[4:]] == [(7, 7, 2)] * 2 + [(3, 3, 2)] * 2


def test_vicregl_batch_grids_follow_crops_and_flips(batch: torch.Tensor) -> None:
    from sslhub.transforms.dense import RandomResizedCropAndFlip

    x = batch.float() / 255
    torch.manual_seed(0)
    full = RandomResizedCropAndFlip(grid_size=4, crop_size=32, crop_min_scale=1.0, crop_max_scale=1.0, hf_prob=1.0, vf_prob=0.0)
    views, grids = full(x)
    assert torch.allclose(views, x.flip(-1), atol=ATOL)  # the uncropped image, mirrored
    # Lightly's grid: linspace(left, left + width, n) + cell / 2 (its last "centre" lies half a cell outside).
    centres = torch.linspace(0, 32, 4) + 4
    assert torch.allclose(grids[:, 0, :, 0], centres.flip(0).expand(len(x), -1))  # x reversed by the flip
    assert torch.allclose(grids[:, :, 0, 1], centres.expand(len(x), -1))
    views, grids = RandomResizedCropAndFlip(grid_size=3, crop_size=16)(batch)
    assert views.shape == (len(batch), 3, 16, 16) and grids.shape == (len(batch), 3, 3, 2)
    assert grids.min() >= 0 and grids.max() <= 32 + 32 / 6 and grids.flatten(1).std(0).mean() > 0.1  # per-sample crops


def test_detcon_views_and_masks_equal_lightly(images: list[Image.Image]) -> None:
    cfg = dict(grid_size=(3, 3), input_size=24, vf_prob=0.5, rr_prob=0.5, rr_degrees=20.0, gaussian_blur_t2=0.5)
    ref_t, my_t = L.DetConSTransform(**cfg), ours.DetConSTransform(**cfg)
    for seed, image in enumerate(images[:3]):
        mask = tv_tensors.Mask(torch.zeros(1, 32, 32, dtype=torch.long))
        mine, ref = _seeded(lambda: my_t(image, mask), seed), _seeded(lambda: ref_t(image, mask), seed)
        for (my_img, my_mask), (ref_img, ref_mask) in zip(mine, ref):
            assert torch.allclose(my_img, ref_img, atol=ATOL)
            assert isinstance(my_mask, tv_tensors.Mask) and torch.equal(my_mask, ref_mask)
        assert mine[0][1].unique().numel() > 1  # the grid labels survived crop and rotation


def test_detcon_mask_fn_and_argument_errors(images: list[Image.Image]) -> None:
    def halves(image: Image.Image) -> torch.Tensor:
        labels = torch.zeros(image.size[1], image.size[0], dtype=torch.long)
        labels[:, image.size[0] // 2 :] = 1
        return labels

    # (every op at a probability in (0, 1]: sslhub leaves out ops at probability 0, Lightly still draws for them)
    cfg = dict(mask_fn=halves, input_size=24, gaussian_blur_t2=0.5, vf_prob=0.5, rr_prob=0.5, rr_degrees=10.0)
    mine = _seeded(lambda: ours.DetConSTransform(**cfg)(images[0]), 3)
    ref = _seeded(lambda: L.DetConSTransform(**cfg)(images[0]), 3)
    for (a, am), (b, bm) in zip(mine, ref):
        assert torch.allclose(a, b, atol=ATOL) and am.shape == (1, 24, 24) and torch.equal(am, bm)
    with pytest.raises(ValueError, match="mutually exclusive"):
        ours.DetConSTransform(grid_size=(2, 2), mask_fn=halves)


@pytest.mark.parametrize(("h", "w", "rows", "cols"), [(16, 16, 4, 4), (17, 23, 3, 5), (10, 7, 4, 3)])
def test_add_grid_transform_equals_lightly(h: int, w: int, rows: int, cols: int) -> None:
    boxes = tv_tensors.BoundingBoxes(torch.rand(2, 4) * 5, format="CXCYWH", canvas_size=(h, w))
    mask = tv_tensors.Mask(torch.zeros(2, h, w, dtype=torch.int32))
    image = torch.rand(3, h, w)
    mine, ref = ours.AddGridTransform(rows, cols)(image, boxes, mask), L.AddGridTransform(rows, cols)(image, boxes, mask)
    assert torch.equal(mine[0], image)
    assert isinstance(mine[1], tv_tensors.BoundingBoxes) and mine[1].format == ref[1].format
    assert torch.equal(mine[1], ref[1]) and torch.equal(mine[2], ref[2]) and mine[2].dtype == torch.int32
    assert sorted(mine[2].unique().tolist()) == list(range(rows * cols))


def _no_crop(ops: list) -> list:
    return [v2.Identity() if isinstance(op, v2.RandomResizedCrop) else op for op in ops]


@pytest.mark.parametrize(
    ("name", "kwargs", "atol"),
    [
        ("SmoGViewTransform", dict(crop_size=32, hf_prob=1.0, cj_prob=0.0, random_gray_scale=0.0, gaussian_blur_prob=0.0, solarize_prob=1.0), ATOL),
        ("SmoGViewTransform", dict(crop_size=32, hf_prob=0.0, cj_prob=1.0, cj_strength=0.0, random_gray_scale=1.0, gaussian_blur_prob=0.0), 1.01 / 255 / 0.224),
        ("VICRegLViewTransform", dict(cj_prob=0.0, random_gray_scale=0.0, gaussian_blur_prob=0.0, solarize_prob=1.0), ATOL),
        ("WMSETransform", dict(num_samples=1, input_size=32, cj_prob=0.0, random_gray_scale=0.0, hf_prob=1.0, gaussian_blur=0.0), ATOL),
    ],
)  # fmt: skip
def test_batched_uint8_path_matches_lightly_pil(name: str, kwargs: dict, atol: float, images: list[Image.Image], batch: torch.Tensor) -> None:
    """The vectorised batch path, crops left out, against Lightly's per-image PIL pipeline."""
    mine, ref = getattr(ours, name)(**kwargs), getattr(L, name)(**kwargs)
    mine = mine.transforms[0] if hasattr(mine, "transforms") else mine
    ref = ref.transforms[0] if hasattr(ref, "transforms") else ref.transform  # Lightly: a Compose per view
    mine = ours.ViewTransform(_no_crop(mine.ops), mine.normalize)
    ref = v2.Compose(_no_crop(list(ref.transforms)))
    out = mine(batch)
    for image, got in zip(images, out):
        assert torch.allclose(got, ref(image), atol=atol, rtol=0), (got - ref(image)).abs().max()


@pytest.mark.parametrize("name", ["MMCRTransform", "FastSiamTransform", "SMoGTransform", "WMSETransform", "VICRegLTransform",
                                  "FDATransform", "PIRLTransform"])  # fmt: skip
def test_uint8_batches_get_per_sample_views_with_lightly_shapes(name: str, images: list[Image.Image], batch: torch.Tensor) -> None:
    small = dict(input_size=30, crop_sizes=(32, 16), global_crop_size=32, local_crop_size=16, n_local_views=2, k=3)
    cls = getattr(ours, name)
    if name == "FDATransform":
        # (narrow Gaussians: at 32 px the default ones can cover the zero frequency and black out the view)
        make = lambda lib: getattr(lib, name)(lib.FDAView1Transform(input_size=32, gmm_std_range=(2, 4)),  # noqa: E731
                                              lib.FDAView2Transform(input_size=32))
    else:
        make = lambda lib: getattr(lib, name)(**{k: v for k, v in small.items() if k in inspect.signature(cls).parameters})  # noqa: E731
    ref = make(L)(images[0])
    same = batch[:1].expand(8, -1, -1, -1).contiguous()
    torch.manual_seed(0)
    views = make(ours)(same)
    assert [tuple(v.shape) for v in views] == [(8, *r.shape) for r in ref]
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in views)
    first = views[0].flatten(1)
    assert (first[1:] - first[0]).abs().amax(dim=1).min() > 0.01  # every sample got its own augmentation
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(views, make(ours)(same)))  # seeded


# ------------------------------------------------------------------------------------------- frequency domain


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("PhaseShiftTransform", {}),
        ("PhaseShiftTransform", dict(range=(0.1, 0.9), include_negatives=True, sign_probability=0.3)),
        ("AmplitudeRescaleTransform", dict(range=(0.5, 2.0))),
        ("RandomFrequencyMaskTransform", dict(k=(0.2, 0.2))),  # Lightly draws the fraction from numpy
        ("GaussianMixtureMask", dict(num_gaussians=5, std_range=(2, 6))),
    ],
)
def test_spectrum_ops_equal_lightly_on_one_spectrum(name: str, kwargs: dict) -> None:
    spectrum = torch.fft.rfft2(torch.rand(3, 16, 20))
    for seed in range(3):
        mine = _seeded(lambda: getattr(ours, name)(**kwargs)(spectrum), seed)
        ref = _seeded(lambda: getattr(L, name)(**kwargs)(spectrum), seed)
        assert mine.shape == spectrum.shape and not torch.allclose(mine, spectrum)
        torch.testing.assert_close(mine, ref, atol=1e-4, rtol=1e-5)  # values up to ~300: float32 rounding
    pixels = torch.rand(3, 16, 20)
    assert torch.equal(ours.RFFT2DTransform()(pixels), L.RFFT2DTransform()(pixels))
    assert torch.equal(ours.IRFFT2DTransform((16, 20))(spectrum), L.IRFFT2DTransform((16, 20))(spectrum))


def test_spectrum_ops_draw_per_sample_parameters_on_batches() -> None:
    spectra = torch.fft.rfft2(torch.rand(1, 3, 16, 16)).expand(64, -1, -1, -1)
    torch.manual_seed(0)
    shifted = ours.PhaseShiftTransform(range=(0.4, 0.7))(spectra)
    theta = (shifted[:, 0, 2, 3] / spectra[:, 0, 2, 3]).angle()  # one phase shift per sample
    assert theta.min() >= 0.4 - 1e-4 and theta.max() <= 0.7 + 1e-4 and theta.std() > 0.05
    masked = ours.RandomFrequencyMaskTransform(k=(0.1, 0.3))(spectra)
    zeroed = (masked[:, 0] == 0).flatten(1).float().mean(1)
    assert zeroed.min() > 0.05 and zeroed.max() < 0.4 and zeroed.std() > 0.02
    assert torch.equal(masked[:, :, 0, 0], spectra[:, :, 0, 0])  # the zero frequency is kept
    assert torch.equal(masked[:, 0] == 0, masked[:, 2] == 0)  # same frequencies in every channel
    gmm = ours.GaussianMixtureMask(num_gaussians=3, std_range=(1, 3))(spectra)
    factor = (gmm / spectra).real
    assert factor.min() >= -1e-6 and factor.max() <= 1 + 1e-6
    assert (factor[1:] - factor[0]).abs().flatten(1).amax(1).min() > 0.1  # different Gaussians per sample


def test_fda_views_equal_lightly_where_pixels_stay_in_range(images: list[Image.Image]) -> None:
    """Lightly wraps pixels that the spectrum ops push out of [0, 1] around modulo 256; sslhub clamps them.
    Everywhere else (and with every op random) the seeded views agree."""
    cfg = dict(input_size=24, gaussian_blur=0.0, ampl_rescale_prob=0.5, phase_shift_prob=0.5, rand_freq_mask_prob=0.5,
               gmm_prob=0.5, gmm_std_range=(2, 4), rand_freq_mask_range=(0.05, 0.05), vf_prob=0.5, cj_prob=0.0,
               random_gray_scale=0.0, normalize=None)  # fmt: skip
    inside_total = 0.0
    for name in ("FDAView1Transform", "FDAView2Transform"):
        ref_t, my_t = getattr(L, name)(**cfg), getattr(ours, name)(**cfg)
        for seed, image in enumerate(images[:3]):
            mine, ref = _seeded(lambda: my_t(image), seed), _seeded(lambda: ref_t(image), seed)
            inside = (mine > 0) & (mine < 1)
            assert torch.allclose(mine[inside], ref[inside], atol=ATOL)
            assert mine.min() >= 0 and mine.max() <= 1
            inside_total += inside.float().mean().item() / 6
    assert inside_total > 0.8


def test_fda_batched_path_matches_per_image(images: list[Image.Image], batch: torch.Tensor) -> None:
    cfg = dict(input_size=32, ampl_rescale_range=(1.3, 1.3), ampl_rescale_prob=1.0, phase_shift_range=(0.5, 0.5),
               phase_shift_prob=1.0, rand_freq_mask_prob=0.0, gmm_prob=0.0, hf_prob=1.0, cj_prob=0.0,
               random_gray_scale=0.0, gaussian_blur=0.0, normalize=None)  # fmt: skip
    view = ours.FDAView1Transform(**cfg)
    view = ours.ViewTransform(_no_crop(view.ops), view.normalize)
    out = view(batch)
    ref = torch.stack([view(image) for image in images])
    assert torch.allclose(out, ref, atol=1.01 / 255)  # the per-image path rounds to uint8 after the inverse FFT
    assert (out - batch / 255).abs().mean() > 0.02  # and the spectrum ops did change the images


# --------------------------------------------------------------------------------------------- PIRL / Jigsaw


def test_jigsaw_tiles_equal_lightly_up_to_order(images: list[Image.Image], batch: torch.Tensor) -> None:
    # Cells of 10 px and tiles of 10 px: no random offset, so only the permutation is random.
    mine = ours.Jigsaw(n_grid=3, img_size=30, crop_size=10)(images[0])
    ref = L.Jigsaw(n_grid=3, img_size=30, crop_size=10, transform=L.ToTensor())(images[0])
    assert mine.shape == ref.shape == (9, 3, 10, 10)
    key = lambda t: sorted(tile.flatten().tolist() for tile in t)  # noqa: E731
    assert key(mine) == key(ref)
    tiles = ours.Jigsaw(n_grid=3, img_size=30, crop_size=10)(batch)
    assert tiles.shape == (len(batch), 9, 3, 10, 10)
    for image, got in zip(images, tiles):
        assert key(got) == key(L.Jigsaw(n_grid=3, img_size=30, crop_size=10, transform=L.ToTensor())(image))
    torch.manual_seed(0)
    orders = ours.Jigsaw(n_grid=3, img_size=30, crop_size=10)(batch[:1].expand(16, -1, -1, -1))
    assert (orders[1:] != orders[0]).flatten(1).any(1).all()  # a permutation per sample
    with pytest.raises(ValueError, match="at least 30 px"):
        ours.Jigsaw(n_grid=3, img_size=30, crop_size=10)(images[0].resize((20, 20)))


def test_jigsaw_offsets_stay_inside_their_cells(batch: torch.Tensor) -> None:
    marks = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32).expand(4, 3, -1, -1)
    tiles = ours.Jigsaw(n_grid=2, img_size=32, crop_size=10, transform=lambda t: t)(marks)  # (4, 4, 3, 10, 10)
    top, left = (tiles[:, :, 0, 0, 0] // 32), (tiles[:, :, 0, 0, 0] % 32)
    cell_row, cell_col = top // 16, left // 16
    assert sorted(zip(cell_row[0].tolist(), cell_col[0].tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert ((top % 16) <= 6).all() and ((left % 16) <= 6).all()  # offsets in 0 .. cell - tile
    assert torch.equal(tiles[..., 1, 0], tiles[..., 0, 0] + 32)  # tiles are contiguous image regions


def test_pirl_views_have_lightly_shapes(images: list[Image.Image]) -> None:
    image = images[0]
    mine, ref = ours.PIRLTransform(input_size=32)(image), L.PIRLTransform(input_size=32)(image)
    assert [tuple(v.shape) for v in mine] == [tuple(v.shape) for v in ref] == [(3, 32, 32), (9, 3, 10, 10)]
    cfg = dict(input_size=32, cj_prob=0.0, random_gray_scale=0.0, hf_prob=0.0, n_grid=2)  # deterministic tiles
    mine, ref = ours.PIRLTransform(**cfg)(image)[1], L.PIRLTransform(**cfg)(image)[1]
    key = lambda t: sorted(tile.flatten().tolist() for tile in t)  # noqa: E731
    assert torch.allclose(torch.tensor(key(mine)), torch.tensor(key(ref)), atol=ATOL)


def test_to_tensor_and_multi_view_transform_v2_equal_lightly(images: list[Image.Image]) -> None:
    image, mask = images[0], tv_tensors.Mask(torch.ones(1, 32, 32, dtype=torch.long))
    assert torch.equal(ours.ToTensor()(image), L.ToTensor()(image))
    flips = [v2.RandomHorizontalFlip(p=1.0), v2.RandomVerticalFlip(p=1.0)]
    mine, ref = ours.MultiViewTransformV2(flips)(image, mask), L.MultiViewTransformV2(flips)(image, mask)
    assert len(mine) == 2 and all(TF.pil_to_tensor(a[0]).equal(TF.pil_to_tensor(b[0])) and a[1].equal(b[1])
                                  for a, b in zip(mine, ref))  # fmt: skip


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: checks that no op makes the host wait")
@pytest.mark.parametrize("name", ["MMCRTransform", "FastSiamTransform", "SMoGTransform", "WMSETransform", "VICRegLTransform",
                                  "FDATransform", "PIRLTransform"])  # fmt: skip
def test_batched_augmentation_on_the_gpu_never_waits_for_it(name: str, batch: torch.Tensor) -> None:
    small = dict(input_size=30, crop_sizes=(32, 16), global_crop_size=32, local_crop_size=16, n_local_views=2, k=3)
    cls = getattr(ours, name)
    t = cls(**{k: v for k, v in small.items() if k in inspect.signature(cls).parameters}) if name != "FDATransform" else \
        cls(ours.FDAView1Transform(input_size=32), ours.FDAView2Transform(input_size=32))  # fmt: skip
    x = batch.cuda()
    t(x)  # first call: pinned host buffers, FFT plans and normalisation constants are set up
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
