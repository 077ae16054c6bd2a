"""Datasets for training: ShapesWorld, or a folder in one of the formats `hf_unified_seg.data` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .arguments import DataArguments


def load_training_data(data_args: DataArguments, seed: int = 0) -> tuple[Any, Any, list[dict[str, Any]]]:
    """Return `(train_dataset, eval_dataset, categories)` for `data_args`.

    Raises:
        ValueError: the dataset is neither "shapesworld" nor a folder in a known format.
    """
    from .. import data as hfdata

    if data_args.dataset == "shapesworld":
        train = hfdata.load_shapesworld(
            split="train", num_images=data_args.num_train_images, image_size=data_args.dataset_image_size, seed=seed
        )
        evaluation = hfdata.load_shapesworld(
            split="val", num_images=data_args.num_eval_images, image_size=data_args.dataset_image_size, seed=seed
        )
    else:
        train, evaluation = _load_folder(data_args, seed)
    if data_args.max_eval_samples is not None:
        evaluation = evaluation.select(range(min(len(evaluation), data_args.max_eval_samples)))
    if len(train) == 0:
        raise ValueError(f"dataset {data_args.dataset!r} has no training images")
    return train, evaluation, hfdata.get_categories(train)


def _load_folder(data_args: DataArguments, seed: int) -> tuple[Any, Any]:
    from .. import data as hfdata

    path = Path(data_args.dataset)
    if not path.is_dir():
        raise ValueError(f"dataset must be 'shapesworld' or an existing folder, got {data_args.dataset!r}")
    hfdata.detect_format(path)  # raises a ValueError naming the layouts it knows
    train = hfdata.load_folder(path, split="train")
    try:
        evaluation = hfdata.load_folder(path, split="val")
    except ValueError:
        evaluation = None
    # A folder with a single annotation file answers every split with the same images: hold some out instead.
    if evaluation is not None and len(evaluation) and _same_images(train, evaluation):
        evaluation = None
    if evaluation is not None and len(evaluation):
        return train, evaluation
    n = len(train)
    n_eval = max(1, round(n * data_args.eval_split_fraction)) if n > 1 else 0
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    eval_idx, train_idx = sorted(order[:n_eval]), sorted(order[n_eval:])
    return train.select(train_idx), train.select(eval_idx if eval_idx else train_idx)


def _same_images(a: Any, b: Any) -> bool:
    if len(a) != len(b) or "image_id" not in a.column_names:
        return False
    return list(a["image_id"]) == list(b["image_id"])


class EpochShuffleSampler(torch.utils.data.Sampler[int]):
    """A permutation that depends only on `(seed, epoch)`, so a resumed run sees exactly the same order.

    Global RNG is never touched: dropout and other random ops stay in step with an uninterrupted run.
    """

    def __init__(self, num_samples: int, seed: int = 0, shuffle: bool = True) -> None:
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.num_samples))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=g).tolist())
