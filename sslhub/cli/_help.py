"""How ``sslhub ... --help`` reads: one formatter, a description and an examples epilog for every subcommand.

The examples of every command live here, in one place, and run on files the repository ships (the embedded
demo images, ``sslhub.data.demo_path()``, and what `sslhub train` writes from them), so that a newcomer can paste them.
"""

from __future__ import annotations

import argparse
import textwrap

__all__ = ["EXAMPLES", "HIDDEN_ALIASES", "HelpFormatter", "finish"]

DATA = "$D"
# the embedded demo data, where the package is installed (a wheel or a checkout)
D_LINE = '  D=$(python -c "from sslhub.data import demo_path; print(demo_path())")   # the embedded demo data\n'


# Old option spellings that still work but are not shown (one name per concept across commands).
HIDDEN_ALIASES = frozenset({"--workers", "--train"})

EXAMPLES: dict[str, str] = {
    "info": """\
  sslhub info runs/demo/checkpoint.ckpt            # Lightly Worker checkpoint: layout, arch, width, heads
  sslhub info runs/demo/model.safetensors -v       # also the full header (key order, ...)
  sslhub info simclr-resnet50.lightly-in1k --json  # a registry name (downloads, verified)""",
    "convert": """\
  sslhub convert runs/demo/checkpoint.ckpt demo.safetensors   # Worker .ckpt -> safetensors, lossless
  sslhub convert demo.safetensors back.ckpt                   # and back, bit-identical""",
    "train": f"""\
{D_LINE}  sslhub train simclr-resnet-18-demo --data {DATA}/train --val {DATA}/val --out runs/mine
  sslhub train simclr-resnet-18 --data DIR --out runs/r18 -b 128 --lr 0.3 --width 0.5 --epochs 100
  sslhub train moco-resnet18 --data DIR --out runs/moco --set model.memory_bank_size=8192 --no-amp
  torchrun --nproc_per_node=4 -m sslhub train simclr-resnet50 --data DIR --out runs/ddp   # DDP, same command
  sslhub train simclr-resnet18 --data DIR --out runs/r18 --logger tensorboard --logger mlflow   # + W&B: wandb

Every recipe key can be set with --set KEY=VALUE (checked: a typo gets the nearest key); the shortcuts
-b, --lr, --input-size, --seed, --width and --amp are --set batch_size=..., optimizer.lr=..., and so on.
The resolved recipe is saved in OUT/config.yaml (-v also logs it). Ctrl-C keeps the finished epochs:
the same command with --resume continues. --data that holds train/ and val/ is refused: pass the splits.""",
    "recipes": """\
  sslhub recipes                      # every recipe name, natural order
  sslhub recipes 'simclr-*' --table   # method, backbone, input size, epochs, batch, measured
  sslhub recipes --json 'dino-*'
  sslhub recipes --show simclr-resnet-18-demo   # the resolved recipe, as YAML: the keys --set takes""",
    "preview": f"""\
{D_LINE}  sslhub preview simclr-resnet-18-demo --data {DATA}/train --out runs/grid.png -n 6
  sslhub preview dino-vit-tiny-p4-32 --data {DATA}/train --out runs/dino.png --set transform.args.n_local_views=2""",
    "list": """\
  sslhub list                      # every registered weight
  sslhub list '*in1k' --method simclr
  sslhub list --arch 'resnet-*' --json""",
    "card": """\
  sslhub card simclr-resnet50.lightly-in1k
  sslhub card moco-resnet50.lightly-in1k --yaml""",
    "fetch": """\
  sslhub fetch simclr-resnet50.lightly-in1k          # verified against the card's sha256
  sslhub fetch hf-hub:org/name@main -q
  SSLHUB_OFFLINE=1 sslhub fetch simclr-resnet50.lightly-in1k   # cache only""",
    "export": """\
  sslhub export runs/r18/model.safetensors --to timm r18_timm.safetensors   # torchvision-family backbones
  sslhub export runs/r18/model.safetensors --to detectron2 r18.pkl          # + r18.yaml (the config)
  sslhub export runs/demo --to onnx demo.onnx --image-size 64   # any backbone; dynamic batch (sslhub[onnx])
  sslhub convert runs/demo/checkpoint.ckpt demo.safetensors   # Lightly ResNetGenerator (resnet-18 style):
                                                              # no twin in those libraries; keep sslhub's file""",
    "publish": """\
  sslhub publish runs/demo --repo-id me/simclr-demo --dry-run hub_folder   # write the 3 files, upload nothing
  sslhub publish runs/demo --repo-id me/simclr-demo --license mit          # one commit to the Hub""",
    "eval": f"""\
{D_LINE}  sslhub eval knn runs/demo/model.safetensors --data {DATA}/train --val {DATA}/val --input-size 32 --k 20
  sslhub eval knn runs/demo/model.safetensors --data {DATA}/train --val {DATA}/val --input-size 32 --k 20 --random-init
  sslhub eval linear runs/demo/model.safetensors --data {DATA}/train --val {DATA}/val --input-size 32 --epochs 20""",
    "eval knn": f"""\
{D_LINE}  sslhub eval knn runs/demo/model.safetensors --data {DATA}/train --val {DATA}/val --input-size 32 --k 20
  sslhub eval knn runs/demo/model.safetensors --data {DATA}/train --val {DATA}/val --input-size 32 --k 20 --random-init

  torchrun --nproc_per_node=2 -m sslhub eval knn MODEL --data TRAIN --val VAL   # bank split over 2 processes

Weights inside a training run folder: the result is also recorded in RUN_DIR/metrics.json, which
`sslhub publish RUN_DIR` puts on the model card (--no-record: don't).""",
    "eval linear": f"""\
{D_LINE}  sslhub eval linear runs/demo/model.safetensors --data {DATA}/train --val {DATA}/val --input-size 32 --epochs 20
  sslhub eval linear simclr-resnet50.lightly-in1k --data IMAGENET/train --val IMAGENET/val --json linear.json""",
    "eval finetune": f"""\
{D_LINE}  sslhub eval finetune runs/demo/model.safetensors --data {DATA}/train --val {DATA}/val --input-size 32 --epochs 2
  sslhub eval finetune runs/mae/model.safetensors --data DIR --val VALDIR --layer-decay 0.65   # ViTs""",
    "embed": f"""\
{D_LINE}  sslhub embed runs/demo/model.safetensors {DATA}/val --out runs/embeddings.csv --input-size 32   # Lightly's CSV
  sslhub embed runs/demo/model.safetensors {DATA}/val --out runs/embeddings.safetensors --input-size 32
  sslhub embed runs/demo/model.safetensors {DATA}/val --out runs/emb/ --input-size 32   # shards + manifest, resumable
  sslhub embed model.safetensors 'shards/train-{{000..099}}.tar' --out emb/ --shard-size 16384   # WebDataset
  sslhub embed model.safetensors files.csv --out emb/          # a CSV manifest (filename/path/url[,label])
  torchrun --nproc_per_node=8 -m sslhub embed model.safetensors IMAGES --out emb/   # split over 8 processes

A shard folder is read with sslhub.load_embeddings(DIR) (memory-mapped) or any safetensors reader; a killed
run continues when the same command is run again (finished shards are verified and kept).""",
    "export-embeddings": """\
  sslhub export-embeddings emb/ --out embeddings.csv   # Lightly's CSV, streamed""",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions/epilogs as written, shows each option's default, hides old alias spellings."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        # flags (store_true/false) say what they do; their True/False default adds nothing
        shown = (default not in (None, argparse.SUPPRESS) and not isinstance(default, bool)
                 and not (isinstance(default, list) and not default))  # fmt: skip
        if shown and "default" not in text and "%(default)" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if action.option_strings and any(o in HIDDEN_ALIASES for o in action.option_strings):
            visible = [o for o in action.option_strings if o not in HIDDEN_ALIASES]
            action = argparse.Action(visible, action.dest, nargs=action.nargs, metavar=action.metavar,
                                     help=action.help)  # fmt: skip
        return super()._format_action_invocation(action)


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    """-q/-v after the subcommand too (``sslhub train ... -q``); SUPPRESS keeps the top-level value otherwise."""
    have = {o for a in p._actions for o in a.option_strings}
    if "-q" not in have and "--quiet" not in have:
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="only warnings, errors and results; no progress bars")  # fmt: skip
    if "-v" not in have and "--verbose" not in have:
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="debug logging (and more detail where a command has it)")  # fmt: skip


def finish(parser: argparse.ArgumentParser, path: str = "") -> None:
    """Give every (sub)command the shared formatter, a description, its examples and -q/-v."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help for a in action._choices_actions}
        for name, sub in action.choices.items():
            full = f"{path} {name}".strip()
            sub.formatter_class = HelpFormatter
            if not sub.description and helps.get(name):
                sub.description = helps[name][0].upper() + helps[name][1:] + "."
            if sub.description and "\n" not in sub.description:
                sub.description = textwrap.fill(sub.description, 100)
            if full in EXAMPLES and not sub.epilog:
                sub.epilog = "examples:\n" + EXAMPLES[full]
            if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                _add_verbosity(sub)
            finish(sub, full)
