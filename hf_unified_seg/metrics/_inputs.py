"""Conversions from user-facing inputs (numpy, torch, PIL, lists) to numpy arrays, with clear errors."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_numpy(value: Any, name: str) -> np.ndarray:
    """Any array-like (numpy, torch tensor on any device, PIL image, nested list) as a numpy array."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor without importing torch here
        return value.detach().cpu().numpy()
    if hasattr(value, "getbands"):  # PIL.Image.Image
        return np.asarray(value)
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"`{name}` must be array-like (numpy array, tensor, PIL image or list), got {type(value)}."
        ) from err


def decode_panoptic_rgb(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic PNG encoding: segment id = R + 256 * G + 256**2 * B."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def to_label_map(value: Any, name: str, *, allow_rgb: bool = False) -> np.ndarray:
    """A 2-D integer map (H, W). With ``allow_rgb``, an (H, W, 3) uint8 array / RGB image is decoded as COCO panoptic."""
    if hasattr(value, "mode") and hasattr(value, "getbands"):
        if value.mode in ("RGB", "RGBA") and allow_rgb:
            value = value.convert("RGB")
        elif value.mode not in ("L", "I", "I;16", "P", "1", "F"):
            raise ValueError(f"`{name}`: unsupported PIL image mode {value.mode!r}.")
    array = to_numpy(value, name)
    if array.ndim == 3 and allow_rgb and array.shape[-1] == 3:
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"`{name}`: an RGB panoptic PNG must hold integers, got dtype {array.dtype}.")
        return decode_panoptic_rgb(array)
    if array.ndim != 2:
        expected = "(H, W) or an (H, W, 3) COCO panoptic RGB image" if allow_rgb else "(H, W)"
        raise ValueError(f"`{name}` must have shape {expected}, got shape {tuple(array.shape)}.")
    if array.dtype == bool:
        return array.astype(np.int64)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise TypeError(f"`{name}` must hold integer labels, got non-integer floats.")
        return array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"`{name}` must hold integer labels, got dtype {array.dtype}.")
    return array.astype(np.int64, copy=False)


def to_binary_mask(value: Any, name: str) -> np.ndarray:
    """A 2-D boolean mask; accepts bool or {0, 1}-valued integer/float arrays."""
    array = to_numpy(value, name)
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D (H, W) mask, got shape {tuple(array.shape)}.")
    if array.dtype == bool:
        return array
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"`{name}` must be binary (bool or 0/1 values); threshold probabilities before passing them.")
    return array.astype(bool)


def to_masks(value: Any, name: str) -> np.ndarray:
    """A stack of binary masks (N, H, W) as bool; N may be 0."""
    array = to_numpy(value, name)
    if array.ndim != 3:
        raise ValueError(f"`{name}` must be a stack of masks with shape (N, H, W), got shape {tuple(array.shape)}.")
    if array.dtype != bool:
        if array.size and not np.isin(array, (0, 1)).all():
            raise ValueError(f"`{name}` must be binary (bool or 0/1 values).")
        array = array.astype(bool)
    return array


def to_vector(value: Any, name: str, dtype: type | np.dtype, length: int | None = None) -> np.ndarray:
    """A 1-D vector; ``length`` checks it matches a companion input."""
    array = to_numpy(value, name)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D, got shape {tuple(array.shape)}.")
    if length is not None and array.shape[0] != length:
        raise ValueError(f"`{name}` has {array.shape[0]} entries but {length} were expected.")
    wants_int = np.issubdtype(np.dtype(dtype), np.integer)
    if wants_int and array.size and not np.issubdtype(array.dtype, np.integer) and not np.all(np.mod(array, 1) == 0):
        raise TypeError(f"`{name}` must hold integers, got {array.dtype}.")
    return array.astype(dtype)


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str, index: int) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"Example {index}: `{name_a}` has shape {tuple(a.shape)} but `{name_b}` has shape {tuple(b.shape)}; "
            "they must match (resize predictions to the reference size first, e.g. with `target_sizes`)."
        )


# Label maps are stored in the metric's Arrow cache as raw bytes: nested int lists cost ~1 s per 500 maps of
# 128 x 128 to write and ~2 s to read back, bytes cost next to nothing.
PACKED_MAP_FEATURES = {"bytes": "binary", "dtype": "string", "height": "int64", "width": "int64"}


def pack_map(array: np.ndarray) -> dict[str, Any]:
    """An integer (H, W) map as ``{"bytes", "dtype", "height", "width"}``, in the smallest fitting little-endian type."""
    low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
    if low >= 0 and high < 2**8:
        dtype = "|u1"
    elif low >= 0 and high < 2**16:
        dtype = "<u2"
    elif low >= -(2**31) and high < 2**31:
        dtype = "<i4"
    else:
        dtype = "<i8"
    return {
        "bytes": np.ascontiguousarray(array, dtype=dtype).tobytes(),
        "dtype": dtype,
        "height": int(array.shape[0]),
        "width": int(array.shape[1]),
    }


def unpack_map(packed: dict[str, Any]) -> np.ndarray:
    """Inverse of ``pack_map``, as int64."""
    array = np.frombuffer(packed["bytes"], dtype=np.dtype(packed["dtype"]))
    return array.reshape(int(packed["height"]), int(packed["width"])).astype(np.int64)
