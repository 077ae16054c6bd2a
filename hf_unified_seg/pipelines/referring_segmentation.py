"""Referring segmentation pipeline: an image and one or more phrases -> one mask per phrase."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image
from transformers.image_utils import load_image
from transformers.pipelines.base import Pipeline


class ReferringSegmentationPipeline(Pipeline):
    """
    Segment the region each phrase refers to.

    Works with any model registered in [`AutoModelForReferringSegmentation`] whose forward accepts
    `task="referring"` with `referring_input_ids` / `referring_attention_mask` and returns `referring_logits`, and whose
    processor has `post_process_referring_segmentation` (X-Decoder, SEEM, FIND).

    Example:
        ```python
        segmenter = pipeline("referring-segmentation", model="path/to/x-decoder")
        segmenter(image, "the red circle on the left")
        # [{"phrase": "the red circle on the left", "score": 0.93, "mask": <PIL.Image mode L>}]
        ```
    """

    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __call__(self, image: Any, phrases: str | list[str] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        """
        Args:
            image (`str` or `PIL.Image.Image`): image or path/URL; or a dict `{"image", "phrases"}`, or a list of them.
            phrases (`str` or `list[str]`): what to segment.
            mask_threshold (`float`, *optional*): binarisation threshold of the chosen mask (default 0.5).
            timeout (`float`, *optional*): for fetching URLs.

        Returns:
            `list[dict]` per image: `phrase`, `score` (probability of the chosen query), `mask` (PIL "L", 255 = in).
        """
        if isinstance(image, (dict, list)):
            return super().__call__(image, **kwargs)
        if phrases is None:
            raise ValueError("`phrases` is required: the text describing the region to segment.")
        return super().__call__({"image": image, "phrases": phrases}, **kwargs)

    def _sanitize_parameters(self, mask_threshold: float | None = None, timeout: float | None = None, **kwargs: Any):
        preprocess = {"timeout": timeout} if timeout is not None else {}
        postprocess = {"mask_threshold": mask_threshold} if mask_threshold is not None else {}
        return preprocess, {}, postprocess

    def preprocess(self, inputs: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        if not isinstance(inputs, dict) or "image" not in inputs or "phrases" not in inputs:
            raise ValueError("Each input must be a dict with `image` and `phrases`.")
        image = load_image(inputs["image"], timeout=timeout)
        phrases = inputs["phrases"]
        phrases = [phrases] if isinstance(phrases, str) else list(phrases)
        model_inputs = self.processor(images=[image], referring_texts=[phrases], return_tensors="pt")
        model_inputs = {k: v for k, v in model_inputs.items() if k not in ("mask_labels", "class_labels")}
        model_inputs["pixel_values"] = model_inputs["pixel_values"].to(self.dtype)
        return {**model_inputs, "target_size": (image.height, image.width), "phrases": phrases}

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        target_size, phrases = model_inputs.pop("target_size"), model_inputs.pop("phrases")
        outputs = self.model(**model_inputs, task="referring")
        return {
            "referring_logits": outputs.referring_logits,
            "referring_masks_logits": getattr(outputs, "referring_masks_logits", None),
            "masks_queries_logits": outputs.masks_queries_logits,
            "target_size": target_size,
            "phrases": phrases,
        }

    def postprocess(self, model_outputs: dict[str, Any], mask_threshold: float | None = None) -> list[dict[str, Any]]:
        kwargs = {} if mask_threshold is None else {"mask_threshold": mask_threshold}
        (result,) = self.processor.post_process_referring_segmentation(
            model_outputs, target_sizes=[model_outputs["target_size"]], **kwargs
        )
        annotations = []
        for phrase, mask, score in zip(model_outputs["phrases"], result["masks"], result["scores"]):
            pil = Image.fromarray(mask.cpu().numpy().astype(np.uint8) * 255, mode="L")
            annotations.append({"phrase": phrase, "score": round(float(score), 6), "mask": pil})
        return annotations


__all__ = ["ReferringSegmentationPipeline"]
