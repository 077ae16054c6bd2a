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
    fmt = hfdata.detect_format(path)  # raises a ValueError naming the formats it knows
    loaded = hfdata.load_folder(path, format=fmt)
    if hasattr(loaded, "keys"):  # DatasetDict
        splits = dict(loaded)
        train_key = next((k for k in ("train", "training") if k in splits), None)
        eval_key = next((k for k in ("val", "validation", "test") if k in splits), None)
        if train_key is None:
            if len(splits) != 1:
                raise ValueError(f"folder {path} has splits {sorted(splits)} but none is called 'train'")
            train_key = next(iter(splits))
        if eval_key is not None:
            return splits[train_key], splits[eval_key]
        loaded = splits[train_key]
    n = len(loaded)
    n_eval = max(1, round(n * data_args.eval_split_fraction)) if n > 1 else 0
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    eval_idx, train_idx = sorted(order[:n_eval]), sorted(order[n_eval:])
    return loaded.select(train_idx), loaded.select(eval_idx if eval_idx else train_idx)


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
