"""Shared behaviour of our ``evaluate`` modules: input preparation before the Arrow cache.

Each metric accepts friendly inputs (numpy arrays, torch tensors, PIL images, transformers post-processing
outputs) and turns them into the plain Python/numpy form its declared ``features`` store. ``evaluate`` calls
``add``/``add_batch`` from ``compute`` as well, so the conversion lives in one overridable hook,
``_prepare_batch``. This is a mixin rather than an ``evaluate.Metric`` subclass on purpose: ``evaluate.load``
picks the first ``EvaluationModule`` subclass it finds in a module file, which must be the metric itself.
"""

from __future__ import annotations

from typing import Any


class PreparedInputsMixin:
    """Mixin for ``evaluate.Metric`` subclasses that normalise their inputs before storing them.

    Subclasses implement ``_prepare_batch(batch: dict[str, list]) -> dict[str, list]`` which receives one list per
    feature name (already checked for equal lengths) and returns the stored form.
    """

    def _expand_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Hook run before the completeness check: lets one input carry several columns (e.g. a post-processing dict)."""
        return inputs

    def _prepare_batch(self, batch: dict[str, list]) -> dict[str, list]:
        return batch

    def _collect_inputs(self, predictions: Any, references: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        names = self._feature_names()
        unknown = [k for k in kwargs if k not in names]
        if references is not None and "references" not in names:
            unknown.append("references")
        if unknown:
            raise ValueError(f"Unknown inputs {unknown} for metric {self.name!r}; its inputs are {names}.")
        given = {"predictions": predictions, "references": references, **kwargs}
        return {name: given.get(name) for name in names}

    def _checked_batch(self, inputs: dict[str, Any]) -> dict[str, list]:
        inputs = self._expand_inputs(inputs)
        missing = [k for k, v in inputs.items() if v is None]
        if missing:
            raise ValueError(
                f"Metric {self.name!r} needs every input {list(inputs)}; missing {missing}. See `metric.inputs_description`."
            )
        batch = {k: _as_list(v, k) for k, v in inputs.items()}
        lengths = {k: len(v) for k, v in batch.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"Inputs of metric {self.name!r} must have one entry per example; got lengths {lengths}.")
        return self._prepare_batch(batch)

    def add_batch(self, *, predictions: Any = None, references: Any = None, **kwargs: Any) -> None:
        """Add a batch of examples (one list entry per example) to the metric's store.\n"""
        batch = self._checked_batch(self._collect_inputs(predictions, references, kwargs))
        super().add_batch(**batch)

    def add(self, *, prediction: Any = None, reference: Any = None, **kwargs: Any) -> None:
        """Add one example to the metric's store.\n"""
        # One example is a batch of one: the preparation code then has a single path.
        inputs = self._collect_inputs(prediction, reference, kwargs)
        self.add_batch(**{k: None if v is None else [v] for k, v in inputs.items()})

    def compute(self, *, predictions: Any = None, references: Any = None, **kwargs: Any) -> dict | None:
        """Add the given examples (if any), then compute the metric over everything added so far.\n"""
        names = self._feature_names()
        feature_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        inputs = {"predictions": predictions, "references": references, **feature_kwargs}
        if any(v is not None for v in inputs.values()):
            self.add_batch(**inputs)
        if self.writer is None:
            raise ValueError(f"Metric {self.name!r}: nothing to compute, no examples were added.")
        return super().compute(**kwargs)


def _as_list(value: Any, name: str) -> list:
    """A batch column as a Python list of examples (a leading array/tensor dimension indexes examples)."""
    if isinstance(value, list):
        return value
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "shape") and len(value.shape) >= 1:
        return list(value)
    raise TypeError(
        f"`{name}` must be a list (or array/tensor) with one entry per example, got {type(value).__name__}."
    )
