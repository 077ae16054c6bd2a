"""Model cards and publishing to the Hugging Face Hub.

- `build_model_card(model_dir)` renders the Jinja template `model_cards/<model_type>.md` (falling back on
  `model_cards/default.md`) with YAML metadata and a `model-index` built from `eval_results.json` through
  `huggingface_hub.ModelCardData` / `EvalResult`.
- `publish(model_dir, repo_id)` uploads config, safetensors weights, processor files and the card with
  `huggingface_hub.HfApi`, optionally with a self-contained remote-code bundle (`bundle_remote_code`) so the
  repo loads with `trust_remote_code=True` on machines without `hf_unified_seg`.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import models as _models  # noqa: F401  (registers our model classes with the Auto classes)

PACKAGE = "hf_unified_seg"
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "model_cards"
RESULTS_DIR = TEMPLATE_DIR / "results"

# Files of a saved model that belong on the Hub (checkpoints, logs and merged copies stay local).
_UPLOAD_PATTERNS = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "adapter_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "image_processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "chat_template.jinja",
    "eval_results.json",
    "training_args.json",
)

_FALLBACK_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

A `{{ model_type }}` model from `hf_unified_seg`.

{{ results_section }}

{{ usage_section }}
"""


# ----------------------------------------------------------------------------------------------------------------
# model cards


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _eval_results(evaluation: dict[str, Any] | None, pipeline_tag: str, metric_names: dict) -> list[Any]:
    from huggingface_hub import EvalResult

    if not evaluation or not evaluation.get("metrics"):
        return []
    dataset = str(evaluation.get("dataset", "shapesworld"))
    dataset_name = "ShapesWorld (synthetic)" if dataset == "shapesworld" else Path(dataset).name
    results = []
    for key, value in evaluation["metrics"].items():
        if not isinstance(value, (int, float)):
            continue
        metric_type, pretty = metric_names.get(key, (key, key.replace("_", " ")))
        results.append(
            EvalResult(
                task_type=pipeline_tag,
                dataset_type="shapesworld" if dataset == "shapesworld" else dataset_name,
                dataset_name=dataset_name,
                dataset_split=str(evaluation.get("split", "val")),
                metric_type=metric_type,
                metric_name=pretty,
                metric_value=round(float(value), 6),
            )
        )
    return results


def _task_info(config: dict[str, Any], evaluation: dict[str, Any] | None) -> tuple[str, str, dict]:
    from .training.tasks import get_training_task, list_training_tasks

    name = (evaluation or {}).get("task")
    if name not in list_training_tasks():
        arch = (config.get("architectures") or [""])[0]
        name = (
            "image-classification"
            if arch.endswith("ForImageClassification")
            else "universal-segmentation"
            if arch.endswith("ForUniversalSegmentation")
            else "semantic-segmentation"
        )
    task = get_training_task(name)
    return task.name, task.pipeline_tag, task.metric_names


def _results_markdown(evaluation: dict[str, Any] | None, metric_names: dict) -> str:
    if not evaluation or not evaluation.get("metrics"):
        return "No evaluation results were recorded for this checkpoint."
    dataset = evaluation.get("dataset", "shapesworld")
    rows = ["| Metric | Value |", "|---|---|"]
    for key, value in evaluation["metrics"].items():
        if isinstance(value, (int, float)):
            rows.append(f"| {metric_names.get(key, (key, key))[1]} | {float(value):.4f} |")
    return f"Evaluated on the `{evaluation.get('split', 'val')}` split of `{dataset}`:\n\n" + "\n".join(rows)


def _recipe_markdown(args: dict[str, Any] | None) -> str:
    if not args:
        return "The training recipe was not recorded."
    keys = [
        "model_name_or_path",
        "preset",
        "dataset",
        "num_train_images",
        "dataset_image_size",
        "image_size",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "learning_rate",
        "lr_scheduler_type",
        "warmup_steps",
        "max_steps",
        "num_train_epochs",
        "mixed_precision",
        "seed",
        "lora",
        "lora_r",
        "lora_alpha",
        "lora_target_modules",
    ]
    rows = ["| Setting | Value |", "|---|---|"]
    if not args.get("lora"):
        keys = [k for k in keys if not k.startswith("lora")]
    rows += [f"| `{k}` | `{args[k]}` |" for k in keys if k in args and args[k] not in (None, "")]
    return "Trained with `hf-unified-seg train` (Accelerate, AdamW):\n\n" + "\n".join(rows)


def build_model_card(
    model_dir: str | Path,
    *,
    repo_id: str | None = None,
    license: str = "apache-2.0",
    template_dir: str | Path | None = None,
    extra_tags: Iterable[str] = (),
) -> Any:
    """Render the model card of a saved model (full model or LoRA adapter directory).

    Args:
        model_dir: a directory written by `save_pretrained` (or the trainer).
        repo_id: Hub id used in the usage snippets (default: the local path).
        license: SPDX license id for the metadata.
        template_dir: where `<model_type>.md` templates live (default: the repository's `model_cards/`).
        extra_tags: tags added to the metadata.

    Returns:
        `huggingface_hub.ModelCard`.
    """
    import jinja2
    from huggingface_hub import ModelCard, ModelCardData

    model_dir = Path(model_dir)
    adapter = _read_json(model_dir / "adapter_config.json")
    config = _read_json(model_dir / "config.json")
    base_model = None
    if config is None and adapter is not None:
        base_model = adapter.get("base_model_name_or_path")
        base_config = Path(str(base_model or "")) / "config.json"
        config = _read_json(base_config) if base_config.is_file() else {}
    if config is None:
        raise ValueError(f"model_dir {model_dir} holds neither config.json nor adapter_config.json")
    model_type = str(config.get("model_type", "unknown"))
    evaluation = _read_json(model_dir / "eval_results.json")
    args = _read_json(model_dir / "training_args.json")
    task_name, pipeline_tag, metric_names = _task_info(config, evaluation)
    dataset = (evaluation or {}).get("dataset") or (args or {}).get("dataset")
    datasets = ["shapesworld" if dataset in (None, "shapesworld") else Path(str(dataset)).name]
    model_id = repo_id or str(model_dir)
    model_name = repo_id.split("/")[-1] if repo_id else model_dir.resolve().name
    if adapter is None and args and args.get("model_name_or_path") and "/" in str(args["model_name_or_path"]):
        base_model = str(args["model_name_or_path"])
    if base_model and Path(base_model).exists():
        base_model = None  # a local path is no Hub reference

    card_data = ModelCardData(
        model_name=model_name,
        library_name="peft" if adapter else "transformers",
        pipeline_tag=pipeline_tag,
        license=license,
        tags=sorted({PACKAGE, model_type, task_name, *(["lora"] if adapter else []), *extra_tags}),
        datasets=datasets,
        metrics=sorted({metric_names.get(k, (k, k))[0] for k in (evaluation or {}).get("metrics", {})}) or None,
        base_model=base_model,
        eval_results=_eval_results(evaluation, pipeline_tag, metric_names) or None,
    )
    template_root = Path(template_dir) if template_dir else TEMPLATE_DIR
    results_file = template_root / "results" / f"{model_type}.md"
    context = {
        "card_data": card_data.to_yaml(),
        "model_name": model_name,
        "model_id": model_id,
        "model_type": model_type,
        "architecture": (config.get("architectures") or [""])[0],
        "task": task_name,
        "pipeline_tag": pipeline_tag,
        "labels": [v for _, v in sorted((int(k), v) for k, v in (config.get("id2label") or {}).items())],
        "is_adapter": adapter is not None,
        "adapter": adapter or {},
        "base_model": (adapter or {}).get("base_model_name_or_path") or base_model,
        "results_section": _results_markdown(evaluation, metric_names),
        "recipe_section": _recipe_markdown(args),
        "measured_results": results_file.read_text().strip() if results_file.is_file() else "",
        "datasets": datasets,
    }
    if (template_root / f"{model_type}.md").is_file() or (template_root / "default.md").is_file():
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_root)), keep_trailing_newline=True)
        name = f"{model_type}.md" if (template_root / f"{model_type}.md").is_file() else "default.md"
        text = env.get_template(name).render(**context)
    else:  # installed without the repository's templates
        context["usage_section"] = (
            f"```python\nimport hf_unified_seg\nfrom transformers import pipeline\n\npipe = pipeline({pipeline_tag!r}, model={model_id!r})\n```"
        )
        text = jinja2.Template(_FALLBACK_TEMPLATE).render(**context)
    return ModelCard(text)


def write_model_card(model_dir: str | Path, **kwargs: Any) -> Path:
    """Render `build_model_card(model_dir, **kwargs)` into `model_dir/README.md`."""
    path = Path(model_dir) / "README.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(str(build_model_card(model_dir, **kwargs)))
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------------------------------------------
# remote-code bundle


def _module_file(module_name: str) -> Path:
    module = importlib.import_module(module_name)
    if getattr(module, "__file__", None) is None:
        raise ValueError(f"module {module_name} has no source file to bundle")
    return Path(module.__file__)


def _is_package(module_name: str) -> bool:
    return _module_file(module_name).name == "__init__.py"


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def _ours(name: str | None) -> bool:
    return bool(name) and (name == PACKAGE or name.startswith(PACKAGE + "."))


class _ImportRef:
    """One `hf_unified_seg` import statement of a module, resolved to the modules that define each name."""

    def __init__(self, node: ast.stmt, items: list[tuple[str, str | None, str]]) -> None:
        self.node = node
        # (target module, imported attribute or None for the module itself, bound name)
        self.items = items


def _resolve_imports(module_name: str, tree: ast.Module) -> list[_ImportRef]:
    package = module_name if _is_package(module_name) else module_name.rpartition(".")[0]
    refs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            else:
                base = node.module or ""
            if not _ours(base):
                continue
            items = []
            for alias in node.names:
                if alias.name == "*":
                    raise ValueError(
                        f"{module_name}: `from {base} import *` cannot be bundled; import names explicitly"
                    )
                bound = alias.asname or alias.name
                full = f"{base}.{alias.name}"
                if _is_module(full):
                    items.append((full, None, bound))
                    continue
                obj = getattr(importlib.import_module(base), alias.name)
                home = getattr(obj, "__module__", None)
                if (
                    (inspect.isclass(obj) or inspect.isfunction(obj))
                    and _ours(home)
                    and getattr(sys.modules.get(home), alias.name, None) is obj
                ):
                    items.append((home, alias.name, bound))
                else:
                    items.append((base, alias.name, bound))
            refs.append(_ImportRef(node, items))
        elif isinstance(node, ast.Import):
            names = [a for a in node.names if _ours(a.name)]
            if not names:
                continue
            if len(names) != len(node.names) or any(a.asname is None for a in names):
                raise ValueError(
                    f"{module_name}: write `import {names[0].name} as <alias>` on its own line so it can be bundled"
                )
            refs.append(_ImportRef(node, [(a.name, None, a.asname) for a in names]))
    return refs


def _flat_names(modules: Iterable[str], reserved: dict[str, str]) -> dict[str, str]:
    """Give every bundled module a unique flat file stem (its last dotted component where possible)."""
    names = dict(reserved)
    taken = set(reserved.values())
    for mod in sorted(set(modules) - set(reserved)):
        parts = mod.split(".")[1:] or [PACKAGE]
        for depth in range(1, len(parts) + 1):
            stem = "_".join(parts[-depth:])
            if stem not in taken:
                break
        else:
            stem = "_".join(mod.split("."))
        names[mod] = stem
        taken.add(stem)
    return names


def bundle_source_files(top_modules: Iterable[str]) -> dict[str, str]:
    """Self-contained sources for `top_modules` and every `hf_unified_seg` module they import.

    Every module becomes one flat file (`<stem>.py`) whose package imports are rewritten as relative imports
    of the other flat files, the layout transformers' dynamic-module loader expects.

    Returns:
        `{file name: source}`; a top module `a.b.modeling_x` becomes `modeling_x.py`.
    """
    top = list(dict.fromkeys(top_modules))
    trees: dict[str, tuple[str, ast.Module, list[_ImportRef]]] = {}
    todo = list(top)
    while todo:
        mod = todo.pop()
        if mod in trees:
            continue
        source = _module_file(mod).read_text()
        tree = ast.parse(source)
        refs = _resolve_imports(mod, tree)
        trees[mod] = (source, tree, refs)
        todo.extend(target for ref in refs for target, _, _ in ref.items)
    reserved: dict[str, str] = {}
    for mod in top:
        stem = mod.rsplit(".", 1)[-1]
        if stem in reserved.values():
            raise ValueError(f"two top-level modules share the file name {stem}.py")
        reserved[mod] = stem
    flat = _flat_names(trees, reserved)

    files = {}
    for mod, (source, _tree, refs) in trees.items():
        lines = source.splitlines(keepends=True)
        for ref in sorted(refs, key=lambda r: r.node.lineno, reverse=True):
            indent = " " * ref.node.col_offset
            statements = []
            for target, attr, bound in ref.items:
                stem = flat[target]
                if attr is None:
                    # transformers fetches a relative file only when it sees `from .<file> import ...`.
                    statements.append(f"from .{stem} import __name__ as _bundled_{stem}_name  # noqa: F401")
                    statements.append(f"from . import {stem} as {bound}")
                else:
                    suffix = f" as {bound}" if bound != attr else ""
                    statements.append(f"from .{stem} import {attr}{suffix}")
            new = "".join(f"{indent}{s}\n" for s in statements)
            lines[ref.node.lineno - 1 : ref.node.end_lineno] = [new]
        text = "".join(lines)
        header = f"# Bundled from {mod} (hf_unified_seg) for trust_remote_code loading; imports made relative.\n"
        files[f"{flat[mod]}.py"] = header + text
    return files


def _find_model_class(config_cls: type, architecture: str) -> tuple[type, str]:
    import transformers

    from .training.tasks import get_training_task, list_training_tasks

    autos = [get_training_task(t).auto_class for t in list_training_tasks()] + ["AutoModel", "AutoBackbone"]
    for auto_name in dict.fromkeys(autos):
        auto = getattr(transformers, auto_name, None)
        try:
            cls = auto._model_mapping[config_cls]
        except (KeyError, AttributeError):
            continue
        if getattr(cls, "__name__", None) == architecture:
            return cls, auto_name
    raise ValueError(f"architecture {architecture!r} is not registered in any Auto class for {config_cls.__name__}")


def bundle_remote_code(target_dir: str | Path) -> dict[str, str]:
    """Add the model's source files and `auto_map` entries to a saved model in `target_dir`.

    Works for any model whose config, model and image processor classes live in `hf_unified_seg`; the written
    `auto_map` makes `AutoConfig`/`Auto*`/`AutoImageProcessor.from_pretrained(..., trust_remote_code=True)`
    import the bundled files instead of our package.

    Returns:
        `{file name: source}` of the bundled files.
    """
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    target_dir = Path(target_dir)
    config_path = target_dir / "config.json"
    config = _read_json(config_path)
    if config is None:
        raise ValueError(f"{target_dir} has no config.json; remote code needs a full model (not an adapter)")
    try:
        config_cls = CONFIG_MAPPING[config["model_type"]]
    except KeyError:
        raise ValueError(f"model_type {config.get('model_type')!r} is not registered") from None
    if not _ours(config_cls.__module__):
        raise ValueError(f"{config_cls.__name__} is part of transformers; the Hub loads it without remote code")
    architectures = config.get("architectures") or []
    if not architectures:
        raise ValueError(f"{config_path} names no architecture")
    model_cls, auto_name = _find_model_class(config_cls, architectures[0])
    auto_map = {
        "AutoConfig": (config_cls.__module__, config_cls.__name__),
        auto_name: (model_cls.__module__, model_cls.__name__),
    }

    processor_files = []
    for fname, key, auto_key in (
        ("preprocessor_config.json", "image_processor_type", "AutoImageProcessor"),
        ("processor_config.json", "processor_class", "AutoProcessor"),
    ):
        data = _read_json(target_dir / fname)
        if data is None or key not in data:
            continue
        cls = _find_processor_class(config_cls, data[key])
        if cls is not None and _ours(cls.__module__):
            processor_files.append((fname, data, auto_key, cls))

    modules = [m for m, _ in auto_map.values()] + [c.__module__ for *_, c in processor_files]
    files = bundle_source_files(modules)
    stems = _flat_names([], {m: m.rsplit(".", 1)[-1] for m in modules})
    for name, source in files.items():
        (target_dir / name).write_text(source)
    config["auto_map"] = {k: f"{stems[m]}.{c}" for k, (m, c) in auto_map.items()}
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for fname, data, auto_key, cls in processor_files:
        data["auto_map"] = {auto_key: f"{stems[cls.__module__]}.{cls.__name__}"}
        (target_dir / fname).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return files


def _find_processor_class(config_cls: type, class_name: str) -> type | None:
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING

    try:
        entry = IMAGE_PROCESSOR_MAPPING[config_cls]
    except KeyError:
        entry = None
    candidates = (
        list(entry.values())
        if isinstance(entry, dict)
        else list(entry or [])
        if isinstance(entry, (list, tuple))
        else [entry]
    )
    try:
        from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

        candidates.append(PROCESSOR_MAPPING[config_cls])
    except (KeyError, ImportError):
        pass
    for cls in candidates:
        if cls is not None and getattr(cls, "__name__", None) == class_name:
            return cls
    return None


# ----------------------------------------------------------------------------------------------------------------
# publishing


def validate_model_dir(model_dir: str | Path) -> Path:
    """Check that `model_dir` holds a publishable model: config (or adapter config) and safetensors weights.

    Raises:
        ValueError: missing directory, config or weights (or weights only in pickle format).
    """
    path = Path(model_dir)
    if not path.is_dir():
        raise ValueError(f"model_dir {model_dir!r} is not a directory")
    has_config = (path / "config.json").is_file() or (path / "adapter_config.json").is_file()
    if not has_config:
        raise ValueError(f"model_dir {model_dir!r} has no config.json or adapter_config.json")
    weights = list(path.glob("*.safetensors"))
    if not weights:
        pickled = [p.name for p in path.glob("*.bin")]
        hint = f" (found {pickled}: re-save with safetensors)" if pickled else ""
        raise ValueError(f"model_dir {model_dir!r} has no *.safetensors weights{hint}")
    return path


def stage_for_upload(
    model_dir: str | Path,
    staging_dir: str | Path,
    *,
    repo_id: str | None,
    remote_code: bool,
    license: str = "apache-2.0",
) -> list[str]:
    """Copy the files to publish into `staging_dir`, write the card and (optionally) the remote-code bundle."""
    src = validate_model_dir(model_dir)
    dst = Path(staging_dir)
    dst.mkdir(parents=True, exist_ok=True)
    for pattern in _UPLOAD_PATTERNS:
        for f in src.glob(pattern):
            if f.is_file():
                shutil.copy2(f, dst / f.name)
    if remote_code:
        bundle_remote_code(dst)
    (dst / "README.md").write_text(str(build_model_card(src, repo_id=repo_id, license=license)))
    return sorted(p.name for p in dst.iterdir())


def publish(
    model_dir: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    remote_code: bool = False,
    commit_message: str | None = None,
    endpoint: str | None = None,
    license: str = "apache-2.0",
    create_pr: bool = False,
) -> Any:
    """Upload a saved model (or LoRA adapter) to the Hub with its model card.

    Args:
        model_dir: directory written by the trainer or `save_pretrained`.
        repo_id: `namespace/name` on the Hub (created if missing).
        token: Hub token (default: the logged-in one).
        private: create the repo private.
        remote_code: also upload self-contained model code and `auto_map`, for `trust_remote_code=True` loading
            without `hf_unified_seg` installed.
        commit_message: message of the upload commit.
        endpoint: Hub URL (default: `HF_ENDPOINT` / huggingface.co).
        license: SPDX id written in the card metadata.
        create_pr: open a pull request instead of committing to `main`.

    Returns:
        `huggingface_hub.CommitInfo` of the upload.
    """
    from huggingface_hub import HfApi

    if not isinstance(repo_id, str) or repo_id.count("/") > 1 or not repo_id.strip("/"):
        raise ValueError(f"repo_id must look like 'namespace/name', got {repo_id!r}")
    validate_model_dir(model_dir)
    api = HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory(prefix="hf_unified_seg_publish_") as staging:
        files = stage_for_upload(model_dir, staging, repo_id=repo_id, remote_code=remote_code, license=license)
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.upload_folder(
            folder_path=staging,
            repo_id=repo_id,
            commit_message=commit_message or f"Upload {Path(model_dir).name} with hf_unified_seg ({len(files)} files)",
            create_pr=create_pr,
        )
