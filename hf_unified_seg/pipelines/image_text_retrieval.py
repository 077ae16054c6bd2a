"""Image-text retrieval pipeline: rank images for each text and texts for each image."""

from __future__ import annotations

from typing import Any

from transformers.image_utils import load_image
from transformers.pipelines.base import Pipeline


class ImageTextRetrievalPipeline(Pipeline):
    """
    Rank a gallery of images against a set of texts, in both directions, with a dual-encoder model.

    Works with any model registered in [`AutoModelForImageTextRetrieval`] whose forward takes `pixel_values`,
    `input_ids`, `attention_mask` and returns `logits_per_image` `(images, texts)` (X-Decoder, FIND).

    Example:
        ```python
        retriever = pipeline("image-text-retrieval", model="path/to/x-decoder")
        out = retriever(images=[im1, im2], texts=["a red circle", "a blue star"])
        out["text_to_image"][0]["ranking"][0]  # {"image_index": 1, "score": 12.3}
        ```
    """

    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __call__(self, images: Any = None, texts: str | list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        """
        Args:
            images (`list`): the image gallery (PIL images, paths or URLs); one image is a gallery of one.
            texts (`str` or `list[str]`): the texts.
            top_k (`int`, *optional*): keep only the best `top_k` entries of each ranking.
            timeout (`float`, *optional*): for fetching URLs.

        Returns:
            `dict` with `text_to_image` (per text: `text`, `ranking` of `{image_index, score}`) and `image_to_text`
            (per image: `image_index`, `ranking` of `{text_index, text, score}`), best first.
        """
        if images is None or texts is None:
            raise ValueError("Both `images` and `texts` are required for retrieval.")
        images = images if isinstance(images, (list, tuple)) else [images]
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not images or not texts:
            raise ValueError("`images` and `texts` must not be empty.")
        return super().__call__({"images": list(images), "texts": texts}, **kwargs)

    def _sanitize_parameters(self, top_k: int | None = None, timeout: float | None = None, **kwargs: Any):
        preprocess = {"timeout": timeout} if timeout is not None else {}
        postprocess = {"top_k": top_k} if top_k is not None else {}
        return preprocess, {}, postprocess

    def preprocess(self, inputs: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        images = [load_image(image, timeout=timeout) for image in inputs["images"]]
        encoded = self.processor(images=images, text=inputs["texts"], return_tensors="pt")
        return {
            "pixel_values": encoded["pixel_values"].to(self.dtype),
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "texts": inputs["texts"],
        }

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        texts = model_inputs.pop("texts")
        outputs = self.model(**model_inputs)
        return {"logits_per_image": outputs.logits_per_image, "texts": texts}

    def postprocess(self, model_outputs: dict[str, Any], top_k: int | None = None) -> dict[str, Any]:
        logits = model_outputs["logits_per_image"].float().cpu()  # (images, texts)
        texts = model_outputs["texts"]
        num_images, num_texts = logits.shape
        k_images = num_images if top_k is None else min(top_k, num_images)
        k_texts = num_texts if top_k is None else min(top_k, num_texts)
        text_to_image = []
        for t, text in enumerate(texts):
            scores, order = logits[:, t].sort(descending=True)
            ranking = [{"image_index": int(i), "score": float(s)} for s, i in zip(scores[:k_images], order[:k_images])]
            text_to_image.append({"text": text, "ranking": ranking})
        image_to_text = []
        for i in range(num_images):
            scores, order = logits[i].sort(descending=True)
            ranking = [
                {"text_index": int(t), "text": texts[int(t)], "score": float(s)}
                for s, t in zip(scores[:k_texts], order[:k_texts])
            ]
            image_to_text.append({"image_index": i, "ranking": ranking})
        return {"text_to_image": text_to_image, "image_to_text": image_to_text}


__all__ = ["ImageTextRetrievalPipeline"]
