"""Self-attention masks between decoder query groups (X-Decoder Fig. 4.4 / Table 4.4, spec §2.7).

Pure functions, no parameters. A decoder input is a sequence of *groups* (object latents `O`, the image latent `G`,
the grounding copy of the object latents `O'`, referring text `T`, caption text `C`, and in later models prompt
groups); a set of *edges* says which group may attend which, fully or causally. Every query always attends itself,
so no row of a mask is ever empty (an empty softmax is NaN). Padding tokens of a text group are hidden from every
other query.

Masks are boolean with True = "may attend" (the `torch.nn.functional.scaled_dot_product_attention` convention),
shaped `(B, L, L)`: row = the attending query, column = the attended key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

TASKS = ("generic", "retrieval", "referring", "captioning", "vqa")


@dataclass(frozen=True)
class GroupSpec:
    """One query group of the decoder sequence.

    Args:
        name: unique name (the edges refer to it).
        length: number of queries.
    """

    name: str
    length: int


@dataclass(frozen=True)
class Edge:
    """`source` queries may attend `target` keys; `"causal"` restricts it to `j <= i` (same-length groups only)."""

    source: str
    target: str
    mode: str = "full"


@dataclass(frozen=True)
class InteractionSwitches:
    """Query-interaction switches of spec §2.7 / Table 4.4 (any object with these attributes works, e.g. the config).

    Args:
        latent_image_query_interaction: object latents and the image latent attend each other.
        text_attends_object_queries: text queries attend the object latents (grounding copy in referring).
        text_attends_image_query: caption/VQA text queries attend the image latent.
        latent_attends_text: latents attend the referring text (language-conditioned segmentation).
        grounding_separate_queries: referring uses a separate copy `O'` of the object latents.
    """

    latent_image_query_interaction: bool = True
    text_attends_object_queries: bool = True
    text_attends_image_query: bool = True
    latent_attends_text: bool = True
    grounding_separate_queries: bool = True


def build_group_attention_mask(
    groups: Sequence[GroupSpec],
    edges: Iterable[Edge],
    padding_masks: dict[str, torch.Tensor] | None = None,
    batch_size: int = 1,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Assemble a self-attention mask from groups and edges.

    Args:
        groups: the groups in sequence order.
        edges: allowed (source -> target) attention; anything not listed is blocked (except the diagonal).
        padding_masks: `name -> (B, length)` boolean/0-1 tensors, 1 = real token; padded keys are hidden from
            every query except themselves.
        batch_size: `B` when no padding mask fixes it.
        device: of the result.

    Returns:
        Boolean `(B, L, L)`, True = may attend.
    """
    padding_masks = padding_masks or {}
    for pad in padding_masks.values():
        batch_size = pad.shape[0]
        if device is None:
            device = pad.device
    offsets: dict[str, tuple[int, int]] = {}
    start = 0
    for group in groups:
        if group.name in offsets:
            raise ValueError(f"duplicate query group name {group.name!r}")
        offsets[group.name] = (start, start + group.length)
        start += group.length
    total = start
    mask = torch.zeros(total, total, dtype=torch.bool, device=device)
    for edge in edges:
        if edge.source not in offsets or edge.target not in offsets:
            continue  # an edge to a group absent from this task is simply unused
        s0, s1 = offsets[edge.source]
        t0, t1 = offsets[edge.target]
        if edge.mode == "full":
            mask[s0:s1, t0:t1] = True
        elif edge.mode == "causal":
            if s1 - s0 != t1 - t0:
                raise ValueError(f"causal edge {edge} needs groups of equal length")
            mask[s0:s1, t0:t1] = torch.ones(s1 - s0, s1 - s0, dtype=torch.bool, device=device).tril()
        else:
            raise ValueError(f"edge mode must be 'full' or 'causal', got {edge.mode!r}")
    mask = mask.unsqueeze(0).expand(batch_size, total, total).clone()
    for name, pad in padding_masks.items():
        if name not in offsets:
            raise ValueError(f"padding mask given for unknown group {name!r}")
        g0, g1 = offsets[name]
        if pad.shape[-1] != g1 - g0:
            raise ValueError(f"padding mask of group {name!r} has length {pad.shape[-1]}, expected {g1 - g0}")
        valid = pad.to(device=mask.device).bool()
        mask[:, :, g0:g1] &= valid[:, None, :]
    eye = torch.eye(total, dtype=torch.bool, device=mask.device)
    return mask | eye


def task_query_groups(
    tasks: str | Sequence[str],
    num_object_queries: int,
    text_lengths: dict[str, int] | None = None,
    switches: Any = None,
) -> tuple[list[GroupSpec], list[Edge]]:
    """Groups and edges of X-Decoder for one task or several tasks run in one pass (spec §2.7 table).

    Layout: `object` (m - 1) and `image` (1) always; `referring` adds `grounding` (m - 1, if
    `grounding_separate_queries`) and `text` (referring tokens); `captioning`/`vqa` add `caption` tokens. Groups of
    different tasks never see each other, so one pass gives the same outputs as separate passes.

    Args:
        tasks: task name or names from `TASKS`.
        num_object_queries: `m - 1`.
        text_lengths: `{"text": n_ref, "caption": n_cap}` as needed by the tasks.
        switches: object with the :class:`InteractionSwitches` attributes (default: all on).
    """
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    for task in tasks:
        if task not in TASKS:
            raise ValueError(f"`task` must be one of {TASKS}, got {task!r}")
    if "captioning" in tasks and "vqa" in tasks:
        raise ValueError("`task` cannot combine 'captioning' and 'vqa' (both use the caption text group)")
    sw = switches if switches is not None else InteractionSwitches()
    text_lengths = text_lengths or {}
    groups = [GroupSpec("object", num_object_queries), GroupSpec("image", 1)]
    edges = [Edge("object", "object")]
    if sw.latent_image_query_interaction:
        edges += [Edge("object", "image"), Edge("image", "object")]
    if "referring" in tasks:
        groups_needed = ("text",)
        latents = ["object"]
        if sw.grounding_separate_queries:
            groups.append(GroupSpec("grounding", num_object_queries))
            edges.append(Edge("grounding", "grounding"))
            latents = ["grounding"]
        groups.append(GroupSpec("text", _length(text_lengths, groups_needed[0])))
        edges.append(Edge("text", "text"))
        for latent in latents:
            if sw.latent_attends_text:
                edges.append(Edge(latent, "text"))
            if sw.text_attends_object_queries:
                edges.append(Edge("text", latent))
    if "captioning" in tasks or "vqa" in tasks:
        groups.append(GroupSpec("caption", _length(text_lengths, "caption")))
        # latents never read caption tokens: future tokens would leak into earlier positions through them
        edges.append(Edge("caption", "caption", "causal" if "captioning" in tasks else "full"))
        if sw.text_attends_object_queries:
            edges.append(Edge("caption", "object"))
        if sw.text_attends_image_query:
            edges.append(Edge("caption", "image"))
    return groups, edges


def _length(text_lengths: dict[str, int], name: str) -> int:
    if name not in text_lengths:
        raise ValueError(f"`text_lengths` must give the length of the {name!r} group for this task")
    return int(text_lengths[name])


def build_self_attention_mask(
    task: str | Sequence[str],
    num_object_queries: int,
    num_text: int | dict[str, int] = 0,
    text_padding_mask: torch.Tensor | dict[str, torch.Tensor] | None = None,
    switches: Any = None,
) -> torch.Tensor:
    """X-Decoder's task self-attention mask `S_task`.

    Args:
        task: one of `TASKS` (or several, run in one pass).
        num_object_queries: `m - 1` object latents (the image latent is added).
        num_text: text length `n` (the `text` group for referring, `caption` for captioning/VQA), or a dict
            `{"text": ..., "caption": ...}` when several tasks are combined.
        text_padding_mask: `(B, n)` 1 = real token (or a dict per text group); None = no padding.
        switches: object with the :class:`InteractionSwitches` attributes (e.g. an `XDecoderConfig`).

    Returns:
        Boolean `(B, L, L)` (B = 1 without padding masks), True = may attend.
    """
    tasks = (task,) if isinstance(task, str) else tuple(task)
    if isinstance(num_text, int):
        text_name = "text" if "referring" in tasks else "caption"
        lengths = {text_name: num_text}
        pads = {text_name: text_padding_mask} if text_padding_mask is not None else {}
    else:
        lengths = dict(num_text)
        pads = dict(text_padding_mask or {})
    groups, edges = task_query_groups(tasks, num_object_queries, lengths, switches)
    present = {g.name for g in groups}
    pads = {k: v for k, v in pads.items() if k in present}
    return build_group_attention_mask(groups, edges, pads)


__all__ = [
    "TASKS",
    "GroupSpec",
    "Edge",
    "InteractionSwitches",
    "build_group_attention_mask",
    "task_query_groups",
    "build_self_attention_mask",
]
