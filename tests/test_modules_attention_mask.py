"""Self-attention masks of spec §2.7 / Table 4.4 as pure functions: layouts, causality, and the switches' edges."""

import dataclasses

import pytest
import torch

from hf_unified_seg.modules.attention_mask import (
    Edge,
    GroupSpec,
    InteractionSwitches,
    build_group_attention_mask,
    build_self_attention_mask,
    task_query_groups,
)

M1, N = 4, 5  # object queries, text length


def _blocks(task, switches=None, num_text=N):
    groups, _ = task_query_groups(task, M1, {"text": num_text, "caption": num_text}, switches)
    offsets, start = {}, 0
    for g in groups:
        offsets[g.name] = slice(start, start + g.length)
        start += g.length
    return offsets


def test_generic_layout_and_default_edges():
    mask = build_self_attention_mask("generic", M1)
    assert mask.shape == (1, M1 + 1, M1 + 1)
    assert mask.all()  # O<->O, O<->G on by default (chapter reading)
    off = build_self_attention_mask("generic", M1, switches=InteractionSwitches(latent_image_query_interaction=False))
    expected = torch.ones(M1 + 1, M1 + 1, dtype=torch.bool)
    expected[:M1, M1] = expected[M1, :M1] = False
    assert torch.equal(off[0], expected)


def test_captioning_is_causal_and_latents_never_read_text():
    mask = build_self_attention_mask("captioning", M1, N)[0]
    b = _blocks("captioning")
    cap, obj, img = b["caption"], b["object"], b["image"]
    assert torch.equal(mask[cap, cap], torch.ones(N, N, dtype=torch.bool).tril())
    assert not mask[obj, cap].any() and not mask[img, cap].any()
    assert mask[cap, obj].all() and mask[cap, img].all()
    vqa = build_self_attention_mask("vqa", M1, N)[0]
    assert vqa[cap, cap].all()  # VQA questions are read bidirectionally


def test_referring_with_grounding_copy():
    mask = build_self_attention_mask("referring", M1, N)[0]
    b = _blocks("referring")
    obj, img, grd, txt = b["object"], b["image"], b["grounding"], b["text"]
    assert mask.shape == (2 * M1 + 1 + N,) * 2
    # the original latents never see text or the grounding copy
    assert not mask[obj, txt].any() and not mask[img, txt].any() and not mask[obj, grd].any()
    assert mask[grd, txt].all() and mask[txt, grd].all() and mask[txt, txt].all()
    assert not mask[txt, img].any() and not mask[txt, obj].any()


def test_referring_without_copy_conditions_object_queries():
    sw = InteractionSwitches(grounding_separate_queries=False)
    mask = build_self_attention_mask("referring", M1, N, switches=sw)[0]
    b = _blocks("referring", sw)
    assert "grounding" not in b
    assert mask[b["object"], b["text"]].all() and mask[b["text"], b["object"]].all()
    assert not mask[b["image"], b["text"]].any() and not mask[b["text"], b["image"]].any()


@pytest.mark.parametrize(
    "task, switch, edges",
    [
        ("captioning", "text_attends_image_query", [("caption", "image")]),
        ("captioning", "text_attends_object_queries", [("caption", "object")]),
        ("referring", "text_attends_object_queries", [("text", "grounding")]),
        ("referring", "latent_attends_text", [("grounding", "text")]),
        ("generic", "latent_image_query_interaction", [("object", "image"), ("image", "object")]),
    ],
)
def test_each_switch_removes_exactly_its_edges(task, switch, edges):
    on = build_self_attention_mask(task, M1, N)[0]
    sw = dataclasses.replace(InteractionSwitches(), **{switch: False})
    off = build_self_attention_mask(task, M1, N, switches=sw)[0]
    b = _blocks(task)
    expected = torch.zeros_like(on)
    for src, dst in edges:
        expected[b[src], b[dst]] = True
    assert torch.equal(on & ~off, expected)
    assert not (off & ~on).any()


def test_padding_hidden_and_rows_never_empty():
    pad = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    mask = build_self_attention_mask("captioning", M1, N, pad)
    b = _blocks("captioning")
    cap = b["caption"]
    assert mask.shape[0] == 2
    rows = mask[0, :, cap][:, 3:]
    assert rows.sum() == 2  # padded keys only visible to themselves
    assert mask.any(-1).all()  # the diagonal keeps every row non-empty


def test_combined_tasks_are_block_separated():
    lengths = {"text": 3, "caption": N}
    mask = build_self_attention_mask(("generic", "referring", "captioning"), M1, lengths)[0]
    groups, _ = task_query_groups(("generic", "referring", "captioning"), M1, lengths)
    names = [g.name for g in groups]
    assert names == ["object", "image", "grounding", "text", "caption"]
    b = {}
    start = 0
    for g in groups:
        b[g.name] = slice(start, start + g.length)
        start += g.length
    assert not mask[b["caption"], b["text"]].any() and not mask[b["text"], b["caption"]].any()
    assert not mask[b["caption"], b["grounding"]].any()
    # each task's sub-mask equals the single-task mask
    single = build_self_attention_mask("captioning", M1, N)[0]
    keep = torch.cat([torch.arange(0, M1 + 1), torch.arange(b["caption"].start, b["caption"].stop)])
    assert torch.equal(mask[keep][:, keep], single)


def test_generic_builder_and_errors():
    mask = build_group_attention_mask([GroupSpec("a", 2), GroupSpec("b", 2)], [Edge("a", "b", "causal")])
    assert torch.equal(
        mask[0], torch.tensor([[1, 0, 1, 0], [0, 1, 1, 1], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    )
    with pytest.raises(ValueError, match="task"):
        build_self_attention_mask("segmentation", M1)
    with pytest.raises(ValueError, match="duplicate"):
        build_group_attention_mask([GroupSpec("a", 1), GroupSpec("a", 1)], [])
    with pytest.raises(ValueError, match="text_lengths"):
        task_query_groups("captioning", M1, {})
