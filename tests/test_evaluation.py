"""sslhub.evaluation: features against a torchvision reference pipeline, kNN against Lightly's knn_predict,
embeddings against lightly.utils.io, linear probe / finetuning on data with a known answer, and the CLI."""

from __future__ import annotations

from shared_data import shared_data  # noqa: E402
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sslhub.backbones import create_backbone
from sslhub.data import DatasetError, ImageFolderDataset
from sslhub.evaluation import (
    embed,
    eval_transform,
    extract_features,
    finetune,
    finetune_eval,
    knn_accuracy,
    knn_eval,
    knn_predict,
    linear_eval,
    linear_probe,
    make_result,
    write_lightly_csv,
)

TINY = shared_data("cifar10_tiny")
RESULT_KEYS = {"metric", "value", "dataset", "split", "protocol", "weights"}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # The tensors here are tiny: OpenMP hand-offs cost more than they save, and on a busy 2-core machine a
    # 16-image training step took 0.31 s with 2 threads against 0.024 s with 1.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone("resnet-18", width=0.125).eval()


@pytest.fixture(scope="module")
def tiny_features(tiny_model: torch.nn.Module):
    kw = dict(input_size=32, batch_size=64, device="cpu", num_workers=0)
    return extract_features(tiny_model, TINY / "train", **kw), extract_features(tiny_model, TINY / "test", **kw)


def _reference_features(model: torch.nn.Module, root: Path, transform) -> tuple[torch.Tensor, torch.Tensor]:
    """Features the textbook way: torchvision ImageFolder (PIL decoding) + a v2 transform, batch of all."""
    import torchvision

    ds = torchvision.datasets.ImageFolder(str(root), transform=transform)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        return model(x), torch.tensor(ds.targets)


# ----------------------------------------------------------------------------------------------- features


def test_extract_features_matches_torchvision_pipeline(tiny_model, tiny_features) -> None:
    _, test = tiny_features
    ref, labels = _reference_features(tiny_model, TINY / "test", eval_transform(tiny_model, 32))
    assert test.features.shape == (100, tiny_model.num_features) and test.features.dtype == torch.float32
    assert torch.equal(test.labels, labels)
    assert test.filenames == ImageFolderDataset(TINY / "test").filenames
    # torchvision.io and PIL decode JPEG with different IDCT rounding, so pixels differ by a level or two.
    cos = F.cosine_similarity(test.features, ref, dim=1)
    assert cos.min() > 0.995, cos.min()


def test_extract_features_uses_pretrained_cfg_and_crop(tiny_model) -> None:
    from torchvision.transforms import v2

    model = create_backbone("resnet-18", width=0.125).eval()
    model.load_state_dict(tiny_model.state_dict())
    model.pretrained_cfg = {**model.pretrained_cfg, "mean": (0.2, 0.3, 0.4), "std": (0.5, 0.6, 0.7)}
    ref_tf = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(32),
            v2.CenterCrop(24),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize((0.2, 0.3, 0.4), (0.5, 0.6, 0.7)),
        ]
    )
    imagenet_tf = v2.Compose(
        [ref_tf.transforms[i] for i in range(4)] + [v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    )
    got = extract_features(model, TINY / "test", input_size=24, crop_pct=0.75, device="cpu", num_workers=0)
    ref, _ = _reference_features(model, TINY / "test", ref_tf)
    wrong, _ = _reference_features(model, TINY / "test", imagenet_tf)
    assert F.cosine_similarity(got.features, ref, dim=1).min() > 0.995
    assert F.cosine_similarity(got.features, wrong, dim=1).mean() < F.cosine_similarity(got.features, ref, dim=1).mean()
    assert not torch.allclose(got.features, wrong, atol=1e-3)


def test_extract_features_restores_mode_and_needs_input_size() -> None:
    model = create_backbone("resnet-18", width=0.125).train()
    with pytest.raises(ValueError, match="input_size"):
        extract_features(model, TINY / "test", device="cpu")  # Lightly ResNets have no fixed input size
    ds = ImageFolderDataset(TINY / "test")
    extract_features(model, ds, input_size=16, batch_size=50, device="cpu", num_workers=0)
    assert model.training


# ---------------------------------------------------------------------------------------------------- kNN


@pytest.mark.parametrize("n,num_classes,k", [(300, 10, 200), (50, 7, 20), (500, 100, 5)])
def test_knn_predict_parity_with_lightly(n: int, num_classes: int, k: int) -> None:
    from lightly.utils.benchmarking import knn_predict as lightly_knn_predict

    from sslhub.evaluation import knn_scores

    g = torch.Generator().manual_seed(n + k)
    bank = F.normalize(torch.randn(n, 16, generator=g), dim=1)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    queries = F.normalize(torch.randn(64, 16, generator=g), dim=1)
    ours = knn_predict(queries, bank.t(), labels, num_classes, knn_k=k, knn_t=0.1)
    ref = lightly_knn_predict(queries, bank.t(), labels, num_classes, knn_k=k, knn_t=0.1)
    assert torch.equal(ours[:, 0], ref[:, 0])
    # Beyond the top class Lightly's order of tied (zero-vote) classes is arbitrary: the scores taken in
    # Lightly's order must not increase, and every class that got votes must be in the same place.
    scores = knn_scores(queries, bank.t(), labels, num_classes, knn_k=k, knn_t=0.1)
    in_ref_order = scores.gather(1, ref)
    assert (in_ref_order[:, 1:] <= in_ref_order[:, :-1] * (1 + 1e-6)).all()
    voted = in_ref_order > 0
    assert torch.equal(ours[voted], ref[voted])


def test_knn_accuracy_matches_lightly_on_real_features(tiny_features) -> None:
    from lightly.utils.benchmarking import knn_predict as lightly_knn_predict
    from lightly.utils.benchmarking.topk import mean_topk_accuracy

    train, test = tiny_features
    ours = knn_accuracy(train.features, train.labels, test.features, test.labels, k=200, t=0.1, device="cpu")
    # Lightly's KNNClassifier: normalize, bank (D, N), knn_predict, mean_topk_accuracy.
    bank = F.normalize(train.features, dim=1).t()
    pred = lightly_knn_predict(F.normalize(test.features, dim=1), bank, train.labels, 10, 200, 0.1)
    ref = mean_topk_accuracy(pred, test.labels, k=(1, 5))
    assert ours[1] == pytest.approx(100 * float(ref[1]))
    assert ours[5] == pytest.approx(100 * float(ref[5]))
    small_k = knn_accuracy(train.features, train.labels, test.features, test.labels, k=5, t=0.07, chunk_size=7)
    pred5 = lightly_knn_predict(F.normalize(test.features, dim=1), bank, train.labels, 10, 5, 0.07)
    assert small_k[1] == pytest.approx(100 * float(mean_topk_accuracy(pred5, test.labels, k=(1,))[1]))


def test_knn_eval_result(tiny_model, tiny_features) -> None:
    from lightly.utils.benchmarking import knn_predict as lightly_knn_predict

    train, test = tiny_features
    result = knn_eval(
        tiny_model, TINY / "train", TINY / "test", input_size=32, device="cpu", num_workers=0, weights="w.ckpt"
    )
    assert set(result) == RESULT_KEYS
    assert (result["metric"], result["dataset"], result["split"], result["weights"]) == (
        "knn_top1",
        "cifar10_tiny",
        "test",
        "w.ckpt",
    )
    proto = result["protocol"]
    assert (proto["k"], proto["t"], proto["input_size"], proto["num_train"], proto["num_val"]) == (
        200,
        0.1,
        32,
        200,
        100,
    )
    pred = lightly_knn_predict(
        F.normalize(test.features, dim=1), F.normalize(train.features, dim=1).t(), train.labels, 10
    )
    assert result["value"] == pytest.approx(100 * float((pred[:, 0] == test.labels).float().mean()))
    json.dumps(result)  # JSON-ready
    # k larger than the bank is reduced to the bank size and recorded.
    small = knn_eval(tiny_model, TINY / "test", TINY / "test", k=500, input_size=32, device="cpu", num_workers=0)
    assert small["protocol"]["k"] == 100


def test_classification_needs_class_folders(tmp_path: Path, tiny_model) -> None:
    for f in sorted((TINY / "test" / "cat").iterdir())[:3]:
        shutil.copy(f, tmp_path / f.name)
    with pytest.raises(ValueError, match="class subfolder"):
        knn_eval(tiny_model, tmp_path, tmp_path, input_size=32, device="cpu", num_workers=0)


def test_make_result_validates() -> None:
    ok = make_result("linear_top1", 12.5, dataset="d", split="s", protocol={"epochs": 1}, weights=None)
    assert ok["value"] == 12.5 and set(ok) == RESULT_KEYS
    with pytest.raises(ValueError, match="metric"):
        make_result("top1", 1.0, dataset="d", split="s", protocol={}, weights=None)
    with pytest.raises(ValueError, match="percentage"):
        make_result("knn_top1", 0.5 * 300, dataset="d", split="s", protocol={}, weights=None)


# ------------------------------------------------------------------------------------------- linear probe


def _clusters(n_per: int, num_classes: int, dim: int, spread: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(123)) * 3
    labels = torch.arange(num_classes).repeat_interleave(n_per)
    return centers[labels] + spread * torch.randn(len(labels), dim, generator=g), labels


def test_linear_probe_learns_separable_features_at_any_scale() -> None:
    xtr, ytr = _clusters(40, 5, 32, 1.0, 0)
    xva, yva = _clusters(20, 5, 32, 1.0, 1)
    acc = linear_probe(xtr, ytr, xva, yva, epochs=20, device="cpu")
    assert acc[1] == 100.0
    # Standardization makes the default learning rate work for features a thousand times larger or smaller.
    for scale in (1e3, 1e-3):
        assert linear_probe(xtr * scale, ytr, xva * scale, yva, epochs=20, device="cpu")[1] == 100.0
    # Random labels cannot be predicted on held-out data: near chance (20%), far from the 100% above.
    shuffled = ytr[torch.randperm(len(ytr), generator=torch.Generator().manual_seed(0))]
    assert linear_probe(xtr, shuffled, xva, yva, epochs=20, device="cpu")[1] < 60.0


def test_linear_probe_is_deterministic_and_eval_result(tiny_model, tiny_features) -> None:
    train, test = tiny_features
    a = linear_probe(train.features, train.labels, test.features, test.labels, epochs=5, seed=3, device="cpu")
    b = linear_probe(train.features, train.labels, test.features, test.labels, epochs=5, seed=3, device="cpu")
    assert a == b
    result = linear_eval(
        tiny_model, TINY / "train", TINY / "test", epochs=5, seed=3, input_size=32, device="cpu", num_workers=0
    )
    assert set(result) == RESULT_KEYS and result["metric"] == "linear_top1"
    assert result["value"] == a[1] and result["protocol"]["epochs"] == 5


# ----------------------------------------------------------------------------------------------- finetune


@pytest.fixture(scope="module")
def colour_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Reddish vs bluish noisy images: a task any backbone + head must learn in a few steps."""
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("val", 10)):
        for cls, channel in (("blue", 2), ("red", 0)):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 120, size=(20, 20, 3), dtype=np.uint8)
                img[..., channel] += 130
                Image.fromarray(img).save(root / split / cls / f"{i}.png")
    return root


def test_finetune_learns_and_leaves_model_untouched(colour_folders: Path) -> None:
    torch.manual_seed(0)
    model = create_backbone("resnet-18", width=0.125)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = dict(epochs=4, input_size=16, batch_size=16, lr=3e-3, device="cpu", num_workers=0)
    classifier, acc = finetune(model, colour_folders / "train", colour_folders / "val", **kw)
    assert acc[1] == 100.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert classifier(torch.zeros(3, 3, 16, 16)).shape == (3, 2)
    assert classifier.pretrained_cfg["classes"] == ["blue", "red"]
    result = finetune_eval(model, colour_folders / "train", colour_folders / "val", **kw)
    assert set(result) == RESULT_KEYS and result["metric"] == "finetune_top1" and result["value"] == 100.0
    assert (result["dataset"], result["split"], result["protocol"]["epochs"]) == (colour_folders.name, "val", 4)


def test_layer_decay_scales_learning_rates_block_by_block(colour_folders: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sslhub.evaluation.finetuning import backbone_param_groups

    torch.manual_seed(0)
    vit = create_backbone("vit_tiny_patch16_224", img_size=16, patch_size=8, depth=3, embed_dim=32, num_heads=2)
    groups = backbone_param_groups(vit, lr=1.0, weight_decay=0.05, layer_decay=0.5)
    lr_of = {name: g["lr"] for g in groups for p in g["params"] for name, q in vit.named_parameters() if p is q}
    wd_of = {name: g["weight_decay"] for g in groups for p in g["params"] for name, q in vit.named_parameters() if p is q}
    assert set(lr_of) == {n for n, _ in vit.named_parameters()}  # every parameter in exactly one group...
    assert sum(len(g["params"]) for g in groups) == len(list(vit.parameters()))
    # ...the last block and final norm at the full rate, each block half the one above it, the embedding lowest
    assert lr_of["norm.weight"] == 1.0
    assert [lr_of[f"blocks.{i}.mlp.fc1.weight"] for i in range(3)] == [0.25, 0.5, 1.0]
    assert lr_of["patch_embed.proj.weight"] == lr_of["cls_token"] == lr_of["pos_embed"] == 0.125
    assert wd_of["blocks.0.mlp.fc1.weight"] == 0.05 and wd_of["blocks.0.mlp.fc1.bias"] == 0.0 and wd_of["pos_embed"] == 0.0
    with pytest.raises(ValueError, match="layer_decay needs a timm model"):
        backbone_param_groups(create_backbone("resnet-9", width=0.125), lr=1.0, weight_decay=0.0, layer_decay=0.5)
    # The effect in a real finetuning run: the 48 training images in one batch are one AdamW step, whose first
    # update moves every weight with a gradient by its group's rate (times 1 + wd * |w|): block 0 at a quarter of
    # block 2.
    import sslhub.evaluation.finetuning as ft

    def steps(layer_decay: float | None) -> dict[str, float]:
        classifier, _ = ft.finetune(vit, colour_folders / "train", colour_folders / "val", epochs=1, input_size=16,
                                    batch_size=48, device="cpu", num_workers=0, lr=1e-3, layer_decay=layer_decay)  # fmt: skip
        after = dict(classifier[0].named_parameters())
        return {n: (after[n] - p).abs().flatten().median().item() for n, p in vit.named_parameters()
                if n.startswith("blocks.") and n.endswith("mlp.fc1.weight")}  # fmt: skip

    flat, decayed = steps(None), steps(0.5)
    for i, scale in enumerate([0.25, 0.5, 1.0]):
        name = f"blocks.{i}.mlp.fc1.weight"
        assert flat[name] == pytest.approx(1e-4, rel=0.05), name  # lr * backbone_lr_scale
        assert decayed[name] == pytest.approx(1e-4 * scale, rel=0.05), name
    # finetune_eval passes the decay on and records it
    seen = []
    groups = ft.backbone_param_groups
    monkeypatch.setattr(ft, "backbone_param_groups", lambda *a, **k: seen.append(a[3]) or groups(*a, **k))
    result = finetune_eval(vit, colour_folders / "train", colour_folders / "val", epochs=1, input_size=16,
                           batch_size=16, device="cpu", num_workers=0, layer_decay=0.65)  # fmt: skip
    assert seen == [0.65] and result["protocol"]["layer_decay"] == 0.65 and 0.0 <= result["value"] <= 100.0


# ------------------------------------------------------------------------------------------------- embed


@pytest.fixture
def odd_names_folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    root.mkdir()
    src = sorted((TINY / "test" / "frog").iterdir())
    for name, f in zip(["a.jpg", "with, comma.jpg", 'quote"d.jpg', "z.jpg"], src[:4], strict=True):
        shutil.copy(f, root / name)
    return root


def test_embed_csv_is_lightlys_format(odd_names_folder: Path, tmp_path: Path, tiny_model) -> None:
    from lightly.utils.io import check_embeddings, load_embeddings, save_embeddings

    out = tmp_path / "emb.csv"
    feats = embed(tiny_model, odd_names_folder, out, input_size=32, device="cpu", num_workers=0)
    ref_path = tmp_path / "lightly.csv"
    save_embeddings(str(ref_path), feats.features.numpy(), feats.labels.tolist(), feats.filenames)
    assert out.read_bytes() == ref_path.read_bytes()
    check_embeddings(str(out))
    emb, labels, names = load_embeddings(str(out))
    assert names == ["a.jpg", 'quote"d.jpg', "with, comma.jpg", "z.jpg"]
    assert labels == [-1] * 4  # no class folders
    np.testing.assert_allclose(emb, feats.features.numpy(), rtol=1e-6)
    with open(out, newline="") as f:
        header = next(csv.reader(f))
    assert header == ["filenames", *(f"embedding_{i}" for i in range(tiny_model.num_features)), "labels"]


def test_embed_safetensors_and_npy(tmp_path: Path, tiny_model) -> None:
    from safetensors import safe_open

    st = embed(tiny_model, TINY / "test", tmp_path / "e.safetensors", input_size=32, device="cpu", num_workers=0)
    with safe_open(str(tmp_path / "e.safetensors"), framework="pt") as f:
        assert torch.equal(f.get_tensor("embeddings"), st.features)
        assert torch.equal(f.get_tensor("labels"), st.labels)
        assert json.loads(f.metadata()["filenames"]) == st.filenames
    embed(tiny_model, TINY / "test", tmp_path / "e.npy", input_size=32, device="cpu", num_workers=0)
    assert np.array_equal(np.load(tmp_path / "e.npy"), st.features.numpy())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.npy", "e.safetensors"]  # no temporary leftovers
    with pytest.raises(ValueError, match=r"\.csv, \.safetensors, \.npy"):
        embed(tiny_model, TINY / "test", tmp_path / "e.parquet", input_size=32)


def test_csv_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sslhub.evaluation.embeddings as emb_mod

    out = tmp_path / "keep.csv"
    out.write_text("previous content\n")

    class Boom:
        def __init__(self, f, delimiter=","):
            self.n = 0

        def writerow(self, row):
            self.n += 1
            if self.n == 2:
                raise OSError("disk full")

    monkeypatch.setattr(emb_mod.csv, "writer", Boom)
    with pytest.raises(OSError, match="disk full"):
        write_lightly_csv(out, np.zeros((2, 3), np.float32), [0, 1], ["a", "b"])
    assert out.read_text() == "previous content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.csv"]


# --------------------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def plain_state_dict(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def test_cli_eval_knn_and_embed(plain_state_dict: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lightly.utils.io import load_embeddings

    import sslhub
    from sslhub.cli import main

    out = tmp_path / "res.json"
    common = ["--input-size", "32", "--device", "cpu", "--num-workers", "0"]
    rc = main(
        [
            "eval",
            "knn",
            str(plain_state_dict),
            "--train",
            str(TINY / "train"),
            "--val",
            str(TINY / "test"),
            "--k",
            "20",
            "--json",
            str(out),
            *common,
        ]
    )
    assert rc == 0
    result = json.loads(out.read_text())
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and line.startswith(f"kNN top-1 {result['value']:.2f}% (top-5 ")  # one line
    assert "k=20, t=0.1, 32 px" in line
    args = ["eval", "knn", str(plain_state_dict), "--train", str(TINY / "train"), "--val", str(TINY / "test"),
            "--k", "20", "--json", *common]  # fmt: skip
    assert main(args) == 0 and json.loads(capsys.readouterr().out) == result  # --json alone: JSON on stdout
    model = sslhub.load_pretrained(plain_state_dict)
    lib = knn_eval(
        model,
        TINY / "train",
        TINY / "test",
        k=20,
        input_size=32,
        device="cpu",
        num_workers=0,
        weights=str(plain_state_dict),
    )
    assert result == lib
    assert result["protocol"]["k"] == 20 and result["weights"] == str(plain_state_dict)

    # An existing result is not replaced without --force.
    rc = main(
        [
            "eval",
            "knn",
            str(plain_state_dict),
            "--train",
            str(TINY / "train"),
            "--val",
            str(TINY / "test"),
            "--json",
            str(out),
            *common,
        ]
    )
    assert rc == 2 and "--force" in capsys.readouterr().err

    emb = tmp_path / "emb.csv"
    assert main(["embed", str(plain_state_dict), str(TINY / "test"), "--out", str(emb), *common]) == 0
    e, labels, names = load_embeddings(str(emb))
    ref = embed(model, TINY / "test", input_size=32, device="cpu", num_workers=0)
    assert e.shape == (100, 512) and names == ref.filenames and labels == ref.labels.tolist()
    np.testing.assert_allclose(e, ref.features.numpy(), rtol=1e-5, atol=1e-6)


def test_cli_errors_name_the_folder(plain_state_dict: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from sslhub.cli import main

    missing = tmp_path / "no_such_val"
    rc = main(
        [
            "eval",
            "linear",
            str(plain_state_dict),
            "--train",
            str(TINY / "train"),
            "--val",
            str(missing),
            "--input-size",
            "32",
            "--device",
            "cpu",
        ]
    )
    assert rc == 2
    assert str(missing) in capsys.readouterr().err
    with pytest.raises(DatasetError):
        ImageFolderDataset(missing)
