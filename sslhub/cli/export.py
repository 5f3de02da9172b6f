"""``sslhub export``: backbone weights for torchvision, timm or Detectron2, or the features graph as ONNX."""

from __future__ import annotations

import argparse

TARGETS = ("torchvision", "timm", "detectron2", "onnx")  # mirrors sslhub.export.EXPORT_TARGETS without importing torch


def _export(args: argparse.Namespace) -> int:
    from sslhub.export import export_checkpoint

    result = export_checkpoint(
        args.src, args.to, args.out, arch=args.arch, width=args.width, force=args.force, image_size=args.image_size
    )
    print(f"wrote {result.path} ({result.target} {result.arch})")
    if result.target == "onnx":
        k = result.kwargs
        print(f"input 'images': (batch, {', '.join(k['input_size'].strip('[]').split(', '))}) float32, "
              f"normalised with mean {k['mean']} std {k['std']}; output 'features': (batch, D)")
    if result.config_path is not None:
        print(f"wrote {result.config_path}; the Detectron2 config these weights need:")
        print(result.config_path.read_text(encoding="utf-8").rstrip())
    if result.usage:
        print(f"load with: {result.usage}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a backbone for torchvision, timm, Detectron2 or ONNX",
        description=(
            "Write the backbone of SRC in another library's native layout. torchvision/timm: a state dict "
            "(.safetensors by suffix, else torch.save). detectron2: a .pkl for DetectionCheckpointer plus "
            "OUT.yaml with the config the weights need (ResNet-18..152 only). Lightly ResNetGenerator "
            "backbones (resnet-18 style) have no equivalent in these libraries: export refuses them and says what "
            "works instead (sslhub convert/eval/embed/publish). onnx: the features graph of any backbone sslhub "
            "loads (ResNetGenerator too), dynamic batch, fixed --image-size, checked with onnxruntime before it "
            "is written (needs pip install 'sslhub[onnx]')."
        ),
    )
    p.add_argument("src", help="source checkpoint (path, registry name, URL, hf-hub:)")
    p.add_argument("--to", required=True, choices=TARGETS, help="target library")
    p.add_argument("out", help="output file (.pkl for detectron2, .onnx for onnx)")
    p.add_argument("--force", action="store_true", help="replace an existing OUT")
    p.add_argument("--arch", help="source architecture, when the tensors cannot tell")
    p.add_argument("--width", type=float, help="source width (Lightly ResNetGenerator), when it cannot be inferred")
    p.add_argument("--image-size", type=int, metavar="PX",
                   help="onnx only: input size fixed in the graph (default: the model's, else 224)")  # fmt: skip
    p.set_defaults(func=_export)
