"""Interactive segmentation: NoC@85/90 and IoU-per-click with a simulated clicker, as an ``evaluate`` metric.

Load it with ``hf_unified_seg.metrics.load("interactive")`` or ``evaluate.load(<this file>)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import datasets
import evaluate
import numpy as np

from hf_unified_seg.data.prompts import Click, first_click, next_click
from hf_unified_seg.metrics._base import PreparedInputsMixin
from hf_unified_seg.metrics._inputs import check_same_shape, to_binary_mask, to_vector

_CITATION = """\
@inproceedings{sofiiuk2022reviving,
  title={Reviving Iterative Training with Mask Guidance for Interactive Segmentation},
  author={Sofiiuk, Konstantin and Petrov, Ilya A. and Konushin, Anton},
  booktitle={ICIP},
  year={2022}
}
"""

_DESCRIPTION = """\
Interactive segmentation with simulated clicks (the RITM / SimpleClick protocol used by SEEM, spec §4.1, and PSALM).
The first click is positive at the interior point farthest from the reference boundary; each next click goes to the
centre (distance-transform maximum) of the largest error region of the current prediction, positive on missed
foreground and negative on a false positive (`hf_unified_seg.data.prompts.first_click` / `next_click`; clicked pixels
are not clicked again). The model sees all clicks so far and returns a mask; the loop stops at `max_clicks` (default 20)
or, like the reference code, once IoU >= `stop_iou` (default 0.90), padding the remaining rounds with the last IoU.
NoC@t is the 1-based index of the first click whose IoU >= t, or `max_clicks` when none reaches t (a failure);
K-NoC@t uses a budget of K clicks; NoF@t counts the failures; mIoU@k is the mean IoU after k clicks
(`miou@1` is SEEM's 1-IoU). IoUs are percentages (0-100); NoC values are click counts. For single-prompt protocols
such as PSALM's COCO-Interactive (mIoU and cIoU per prompt type), score the masks with the `referring` metric.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per instance, the IoU (fraction in [0, 1]) after clicks 1, 2, ... (at most `max_clicks`; a shorter
        list counts as stopped early and is padded with its last value). Leave out when passing `predict`.
    predict: (compute or `simulate`) a callable `predict(image_index, clicks) -> (H, W) binary mask`, with `clicks` a
        list of `hf_unified_seg.data.prompts.Click(x, y, is_positive)` in click order. The metric runs the click loop.
    references: with `predict`, per instance, the (H, W) binary reference mask.
    image_indices: with `predict`, per instance, the image index passed to `predict` (default: the instance's
        position).
    max_clicks (20), thresholds ((0.85, 0.90)), budgets ((5, 10, 20)), stop_iou (0.90; None runs every click),
    click_rule ("largest_region" or SEEM's training rule "seem"): init arguments.
Returns:
    "noc@85", "noc@90", "nof@85", "nof@90", "K-noc@85" / "K-noc@90" for each budget K, "miou@1", "miou@5",
    "miou_per_click" (list of max_clicks values, percent) and num_instances.
Example:
    >>> inter = hf_unified_seg.metrics.load("interactive")
    >>> inter.compute(predict=lambda i, clicks: model_mask(images[i], clicks), references=gt_masks)["noc@90"]
"""

PredictFn = Callable[[int, list[Click]], Any]


def click_loop(
    predict: PredictFn,
    gt_mask: np.ndarray,
    image_index: int,
    max_clicks: int = 20,
    stop_iou: float | None = 0.90,
    click_rule: str = "largest_region",
) -> list[float]:
    """IoU after each simulated click for one instance (length ``max_clicks``, padded after an early stop)."""
    clicks: list[Click] = []
    clicked = np.zeros(gt_mask.shape, dtype=bool)
    prediction = np.zeros(gt_mask.shape, dtype=bool)
    ious: list[float] = []
    for k in range(max_clicks):
        click = (
            first_click(gt_mask)
            if k == 0
            else next_click(gt_mask, prediction, rule=click_rule, exclude=clicked)  # None: nothing left to correct
        )
        if click is None:
            break
        clicks.append(click)
        clicked[click.y, click.x] = True
        prediction = to_binary_mask(predict(image_index, list(clicks)), f"predict({image_index}, clicks) output")
        check_same_shape(prediction, gt_mask, "predicted mask", "reference mask", image_index)
        union = np.logical_or(prediction, gt_mask).sum()
        ious.append(float(np.logical_and(prediction, gt_mask).sum() / union))
        if stop_iou is not None and ious[-1] >= stop_iou:
            break
    return ious + [ious[-1]] * (max_clicks - len(ious))


def number_of_clicks(curves: np.ndarray, threshold: float, budget: int) -> np.ndarray:
    """Per instance, the first click (1-based, within ``budget``) reaching ``threshold``, else ``budget``."""
    reached = curves[:, :budget] >= threshold
    return np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, budget)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Interactive(PreparedInputsMixin, evaluate.Metric):
    """NoC / NoF / mIoU@k over instances, from IoU curves or by running the click loop on a model."""

    def __init__(
        self,
        max_clicks: int = 20,
        thresholds: Sequence[float] = (0.85, 0.90),
        budgets: Sequence[int] = (5, 10, 20),
        stop_iou: float | None = 0.90,
        click_rule: str = "largest_region",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(max_clicks) < 1:
            raise ValueError(f"`max_clicks` must be >= 1, got {max_clicks}.")
        if any(not 0.0 < t <= 1.0 for t in thresholds):
            raise ValueError(f"`thresholds` are IoU fractions in (0, 1], got {tuple(thresholds)}.")
        if stop_iou is not None and stop_iou < max(thresholds):
            raise ValueError(f"`stop_iou`={stop_iou} is below the largest threshold; NoC there would be wrong.")
        if click_rule not in ("largest_region", "seem"):
            raise ValueError(f"`click_rule` must be 'largest_region' or 'seem', got {click_rule!r}.")
        self.max_clicks = int(max_clicks)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.budgets = tuple(int(b) for b in budgets if int(b) <= self.max_clicks)
        self.stop_iou = stop_iou
        self.click_rule = click_rule

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.List(datasets.Value("float64"))}),
            reference_urls=["https://github.com/SamsungLabs/ritm_interactive_segmentation"],
        )

    def _prepare_batch(self, batch: dict[str, list]) -> dict[str, list]:
        curves = []
        for i, curve in enumerate(batch["predictions"]):
            curve = to_vector(curve, f"predictions[{i}]", np.float64)
            if curve.size == 0 or curve.size > self.max_clicks:
                raise ValueError(f"predictions[{i}] must hold 1..max_clicks={self.max_clicks} IoUs, got {curve.size}.")
            if not ((curve >= 0) & (curve <= 1)).all():
                raise ValueError(f"predictions[{i}] must hold IoU fractions in [0, 1], got {curve.tolist()}.")
            curves.append(curve.tolist() + [float(curve[-1])] * (self.max_clicks - curve.size))
        return {"predictions": curves}

    def simulate(
        self, predict: PredictFn, references: Sequence[Any], image_indices: Sequence[int] | None = None
    ) -> list[list[float]]:
        """Run the click loop of ``predict`` on every reference mask, store the IoU curves and return them."""
        if not callable(predict):
            raise TypeError(
                f"`predict` must be callable as predict(image_index, clicks), got {type(predict).__name__}."
            )
        if image_indices is not None and len(image_indices) != len(references):
            raise ValueError(f"`image_indices` has {len(image_indices)} entries for {len(references)} references.")
        curves = []
        for i, reference in enumerate(references):
            gt = to_binary_mask(reference, f"references[{i}]")
            if not gt.any():
                raise ValueError(f"references[{i}] is an empty mask; interactive evaluation needs an object to click.")
            index = i if image_indices is None else int(image_indices[i])
            curves.append(click_loop(predict, gt, index, self.max_clicks, self.stop_iou, self.click_rule))
        if curves:
            self.add_batch(predictions=curves)
        return curves

    def compute(
        self,
        *,
        predictions: Any = None,
        references: Any = None,
        predict: PredictFn | None = None,
        image_indices: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> dict | None:
        """Run the click loop when ``predict`` and ``references`` are given, then compute over every stored curve.\n"""
        if predict is not None:
            if references is None:
                raise ValueError("`predict` needs `references`: the reference masks to click on.")
            self.simulate(predict, references, image_indices)
        elif references is not None or image_indices is not None:
            raise ValueError(
                "`references` / `image_indices` are only used with `predict`; pass IoU curves as `predictions`."
            )
        return super().compute(predictions=predictions, **kwargs)

    def _compute(self, predictions: list) -> dict[str, Any]:
        curves = np.asarray(predictions, dtype=np.float64)  # (instances, max_clicks)
        result: dict[str, Any] = {}
        for t in self.thresholds:
            name = f"{round(100 * t)}"
            noc = number_of_clicks(curves, t, self.max_clicks)
            result[f"noc@{name}"] = float(noc.mean())
            result[f"nof@{name}"] = int((~(curves >= t).any(axis=1)).sum())
            for budget in self.budgets:
                result[f"{budget}-noc@{name}"] = float(number_of_clicks(curves, t, budget).mean())
        per_click = 100.0 * curves.mean(axis=0)
        for k in (1, 5):
            if k <= self.max_clicks:
                result[f"miou@{k}"] = float(per_click[k - 1])
        result["miou_per_click"] = per_click.tolist()
        result["num_instances"] = int(curves.shape[0])
        return result
