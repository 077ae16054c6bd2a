"""Training with Accelerate (single process, `accelerate launch` DDP, GPUs), PEFT LoRA, and the task registry."""

from .. import models as _models  # noqa: F401  (registers our model classes with the Auto classes)
from .arguments import (
    ALL_ARGUMENT_CLASSES,
    DataArguments,
    LoraArguments,
    ModelArguments,
    SegTrainingArguments,
    parse_args,
)
from .checkpoint import list_checkpoints, resolve_checkpoint
from .lora import apply_lora, freeze_batchnorm_statistics, matching_modules, merge_lora, resolve_lora_targets
from .tasks import (
    TrainingTask,
    get_training_task,
    list_training_tasks,
    register_training_task,
    task_for_model,
    unwrap_model,
)
from .trainer import TrainResult, build_model_and_processor, train

__all__ = [
    "ALL_ARGUMENT_CLASSES",
    "DataArguments",
    "LoraArguments",
    "ModelArguments",
    "SegTrainingArguments",
    "TrainResult",
    "TrainingTask",
    "apply_lora",
    "build_model_and_processor",
    "freeze_batchnorm_statistics",
    "get_training_task",
    "list_checkpoints",
    "list_training_tasks",
    "matching_modules",
    "merge_lora",
    "parse_args",
    "register_training_task",
    "resolve_checkpoint",
    "resolve_lora_targets",
    "task_for_model",
    "train",
    "unwrap_model",
]
