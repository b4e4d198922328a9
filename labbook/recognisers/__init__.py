"""Recognisers: one module per on-disk layout, tried in this order.

The first recogniser that matches a directory claims it. More specific layouts
come first: a Hugging Face output dir also holds event files, and a Hydra job dir
may hold a whole Lightning run.
"""

from __future__ import annotations

from labbook.recognisers.base import DirInfo, Recogniser, walk
from labbook.recognisers.generic import Generic
from labbook.recognisers.hf_trainer import HFTrainer
from labbook.recognisers.hydra import Hydra
from labbook.recognisers.lightning import Lightning
from labbook.recognisers.mlflow import MLflowFileStore, MLflowSQLite
from labbook.recognisers.tensorboard import TensorBoard
from labbook.recognisers.wandb import Wandb

RECOGNISERS: list[Recogniser] = [
    MLflowSQLite(),
    Hydra(),
    HFTrainer(),
    Lightning(),
    Wandb(),
    MLflowFileStore(),
    TensorBoard(),
    Generic(),
]

__all__ = ["RECOGNISERS", "DirInfo", "Recogniser", "walk"]
