"""Image captioning pipeline for models with their own greedy `generate` (X-Decoder-style decoders).

transformers 5 redirects the old `image-to-text` task to `image-text-to-text`, a chat pipeline for vision-language
LMs that needs a chat template and `AutoModelForImageTextToText`; a segmentation decoder that captions through its
text queries fits neither, hence this task, whose output format is the old `image-to-text` one.
"""

from __future__ import annotations

from typing import Any

from transformers.image_utils import load_image
from transformers.pipelines.base import Pipeline


class ImageCaptioningPipeline(Pipeline):
    """
    Caption images with a model registered in [`AutoModelForImageCaptioning`] (`generate(pixel_values,
    max_new_tokens=None)` -> token ids) whose processor has `batch_decode`.

    Example:
        ```python
        captioner = pipeline("image-captioning", model="path/to/x-decoder")
        captioner(image)  # [{"generated_text": "a large red circle above grass."}]
        ```
    """

    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __call__(self, images: Any, **kwargs: Any) -> list[dict[str, str]] | list[list[dict[str, str]]]:
        """
        Args:
            images: an image (PIL, path or URL) or a list of them.
            max_new_tokens (`int`, *optional*): caption length limit (default: the model's).
            timeout (`float`, *optional*): for fetching URLs.

        Returns:
            `[{"generated_text": str}]` per image.
        """
        return super().__call__(images, **kwargs)

    def _sanitize_parameters(self, max_new_tokens: int | None = None, timeout: float | None = None, **kwargs: Any):
        preprocess = {"timeout": timeout} if timeout is not None else {}
        forward = {"max_new_tokens": max_new_tokens} if max_new_tokens is not None else {}
        return preprocess, forward, {}

    def preprocess(self, image: Any, timeout: float | None = None) -> dict[str, Any]:
        image = load_image(image, timeout=timeout)
        encoded = self.processor(images=[image], return_tensors="pt")
        return {"pixel_values": encoded["pixel_values"].to(self.dtype)}

    def _forward(self, model_inputs: dict[str, Any], max_new_tokens: int | None = None) -> dict[str, Any]:
        return {
            "sequences": self.model.generate(pixel_values=model_inputs["pixel_values"], max_new_tokens=max_new_tokens)
        }

    def postprocess(self, model_outputs: dict[str, Any]) -> list[dict[str, str]]:
        return [{"generated_text": text} for text in self.processor.batch_decode(model_outputs["sequences"])]


__all__ = ["ImageCaptioningPipeline"]
