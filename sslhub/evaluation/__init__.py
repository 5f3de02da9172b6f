"""Evaluation of frozen and finetuned backbones, and embeddings.

* :func:`extract_features`: features of an image folder with the model's own preprocessing.
* :func:`knn_eval` / :func:`knn_predict`: Lightly's weighted kNN (cosine, k=200, t=0.1).
* :func:`linear_eval` / :func:`linear_probe`: a linear classifier on cached frozen features.
* :func:`finetune_eval` / :func:`finetune`: backbone plus fresh head, trained a few epochs.
* :func:`embed` / :func:`save_embeddings`: Lightly CSV, safetensors or npy embedding files.
* :func:`embed_to_shards` / :func:`load_embeddings` / :func:`export_embeddings`: streaming, resumable,
  ``torchrun``-sharded embedding into a folder of safetensors shards, read back memory-mapped.

The ``*_eval`` functions return one JSON-ready dict each: ``{"metric": "knn_top1" | "linear_top1" |
"finetune_top1", "value": percent, "dataset", "split", "protocol": {...}, "weights"}``.
"""

from __future__ import annotations

from sslhub.evaluation.embeddings import EMBEDDING_SUFFIXES, embed, save_embeddings, write_lightly_csv
from sslhub.evaluation.features import Features, eval_transform, extract_features
from sslhub.evaluation.finetuning import finetune, finetune_eval
from sslhub.evaluation.knn import knn_accuracy, knn_eval, knn_eval_with_features, knn_predict, knn_scores
from sslhub.evaluation.linear import linear_eval, linear_probe
from sslhub.evaluation.shards import Embeddings, export_embeddings, load_embeddings
from sslhub.evaluation.streaming import embed_to_shards
from sslhub.evaluation.results import METRICS, make_result, topk_accuracy, write_results

__all__ = [
    "EMBEDDING_SUFFIXES",
    "METRICS",
    "Embeddings",
    "Features",
    "embed",
    "embed_to_shards",
    "export_embeddings",
    "eval_transform",
    "extract_features",
    "finetune",
    "finetune_eval",
    "knn_accuracy",
    "knn_eval",
    "knn_eval_with_features",
    "knn_predict",
    "knn_scores",
    "linear_eval",
    "linear_probe",
    "load_embeddings",
    "make_result",
    "save_embeddings",
    "topk_accuracy",
    "write_lightly_csv",
    "write_results",
]
