"""Model cards: every card validates against model_cards/schema.json (with the jsonschema reference validator) and
against sslhub's own parser; Lightly's cards agree with lightly.models.zoo and the LightlySSL README."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import torch
import yaml

import sslhub
from sslhub.hub import CardError, get_card, list_pretrained, registry
from sslhub.hub.cards import load_card, parse_card
from sslhub.suggest import natural_sorted

REPO = Path(__file__).resolve().parents[1]
CARDS = REPO / "model_cards"
CARD_FILES = sorted(CARDS.glob("*.yaml"))


@pytest.fixture(autouse=True)
def _no_user_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSLHUB_CARDS", raising=False)


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema", reason="test extra jsonschema (comes with moto[server])")
    schema = json.loads((CARDS / "schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_every_card_validates(validator):
    assert len(CARD_FILES) >= 17
    for path in CARD_FILES:
        data = yaml.safe_load(path.read_text())
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]
        assert not errors, f"{path.name}: {errors}"
        assert load_card(path).name == path.stem
    assert sorted(registry()) == sorted(p.stem for p in CARD_FILES)


def _mutations(base: dict) -> list[tuple[str, dict]]:
    out = []
    for key in ("name", "method", "architecture", "width", "summary", "training", "metrics", "files", "source",
                "license", "paper"):
        d = copy.deepcopy(base)
        del d[key]
        out.append((f"missing {key}", d))
    for key in ("data", "epochs", "batch_size"):
        d = copy.deepcopy(base)
        del d["training"][key]
        out.append((f"missing training.{key}", d))
    for key in ("url", "filename", "size", "sha256"):
        d = copy.deepcopy(base)
        del d["files"][0][key]
        out.append((f"missing files.{key}", d))

    def mutate(label: str, fn) -> None:
        d = copy.deepcopy(base)
        fn(d)
        out.append((label, d))

    mutate("unknown top-level key", lambda d: d.update(sha256="x"))
    mutate("unknown metric key", lambda d: d["metrics"][0].update(top5=90.0))
    mutate("short sha256", lambda d: d["files"][0].update(sha256="abc123"))
    mutate("upper-case sha256", lambda d: d["files"][0].update(sha256="A" * 64))
    mutate("sha256 as number", lambda d: d["files"][0].update(sha256=123))
    mutate("top1 over 100", lambda d: d["metrics"][0].update(top1=163.2))
    mutate("unknown task", lambda d: d["metrics"][0].update(task="segmentation"))
    mutate("negative epochs", lambda d: d["training"].update(epochs=-1))
    mutate("epochs as text", lambda d: d["training"].update(epochs="100"))
    mutate("path in filename", lambda d: d["files"][0].update(filename="../x.ckpt"))
    mutate("ftp url", lambda d: d["files"][0].update(url="ftp://host/x.ckpt"))
    mutate("no weights file", lambda d: d["files"][0].update(role="log"))
    mutate("two weights files", lambda d: d["files"][1].pop("role"))
    mutate("no files", lambda d: d.update(files=[]))
    mutate("bad layout", lambda d: d["source"].update(layout="mystery"))
    mutate("name without tag", lambda d: d.update(name="simclr-resnet50"))
    mutate("zero width", lambda d: d.update(width=0))
    mutate("unknown load key", lambda d: d.update(load={"arch": "resnet50", "strict": False}))
    mutate("timm_kwargs not a mapping", lambda d: d.update(load={"timm_kwargs": [12]}))
    mutate("timm_kwargs value a list", lambda d: d.update(load={"timm_kwargs": {"num_heads": [12]}}))
    return out


def test_parser_and_schema_reject_the_same_mistakes(validator):
    base = yaml.safe_load((CARDS / "simclr-resnet50.lightly-in1k.yaml").read_text())
    assert validator.is_valid(base)
    parse_card(base)
    for label, bad in _mutations(base):
        assert not validator.is_valid(bad), f"schema accepts a card with {label}"
        with pytest.raises(CardError):
            parse_card(bad, where=label)


def test_zoo_cards_match_lightly_zoo():
    from lightly.models import ResNetGenerator
    from lightly.models.zoo import ZOO

    zoo_cards = {c.source.zoo_key: c for c in registry().values() if c.source.layout == "lightly-zoo"}
    assert sorted(zoo_cards) == sorted(ZOO), "every file of Lightly's zoo must have exactly one card"
    for key, url in ZOO.items():
        card = zoo_cards[key]
        arch, method, d, w = key.split("/")
        assert (card.method, card.architecture, card.width, card.num_ftrs) == (method, arch, float(w[1:]), int(d[1:]))
        assert card.weights.url == url and card.weights.filename == url.rsplit("/", 1)[1]
        assert card.weights.sha256 is None, "nothing could be downloaded here, so the hash must say unknown"
        with torch.device("meta"):  # shapes only; skips the random init of ResNet-34
            assert card.num_features == ResNetGenerator(arch, width=card.width).linear.in_features
        assert card.load_kwargs() == {"arch": arch, "width": card.width}


def _reference_readme() -> Path:
    for root in (REPO / "shared", REPO.parent / "shared", Path("/work/shared")):
        p = root / "reference" / "lightly-ssl-README.md"
        if p.is_file():
            return p
    raise AssertionError("shared/reference/lightly-ssl-README.md not found next to the repository")


def test_imagenet_cards_match_the_lightly_readme():
    text = _reference_readme().read_text()
    table = text[text.index("### ImageNet1k"):text.index("### ImageNet100")]
    header = None
    rows = []
    for line in table.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not set(cells[0]) <= set("- "):
            rows.append(dict(zip(header, cells, strict=True)))
    assert len(rows) == 11
    by_url = {c.weights.url: c for c in registry().values()}
    for row in rows:
        ckpt = re.search(r"\]\((\S+)\)", row["Checkpoint"])[1]
        logs = re.search(r"\]\((\S+)\)", row["Tensorboard"])[1]
        card = by_url[ckpt]
        assert card.training.batch_size == int(row["Batch Size"]) and card.training.epochs == int(row["Epochs"])
        for task, column in (("linear", "Linear Top1"), ("finetune", "Finetune Top1"), ("knn", "kNN Top1")):
            m = card.metric(task)
            assert m is not None and m.top1 == float(row[column]), (card.name, task)
            assert m.reported_by == "Lightly" and m.dataset == "ImageNet-1k val"
        assert [f.url for f in card.files if f.role == "log"] == [logs]
        assert card.weights.filename == urllib.parse.unquote(ckpt.rsplit("/", 1)[1])
        assert card.architecture == ("vit_base_patch16_224" if row["Backbone"] == "ViT-B/16" else "resnet50")
        assert card.name.endswith(".lightly-in1k") and card.source.layout == "lightly-benchmark"


def test_card_architectures_build_with_the_stated_features():
    from sslhub.backbones import create_backbone

    for card in registry().values():
        kw = card.load_kwargs()
        kw.pop("prefix", None)
        model = create_backbone(kw.pop("arch"), meta=True, **kw)
        assert model.num_features == card.num_features, card.name


def test_list_pretrained_filters():
    from lightly.models.zoo import ZOO

    names = list_pretrained()
    assert names == natural_sorted(registry()) and sslhub.list_pretrained() == names
    assert list_pretrained("*in1k", method="simclr") == ["simclr-resnet50.lightly-in1k"]
    assert list_pretrained(method="SimCLR") == [n for n in names if n.startswith("simclr-")]
    resnet9 = [k for k in ZOO if k.startswith("resnet-9/")]
    # resnet-9 is Lightly's ResNetGenerator (its cards are simclr-resnet-9-...); resnet9 would be torchvision's
    assert len(list_pretrained(arch="resnet-9")) == len(resnet9) and list_pretrained(arch="resnet9") == []
    both = ["moco-resnet50.fb-in1k", "moco-resnet50.lightly-in1k"]
    assert list_pretrained(method="mocov2") == list_pretrained(method="moco") == both
    assert list_pretrained("*.lightly-*", arch="vit_*") == ["mae-vitb16.lightly-in1k"]
    # a plain word matches as a substring
    assert list_pretrained("dino-res") == ["dino-resnet50.fb-in1k", "dino-resnet50.lightly-in1k"]
    assert list_pretrained("nothing-like-this") == []


def test_cli_list_and_card(capsys):
    from sslhub.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["NAME", "METHOD", "ARCH"] and len(out) == 1 + len(registry())
    simclr = next(line for line in out if line.startswith("simclr-resnet50.lightly-in1k "))
    assert "63.2" in simclr and "44.8" in simclr and "73.9" in simclr and "Lightly" in simclr

    assert main(["list", "*.lightly-*", "--json", "--method", "mae"]) == 0
    cards = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in cards] == ["mae-vitb16.lightly-in1k"] and cards[0]["load"]["prefix"] == "backbone.vit."

    assert main(["card", "dino-resnet50.lightly-in1k"]) == 0
    text = capsys.readouterr().out
    assert "68.2%" in text and "teacher" in text and "unknown (downloads are unverified)" in text

    assert main(["card", "simclr-resnet50.lightly-in1", "--yaml"]) == 2
    assert "simclr-resnet50.lightly-in1k" in capsys.readouterr().err  # a close name is suggested

    assert main(["card", "simclr-resnet50.lightly-in1k", "--yaml"]) == 0
    assert capsys.readouterr().out == (CARDS / "simclr-resnet50.lightly-in1k.yaml").read_text()


def test_card_folders_reject_duplicates_and_misnamed_files(tmp_path, monkeypatch):
    src = (CARDS / "simclr-resnet50.lightly-in1k.yaml").read_text()
    dup = tmp_path / "dup"
    dup.mkdir()
    (dup / "simclr-resnet50.lightly-in1k.yaml").write_text(src)
    monkeypatch.setenv("SSLHUB_CARDS", str(dup))
    with pytest.raises(CardError, match="already used"):
        registry()
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "my-weights.tag.yaml").write_text(src)
    monkeypatch.setenv("SSLHUB_CARDS", str(wrong))
    with pytest.raises(CardError, match="rename the file"):
        registry()
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "simclr-resnet50.mine.yaml").write_text(src.replace("name: simclr-resnet50.lightly-in1k",
                                                                 "name: simclr-resnet50.mine"))
    monkeypatch.setenv("SSLHUB_CARDS", str(extra))
    assert get_card("simclr-resnet50.mine").path == extra / "simclr-resnet50.mine.yaml"


def test_import_stays_light():
    code = ("import sys, sslhub, sslhub.hub; sslhub.list_pretrained(); sslhub.hub.resolve_card("
            "'simclr-resnet50.lightly-in1k'); print(sorted(m for m in ('torch', 'requests', 'timm', 'torchvision', "
            "'huggingface_hub') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
