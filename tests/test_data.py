"""sslhub.data: the image-folder dataset (against torchvision's ImageFolder and Lightly's LightlyDataset) and the
fast uint8 decoder (against PIL and torchvision.transforms.v2)."""

from __future__ import annotations

from shared_data import shared_data  # noqa: E402
import io
import logging
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sslhub.data import (
    AugmentingCollate,
    DatasetError,
    ImageFolderDataset,
    UnreadableImageError,
    collate_skip_invalid,
    decode_batch,
    read_image_uint8,
)

TINY = shared_data("cifar10_tiny")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # The tensors here are tiny: OpenMP hand-offs cost more than they save, and on a busy 2-core machine a
    # 16-image training step took 0.31 s with 2 threads against 0.024 s with 1.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _smooth_image(w: int, h: int, seed: int = 0) -> Image.Image:
    """A photo-like image: gradients plus a few blobs (downscaling methods agree closely on it)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w, y / h, 0.5 + 0.5 * np.sin(x / w * 6 + y / h * 3)], axis=-1) * 200
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.2) * min(w, h)
        img[(x - cx) ** 2 + (y - cy) ** 2 < r**2] += rng.uniform(-60, 60, size=3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _png_with_bad_pixels(src: Image.Image) -> bytes:
    """A PNG whose chunk CRCs are valid but whose compressed pixel data is garbage: PIL's verify() passes,
    decoding fails. This is the kind of file that only shows up at load time."""
    buf = io.BytesIO()
    src.save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = bytes(data[pos + 4 : pos + 8])
        if ctype == b"IDAT":
            body = bytes(data[pos + 8 : pos + 8 + length])
            bad = body[:2] + bytes(b ^ 0x5A for b in body[2:])  # keep the zlib header, scramble the stream
            crc = zlib.crc32(ctype + bad) & 0xFFFFFFFF
            data[pos + 8 : pos + 8 + length] = bad
            data[pos + 8 + length : pos + 12 + length] = struct.pack(">I", crc)
        pos += 12 + length
    return bytes(data)


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    """Two classes of real CIFAR images plus files that are broken in different ways."""
    root = tmp_path / "messy"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for f in sorted((TINY / "train" / cls).iterdir())[:5]:
            shutil.copy(f, root / cls / f.name)
    good = (TINY / "train" / "cat" / sorted(p.name for p in (TINY / "train" / "cat").iterdir())[0]).read_bytes()
    (root / "cat" / "garbage.jpg").write_bytes(b"definitely not a jpeg" * 20)
    (root / "cat" / "empty.png").write_bytes(b"")
    (root / "dog" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "dog" / "notes.txt").write_text("not an image, not counted")
    (root / "dog" / "bad_pixels.png").write_bytes(_png_with_bad_pixels(_smooth_image(20, 16)))
    return root


def test_index_matches_torchvision_imagefolder_and_lightly() -> None:
    import torchvision
    from lightly.data import LightlyDataset

    ds = ImageFolderDataset(TINY / "train")
    ref = torchvision.datasets.ImageFolder(str(TINY / "train"))
    assert ds.classes == ref.classes
    assert [(str(p), y) for p, y in ds.samples] == [(p, y) for p, y in ref.samples]
    assert ds.targets == ref.targets
    # Lightly writes these relative names into embedding files and uses the same label indices.
    lds = LightlyDataset(str(TINY / "train"))
    assert ds.filenames == lds.get_filenames()
    image, label, name = ds[7]
    ref_image, ref_label, ref_name = lds[7]
    assert (label, name) == (ref_label, ref_name)
    assert np.array_equal(np.asarray(image), np.asarray(ref_image.convert("RGB")))
    assert ds.skipped == 0 and ds.has_labels and len(ds) == 200


def test_flat_folder_has_label_minus_one(tmp_path: Path) -> None:
    for i, f in enumerate(sorted((TINY / "test" / "ship").iterdir())[:3]):
        shutil.copy(f, tmp_path / f"img{i}.jpg")
    ds = ImageFolderDataset(tmp_path, transform=lambda im: im.size)
    assert not ds.has_labels and ds.classes == []
    assert [ds[i] for i in range(3)] == [((32, 32), -1, f"img{i}.jpg") for i in range(3)]


def test_corrupt_files_skipped_with_one_warning(messy_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sslhub"):
        ds = ImageFolderDataset(messy_folder)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "3" in warnings[0].getMessage() and str(messy_folder) in warnings[0].getMessage()
    assert ds.skipped == 3  # garbage, empty, truncated; the PNG with valid CRCs passes the cheap check
    names = ds.filenames
    assert "dog/bad_pixels.png" in names and len(names) == 11
    assert not any(n.endswith(("garbage.jpg", "empty.png", "truncated.jpg", ".txt")) for n in names)


@pytest.mark.parametrize("decode_size", [None, 16])
def test_corrupt_file_tolerated_at_load_time(
    messy_folder: Path, decode_size: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    from torchvision.transforms import v2

    transform = v2.Compose([v2.ToImage(), v2.Resize([16, 16])]) if decode_size is None else None
    ds = ImageFolderDataset(messy_folder, transform=transform, decode_size=decode_size)
    bad = ds.filenames.index("dog/bad_pixels.png")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sslhub"):
        assert ds[bad] is None
        assert ds[bad] is None  # a second failure is counted, not warned again
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert ds.skipped == 3 + 2
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_skip_invalid)
    batches = [b for b in loader if b is not None]
    images = torch.cat([b[0] for b in batches])
    names = [n for b in batches for n in b[2]]
    assert images.shape == (10, 3, 16, 16) and images.dtype == torch.uint8
    assert "dog/bad_pixels.png" not in names and len(names) == 10
    assert collate_skip_invalid([None, None]) is None


def test_augmenting_collate_in_workers_equals_the_transform_on_the_collated_batch(messy_folder: Path) -> None:
    from sslhub.transforms import SimCLRTransform

    transform = SimCLRTransform(input_size=16)
    ds = ImageFolderDataset(messy_folder, decode_size=24)
    items = [ds[i] for i in range(len(ds))]
    assert None in items  # the truncated file: dropped by the collate, as collate_skip_invalid does
    collate = AugmentingCollate(transform)
    torch.manual_seed(3)
    views, labels, names = collate(items)
    torch.manual_seed(3)
    images, ref_labels, ref_names = collate_skip_invalid(items)
    ref = transform(images)
    assert len(views) == 2 and views[0].shape == (len(ref_names), 3, 16, 16) and views[0].dtype == torch.float32
    assert all(torch.equal(a, b) for a, b in zip(views, ref))
    assert torch.equal(labels, ref_labels) and names == ref_names
    assert collate([None]) is None
    # in DataLoader workers (the transform is pickled there): every batch has its views, reproducibly per seed
    runs = []
    for _ in range(2):
        loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate,
                                             generator=torch.Generator().manual_seed(5))  # fmt: skip
        runs.append([b for b in loader if b is not None])
    assert sum(len(b[2]) for b in runs[0]) == len(ref_names)
    for a, b in zip(*runs):
        assert all(torch.equal(x, y) for x, y in zip(a[0], b[0]))


def test_missing_and_empty_folders_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=str(tmp_path / "nope")):
        ImageFolderDataset(tmp_path / "nope")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match=f"no images found in {tmp_path / 'empty'}"):
        ImageFolderDataset(tmp_path / "empty")
    (tmp_path / "allbad").mkdir()
    (tmp_path / "allbad" / "a.jpg").write_bytes(b"junk")
    with pytest.raises(DatasetError, match=str(tmp_path / "allbad")):
        ImageFolderDataset(tmp_path / "allbad")
    with pytest.raises(DatasetError, match="not a folder"):
        ImageFolderDataset(tmp_path / "allbad" / "a.jpg")


def test_validation_folder_uses_training_class_indices(tmp_path: Path) -> None:
    train = ImageFolderDataset(TINY / "train")
    for cls in ("ship", "truck"):  # a subset of the classes: indices must stay the training ones
        shutil.copytree(TINY / "test" / cls, tmp_path / "val" / cls)
    val = ImageFolderDataset(tmp_path / "val", classes=train.classes)
    assert set(val.targets) == {train.class_to_idx["ship"], train.class_to_idx["truck"]} == {8, 9}
    shutil.copytree(TINY / "test" / "cat", tmp_path / "val" / "kitten")
    with pytest.raises(DatasetError, match="kitten"):
        ImageFolderDataset(tmp_path / "val", classes=train.classes)


def test_read_image_uint8_matches_pil_pixels(tmp_path: Path) -> None:
    img = _smooth_image(40, 30)
    img.save(tmp_path / "a.png")
    t = read_image_uint8(tmp_path / "a.png")
    assert t.dtype == torch.uint8 and t.shape == (3, 30, 40)
    assert torch.equal(t, torch.from_numpy(np.array(img)).permute(2, 0, 1))  # PNG is lossless
    img.save(tmp_path / "a.jpg", quality=90)
    ref = torch.from_numpy(np.array(Image.open(tmp_path / "a.jpg").convert("RGB"))).permute(2, 0, 1)
    diff = (read_image_uint8(tmp_path / "a.jpg").int() - ref.int()).abs()
    assert diff.float().mean() < 1.0 and diff.max() <= 8  # two JPEG decoders: rounding-level differences
    img.convert("L").save(tmp_path / "g.png")
    g = read_image_uint8(tmp_path / "g.png")
    assert g.shape == (3, 30, 40) and torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])
    img.save(tmp_path / "b.bmp")  # a format torchvision.io cannot decode: PIL fallback
    assert torch.equal(read_image_uint8(tmp_path / "b.bmp"), read_image_uint8(tmp_path / "a.png"))


@pytest.mark.parametrize("size", [16, 24, 37])
def test_resize_crop_matches_torchvision_v2(tmp_path: Path, size: int) -> None:
    from torchvision.transforms import v2

    _smooth_image(45, 31).save(tmp_path / "a.png")
    ref = v2.Compose([v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    assert torch.equal(read_image_uint8(tmp_path / "a.png", size), ref(Image.open(tmp_path / "a.png").convert("RGB")))
    squashed = read_image_uint8(tmp_path / "a.png", (size, size + 3), crop=False)
    assert squashed.shape == (3, size, size + 3)


def test_large_jpeg_draft_decoding_close_to_full_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.transforms import v2

    import sslhub.data.decode as dec

    _smooth_image(800, 600).save(tmp_path / "big.jpg", quality=95)
    full = v2.Compose([v2.PILToTensor(), v2.Resize(96, antialias=True), v2.CenterCrop(96)])(
        Image.open(tmp_path / "big.jpg").convert("RGB")
    )
    monkeypatch.setattr(dec, "_DRAFT_MIN_BYTES", 0)  # the synthetic JPEG compresses below the size threshold
    assert dec._wants_draft((tmp_path / "big.jpg").read_bytes(), (96, 96))
    drafted = read_image_uint8(tmp_path / "big.jpg", 96)
    assert drafted.shape == (3, 96, 96)
    assert (drafted.float() - full.float()).abs().mean() < 2.0


def test_decode_batch_skips_unreadable(messy_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    paths = [messy_folder / "cat" / "garbage.jpg", *sorted((messy_folder / "dog").glob("*.jpg"))]
    with caplog.at_level(logging.WARNING, logger="sslhub"):
        batch, kept = decode_batch(paths, 20)
    good = [i for i, p in enumerate(paths) if p.name not in ("garbage.jpg", "truncated.jpg")]
    assert kept == good and batch.shape == (len(good), 3, 20, 20) and batch.dtype == torch.uint8
    assert torch.equal(batch[0], read_image_uint8(paths[good[0]], 20))
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    with pytest.raises(UnreadableImageError, match="garbage.jpg"):
        read_image_uint8(paths[0])
