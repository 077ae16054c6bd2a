"""Segment your own images with a saved model: `from_pretrained` + `pipeline("image-segmentation")`.

    python examples/inference.py --model hf_unified_seg_quickstart/model my_photo.png other.jpg

Prints the segments per image and writes `<name>_overlay.png` next to the output JSON (like
`hf-unified-seg predict`). `--model` may also be a Hub id (add `--trust-remote-code` for repos published with
bundled code, which then load without `hf_unified_seg` installed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation, pipeline

import hf_unified_seg.models  # noqa: F401  (registers the model classes with the Auto classes)
from hf_unified_seg.training.inference import predict_image, render_overlay
from hf_unified_seg.training.tasks import task_for_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="saved model directory or Hub id")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--output_dir", default="predictions")
    parser.add_argument("--trust-remote-code", action="store_true")
    args = parser.parse_args()

    model = AutoModelForSemanticSegmentation.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    processor = AutoImageProcessor.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    segmenter = pipeline("image-segmentation", model=model, image_processor=processor)
    task = task_for_model(model)

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for path in map(Path, args.images):
        image = Image.open(path).convert("RGB")
        for segment in segmenter(image):  # [{"label", "score", "mask": PIL "L"}]
            share = 100 * (np.asarray(segment["mask"]) > 0).mean()
            print(f"{path.name}: {segment['label']:>12s}  {share:5.1f}% of the image")
        prediction = predict_image(image, model, processor, task, segmenter)
        (out / f"{path.stem}.json").write_text(json.dumps(prediction, indent=2))
        render_overlay(image, prediction).save(out / f"{path.stem}_overlay.png")
        print(f"wrote {out / (path.stem + '_overlay.png')}")


if __name__ == "__main__":
    main()
