"""Publish a trained model to the Hub with its generated model card (and optionally its code).

    python examples/publish.py hf_unified_seg_quickstart/model your-name/aa-resnet-shapesworld --remote-code

The card (YAML metadata + model-index from `eval_results.json`) is rendered from `model_cards/<model_type>.md`.
With `--remote-code`, the model's source files are bundled with relative imports and `auto_map` entries, so
`AutoModelForSemanticSegmentation.from_pretrained(repo_id, trust_remote_code=True)` works without
`hf_unified_seg`. Set `HF_ENDPOINT` (or `--endpoint`) to publish to another Hub-compatible server.
"""

from __future__ import annotations

import argparse

from hf_unified_seg.hub import build_model_card, publish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("repo_id")
    parser.add_argument("--remote-code", action="store_true")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--endpoint", default=None)
    parser.add_argument("--dry-run", action="store_true", help="print the model card instead of uploading")
    args = parser.parse_args()

    if args.dry_run:
        print(build_model_card(args.model_dir, repo_id=args.repo_id))
        return
    info = publish(args.model_dir, args.repo_id, remote_code=args.remote_code, private=args.private or None,
                   endpoint=args.endpoint)  # fmt: skip
    print(f"uploaded: {info.commit_url}")


if __name__ == "__main__":
    main()
