"""Panoptic quality: ShapesWorld self-score, torchmetrics cross-check, COCO void/crowd rules, adapters, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.detection import PanopticQuality as TorchmetricsPQ

from hf_unified_seg.data import get_categories, load_shapesworld
from hf_unified_seg.metrics import load, panoptic_from_record

THINGS, STUFF = (0, 1, 2), (3, 4)
CATEGORIES = [{"id": c, "isthing": c in THINGS, "name": f"c{c}"} for c in THINGS + STUFF]
VOID_CATEGORY = 99  # unknown category id: torchmetrics treats reference pixels with it as void


@pytest.fixture(scope="module")
def shapes():
    ds = load_shapesworld("val", num_images=4, image_size=64, seed=3)
    return ds, get_categories(ds)


def test_ground_truth_scores_100(shapes):
    ds, categories = shapes
    # Stuff backgrounds, plus noise backgrounds that leave void pixels in the references.
    noisy = load_shapesworld("val", num_images=3, image_size=64, seed=4, background="noise")
    records = [ds[i] for i in range(len(ds))] + [noisy[i] for i in range(len(noisy))]
    assert any((np.asarray(panoptic_from_record(r)[0]) == 0).any() for r in records), "fixture should contain void"
    result = load("panoptic_quality", categories=categories).compute(predictions=records, references=records)
    assert result["pq"] == result["sq"] == result["rq"] == 100.0
    assert result["pq_things"] == 100.0 and result["pq_stuff"] == 100.0
    assert result["n_things"] > 0 and result["n_stuff"] > 0

    # Same through the other input forms: id maps and RGB PNGs with separate segments_info.
    ids_and_info = [panoptic_from_record(r) for r in records]
    metric = load("panoptic_quality", categories=categories)
    metric.add_batch(
        predictions=[ids for ids, _ in ids_and_info],
        references=[r["panoptic"] for r in records],
        prediction_segments_info=[info for _, info in ids_and_info],
        reference_segments_info=[r["segments_info"] for r in records],
    )
    assert metric.compute()["pq"] == 100.0


def _random_scene(rng: np.random.Generator, size: int = 48, cell: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Blocky random (category, instance) maps; stuff instances are 0."""
    n = size // cell
    category = rng.integers(0, 5, size=(n, n))
    instance = np.where(category < 3, rng.integers(0, 3, size=(n, n)), 0)
    up = np.ones((cell, cell), dtype=np.int64)
    return np.kron(category, up), np.kron(instance, up)


def _to_segments(category: np.ndarray, instance: np.ndarray, void: np.ndarray, rng: np.random.Generator):
    """(category, instance) pairs -> segment id map (0 = void) + segments_info, ids in random order."""
    key = np.where(void, -1, category * 100 + instance)
    keys = np.unique(key[key >= 0])
    ids = np.zeros(key.shape, dtype=np.int64)
    info = []
    for seg_id, k in zip(rng.permutation(len(keys)) + 1, keys):
        ids[key == k] = seg_id
        info.append({"id": int(seg_id), "category_id": int(k // 100)})
    return ids, info


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_torchmetrics_on_random_predictions(seed):
    """Same definition on both sides: void only in references (torchmetrics also drops reference pixels that are
    *predicted* void from the union, and COCO does not), no crowd (torchmetrics has none), one segment per stuff
    category (torchmetrics merges stuff instances)."""
    rng = np.random.default_rng(seed)
    metric = load("panoptic_quality", categories=CATEGORIES)
    reference_pq = TorchmetricsPQ(things=set(THINGS), stuffs=set(STUFF), return_sq_and_rq=True, return_per_class=True)
    for _ in range(12):
        ref_cat, ref_inst = _random_scene(rng)
        ref_void = np.kron(rng.random((8, 8)) < 0.15, np.ones((6, 6), dtype=bool))
        # Perturb: pixel noise, whole-block relabels, and instance splits/merges.
        pred_cat, pred_inst = ref_cat.copy(), ref_inst.copy()
        noise = rng.random(ref_cat.shape) < rng.uniform(0.05, 0.4)
        pred_cat[noise] = rng.integers(0, 5, noise.sum())
        blocks = np.kron(rng.random((8, 8)) < 0.2, np.ones((6, 6), dtype=bool))
        pred_cat[blocks] = rng.integers(0, 5)
        pred_inst = np.where(pred_cat < 3, (pred_inst + rng.integers(0, 2, pred_inst.shape)) % 3, 0)
        pred_ids, pred_info = _to_segments(pred_cat, pred_inst, np.zeros_like(ref_void), rng)
        ref_ids, ref_info = _to_segments(ref_cat, ref_inst, ref_void, rng)
        metric.add(
            prediction=pred_ids,
            reference=ref_ids,
            prediction_segments_info=pred_info,
            reference_segments_info=ref_info,
        )
        reference_pq.update(
            torch.from_numpy(np.stack([pred_cat, pred_inst], -1))[None],
            torch.from_numpy(np.stack([np.where(ref_void, VOID_CATEGORY, ref_cat), ref_inst], -1))[None],
        )
    ours = metric.compute()
    # torchmetrics works in fractions (its RQ in float32): compare on that scale, ours / 100.
    per_class = reference_pq.compute().numpy()  # (classes in things-then-stuff order, [pq, sq, rq])
    for row, category in zip(per_class, THINGS + STUFF):
        got = ours["per_category"][f"c{category}"]
        np.testing.assert_allclose(np.array([got["pq"], got["sq"], got["rq"]]) / 100, row, rtol=0, atol=1e-6)
    counts = reference_pq.true_positives + 0.5 * reference_pq.false_positives + 0.5 * reference_pq.false_negatives
    occurring = counts.numpy() > 0
    is_thing = np.array([c in THINGS for c in THINGS + STUFF])
    for suffix, selection in (("", occurring), ("_things", occurring & is_thing), ("_stuff", occurring & ~is_thing)):
        for j, name in enumerate(("pq", "sq", "rq")):
            assert ours[name + suffix] / 100 == pytest.approx(per_class[selection, j].mean(), abs=1e-6)
    assert 0 < ours["pq"] < 100


def test_coco_void_and_crowd_rules_hand_worked():
    """10x10 image. Reference: thing 0 on rows 0-4 (id 1), crowd of thing 0 on rows 5-9 x cols 0-4 (id 2), void on
    rows 5-9 x cols 5-9, and thing 1 nowhere. Prediction:
      p1 (thing 0) rows 0-4 plus row 5 cols 5-9: 55 px, 5 on void -> union 55 + 50 - 50 - 5 = 50, IoU = 1 (TP);
      p2 (thing 0) on the crowd region: unmatched but fully crowd of its own category -> ignored;
      p3 (thing 1) rows 6-9 x cols 5-9: all void -> ignored;
    so thing 0 has TP 1, IoU 1 and PQ = 100."""
    categories = [{"id": 0, "isthing": 1, "name": "a"}, {"id": 1, "isthing": 1, "name": "b"}]
    ref = np.zeros((10, 10), dtype=np.int64)
    ref[:5] = 1
    ref[5:, :5] = 2
    ref_info = [{"id": 1, "category_id": 0}, {"id": 2, "category_id": 0, "iscrowd": 1}]
    pred = np.zeros((10, 10), dtype=np.int64)
    pred[:5] = 1
    pred[5, 5:] = 1
    pred[5:, :5] = 2
    pred[6:, 5:] = 3
    pred_info = [{"id": 1, "category_id": 0}, {"id": 2, "category_id": 0}, {"id": 3, "category_id": 1}]
    metric = load("panoptic_quality", categories=categories)
    result = metric.compute(
        predictions=[pred], references=[ref], prediction_segments_info=[pred_info], reference_segments_info=[ref_info]
    )
    assert result["per_category"]["a"] == {"pq": 100.0, "sq": 100.0, "rq": 100.0, "tp": 1, "fp": 0, "fn": 0}
    assert result["per_category"]["b"]["tp"] + result["per_category"]["b"]["fp"] == 0
    assert result["n"] == 1 and result["pq"] == 100.0 and np.isnan(result["pq_stuff"])

    # p1 loses rows 0-1 to a thing-1 segment p4 (20 px on thing 0): p1 keeps rows 2-4 + the 5 void px, 35 px,
    # intersection 30, union 35 + 50 - 30 - 5 = 50, IoU 0.6 -> TP with IoU 0.6 for "a"; p4 is an FP for "b"
    # (0 px on void); p2 on the crowd is still ignored. PQ_a = 0.6 / 1 = 60, PQ_b = 0 / (0.5) = 0 -> PQ 30.
    pred[:2] = 4
    pred_info.append({"id": 4, "category_id": 1})
    result = metric.compute(
        predictions=[pred], references=[ref], prediction_segments_info=[pred_info], reference_segments_info=[ref_info]
    )
    assert result["per_category"]["a"]["sq"] == pytest.approx(60.0)
    assert result["per_category"]["b"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": 0, "fp": 1, "fn": 0}
    assert result["pq"] == pytest.approx(30.0) and result["rq"] == pytest.approx(50.0)

    # Without the crowd flag, region 2 is a regular segment: p2 matches it exactly.
    plain_info = [{"id": 1, "category_id": 0}, {"id": 2, "category_id": 0}]
    result = metric.compute(
        predictions=[pred],
        references=[ref],
        prediction_segments_info=[pred_info],
        reference_segments_info=[plain_info],
    )
    assert result["per_category"]["a"]["tp"] == 2 and result["per_category"]["a"]["sq"] == pytest.approx(80.0)


def test_transformers_post_processing_adapter(shapes):
    """Real Mask2Former post-processing output (from logits built to reproduce a record) goes in as a dict."""
    from transformers import Mask2FormerImageProcessor
    from transformers.models.mask2former.modeling_mask2former import Mask2FormerForUniversalSegmentationOutput

    ds, categories = shapes
    record = ds[0]
    ids, info = panoptic_from_record(record)
    num_labels = len(categories)
    masks = torch.stack([torch.from_numpy(ids == s["id"]) for s in info]).float() * 20 - 10
    class_logits = torch.full((len(info), num_labels + 1), -10.0)
    for q, s in enumerate(info):
        class_logits[q, s["category_id"]] = 10.0
    outputs = Mask2FormerForUniversalSegmentationOutput(
        class_queries_logits=class_logits[None], masks_queries_logits=masks[None]
    )
    stuff = {c["id"] for c in categories if not c["isthing"]}
    processed = Mask2FormerImageProcessor().post_process_panoptic_segmentation(
        outputs, label_ids_to_fuse=stuff, target_sizes=[ids.shape]
    )[0]
    as_dict = load("panoptic_quality", categories=categories).compute(predictions=[processed], references=[record])
    pred_ids = processed["segmentation"].numpy().astype(np.int64)
    pred_info = [{"id": s["id"], "category_id": s["label_id"]} for s in processed["segments_info"]]
    as_maps = load("panoptic_quality", categories=categories).compute(
        predictions=[pred_ids],
        references=[ids],
        prediction_segments_info=[pred_info],
        reference_segments_info=[info],
    )
    assert as_dict == as_maps
    assert as_dict["pq"] > 90.0

    # Nothing detected: transformers returns a map of -1 and no segments -> every reference segment is a miss.
    empty = {"segmentation": torch.full(ids.shape, -1.0), "segments_info": []}
    result = load("panoptic_quality", categories=categories).compute(predictions=[empty], references=[record])
    assert result["pq"] == 0.0
    assert sum(v["fn"] for v in result["per_category"].values()) == sum(1 for s in info if (ids == s["id"]).any())


def test_bad_inputs_raise_clear_errors():
    metric = load("panoptic_quality", categories=CATEGORIES)
    ids = np.ones((8, 8), dtype=np.int64)
    info = [{"id": 1, "category_id": 0}]
    with pytest.raises(ValueError, match="shape"):
        metric.add(prediction=ids, reference=ids[:4], prediction_segments_info=info, reference_segments_info=info)
    with pytest.raises(ValueError, match="missing"):
        metric.add(prediction=ids, reference=ids, prediction_segments_info=info)
    bad_category = [{"id": 1, "category_id": 7}]
    with pytest.raises(ValueError, match="category_id 7"):
        metric.compute(
            predictions=[ids],
            references=[ids],
            prediction_segments_info=[bad_category],
            reference_segments_info=[info],
        )
    with pytest.raises(ValueError, match="segment id 1 appears in the map"):
        load("panoptic_quality", categories=CATEGORIES).compute(
            predictions=[ids], references=[ids], prediction_segments_info=[[]], reference_segments_info=[info]
        )
    with pytest.raises(ValueError, match="`categories` is required"):
        load("panoptic_quality").compute(
            predictions=[ids], references=[ids], prediction_segments_info=[info], reference_segments_info=[info]
        )
    with pytest.raises(ValueError, match="nothing to compute"):
        load("panoptic_quality", categories=CATEGORIES).compute()


def test_large_coco_style_segment_ids_give_the_same_scores(shapes):
    """COCO panoptic ids reach 256**3 (RGB encoding); the sparse-id path must agree with the dense one."""
    ds, categories = shapes
    records = [ds[i] for i in range(len(ds))]
    small = load("panoptic_quality", categories=categories).compute(predictions=records[::-1], references=records)
    large_maps, large_info = [], []
    for record in records:
        ids, info = panoptic_from_record(record)
        large_maps.append(np.where(ids > 0, ids * 65_521 + 40_000, 0))
        large_info.append([{**s, "id": s["id"] * 65_521 + 40_000} for s in info])
    large = load("panoptic_quality", categories=categories).compute(
        predictions=large_maps[::-1],
        references=large_maps,
        prediction_segments_info=[
            [{"id": s["id"], "category_id": s["category_id"]} for s in i] for i in large_info[::-1]
        ],
        reference_segments_info=large_info,
    )
    assert large == small and 0 < small["pq"] < 100


def test_reference_segment_left_void_by_the_prediction_is_a_miss():
    """COCO counts an unpredicted (void) reference segment as a false negative (torchmetrics skips it)."""
    ref = np.zeros((4, 4), dtype=np.int64)
    ref[:, :2] = 1
    ref[:, 2:] = 2
    pred = np.where(ref == 2, 5, 0)  # segment 1 left void, segment 2 found
    result = load("panoptic_quality", categories=CATEGORIES).compute(
        predictions=[pred],
        references=[ref],
        prediction_segments_info=[[{"id": 5, "category_id": 1}]],
        reference_segments_info=[[{"id": 1, "category_id": 0}, {"id": 2, "category_id": 1}]],
    )
    assert result["per_category"]["c0"]["fn"] == 1 and result["per_category"]["c1"]["pq"] == 100.0
    assert result["pq"] == pytest.approx(50.0)
