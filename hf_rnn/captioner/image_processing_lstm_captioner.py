"""Image processor for the LSTM image-to-keywords captioner.

This module is self-contained (it imports only the standard library, numpy, PIL, torch and
transformers) so it can be copied next to a checkpoint as remote code.

Pipeline (per image): load / convert to 8-bit RGB -> (optional cheap pre-shrink of very large
images) -> resize to ``size`` with ``resample`` -> rescale by ``rescale_factor`` -> normalise
with ``image_mean`` / ``image_std``. Output: ``BatchFeature`` with ``pixel_values`` of shape
``(batch, 3, height, width)``.

Input conversion rules (``do_convert_rgb=True``, the default):

* PIL modes: ``RGB`` as is; ``L``/``1``/``CMYK``/``YCbCr``/... via PIL; alpha modes
  (``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La``) and palette/grey/RGB images with a
  ``transparency`` entry are alpha-composited onto a **white** background; 16-bit modes
  (``I;16*``) are divided by 257; ``I`` (32-bit int) and ``F`` (float) use the value-based
  rules for arrays below.
* Multi-frame images (animated GIF/PNG/WebP, multi-page TIFF): only the **first frame** is used.
* Arrays / tensors: 2-D ``(H, W)`` or 3-D with 1, 2, 3 or 4 channels either last (HWC) or
  first (CHW). When both ends could be channels, torch tensors are read as CHW and numpy arrays
  as HWC (override with ``input_data_format``). 4-D inputs are batches. ``bool`` -> {0, 255};
  ``uint8`` as is; ``uint16`` -> ``/257``; other integers: values <= 255 are 8-bit, <= 65535
  are 16-bit (``/257``), larger ranges are min-max scaled; floats in [0, 1] are multiplied by
  255, other floats are clipped to [0, 255]; NaN/inf raise ``ValueError``. Everything goes
  through 8-bit RGB, so float inputs are quantised to 1/255.
* ``str`` / ``os.PathLike`` inputs are opened with :func:`load_image` (EXIF orientation applied);
  unreadable, missing or corrupt/truncated files raise ``ValueError("Could not read image
  '<path>': ...")``. ``http(s)://`` strings are delegated to ``transformers.image_utils.load_image``.
* Very large images (at least 8x the target size on both sides) are first shrunk with
  ``Image.reduce`` (JPEG files additionally use ``draft`` while decoding) to no less than 4x the
  target, then resized normally; this keeps memory and time bounded and changes the result only
  marginally.

With ``do_convert_rgb=False`` no conversion is done and inputs must already be 3-channel RGB
(8-bit), otherwise a ``ValueError`` is raised.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import ChannelDimension, PILImageResampling

try:  # torch is optional for this module
    import torch
except ImportError:  # pragma: no cover
    torch = None

__all__ = ["LSTMCaptionerImageProcessor", "load_image", "to_rgb_image"]
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_CHANNEL_COUNTS = (1, 2, 3, 4)
_ARRAY_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


# ---------------------------------------------------------------------------------------------
# conversion helpers
# ---------------------------------------------------------------------------------------------
def _int_to_uint8(arr: np.ndarray, sixteen_bit: bool = False) -> np.ndarray:
    if sixteen_bit:
        return np.round(arr.astype(np.float32) / 257.0).clip(0, 255).astype(np.uint8)
    arr = arr.astype(np.int64)
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if lo >= 0 and hi <= 255:
        return arr.astype(np.uint8)
    if lo >= 0 and hi <= 65535:
        return np.round(arr / 257.0).clip(0, 255).astype(np.uint8)
    # Unknown range: min-max scale.
    span = max(hi - lo, 1)
    return np.round((arr - lo) * (255.0 / span)).clip(0, 255).astype(np.uint8)


def _float_to_uint8(arr: np.ndarray) -> np.ndarray:
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError("Image array contains NaN or infinite values.")
    if arr.size and arr.min() >= 0.0 and arr.max() <= 1.0:
        arr = arr * 255.0
    return np.round(arr).clip(0, 255).astype(np.uint8)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return _int_to_uint8(arr, sixteen_bit=True)
    if np.issubdtype(arr.dtype, np.integer):
        return _int_to_uint8(arr)
    if np.issubdtype(arr.dtype, np.floating):
        return _float_to_uint8(arr)
    raise ValueError(f"Unsupported image array dtype {arr.dtype}.")


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb_image(img: Image.Image) -> Image.Image:
    """Convert a (loaded) PIL image of any common mode to 8-bit ``RGB``.

    Transparent pixels are composited onto white. May return ``img`` itself if it is already
    plain RGB.
    """
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode in _ALPHA_MODES or "transparency" in img.info and mode in ("P", "L", "RGB"):
        return _composite_on_white(img)
    if mode == "P":
        return img.convert("RGB")
    if mode == "1":
        return img.convert("L").convert("RGB")
    if mode.startswith("I;16"):
        arr = np.asarray(img)
        return Image.fromarray(_int_to_uint8(arr, sixteen_bit=True), "L").convert("RGB")
    if mode == "I":
        return Image.fromarray(_int_to_uint8(np.asarray(img)), "L").convert("RGB")
    if mode == "F":
        return Image.fromarray(_float_to_uint8(np.asarray(img)), "L").convert("RGB")
    try:
        return img.convert("RGB")
    except Exception as exc:  # e.g. LAB/HSV without a colour-management path
        raise ValueError(f"Cannot convert image mode {mode!r} to RGB: {exc}") from exc


def _first_frame(img: Image.Image) -> Image.Image:
    """Return a loaded, independent copy of frame 0 of ``img`` (restoring the caller's frame)."""
    n_frames = getattr(img, "n_frames", 1) or 1
    if n_frames > 1:
        current = img.tell()
        try:
            img.seek(0)
            img.load()
            frame = img.copy()
        finally:
            with contextlib.suppress(Exception):
                img.seek(current)
        return frame
    img.load()
    return img


def _image_name(img: Image.Image) -> str:
    return getattr(img, "filename", "") or f"<PIL.Image mode={img.mode} size={img.size}>"


def _shrink(img: Image.Image, min_hw: tuple[int, int] | None) -> Image.Image:
    """Cheaply shrink ``img`` by an integer factor while keeping >= 4x ``min_hw`` on each side."""
    if not min_hw:
        return img
    th, tw = min_hw
    if th <= 0 or tw <= 0:
        return img
    factor = min(img.width // (4 * tw), img.height // (4 * th))
    if factor < 2:
        return img
    return img.reduce(factor)


def load_image(
    path_or_image: str | os.PathLike | Image.Image,
    *,
    min_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Safely open an image file (or take a PIL image) and return it as an 8-bit RGB PIL image.

    * Multi-frame files use the first frame.
    * Files get EXIF orientation applied.
    * ``min_size=(height, width)`` lets very large images be shrunk by an integer factor (JPEG
      draft decoding / ``Image.reduce``) while keeping at least 4x that size.

    Raises:
        ValueError: ``"Could not read image '<path>': <reason>"`` for missing, unreadable,
        corrupt or truncated files (and for PIL images whose lazy load fails).
    """
    if isinstance(path_or_image, Image.Image):
        name = _image_name(path_or_image)
        try:
            img = _first_frame(path_or_image)
            if img.mode in ("RGB", "L", "CMYK", "I", "F"):
                img = _shrink(img, min_size)
            rgb = _shrink(to_rgb_image(img), min_size)
        except ValueError as exc:
            if "Could not read image" in str(exc):
                raise
            raise ValueError(f"Could not read image {name!r}: {exc}") from exc
        except Exception as exc:
            raise ValueError(f"Could not read image {name!r}: {type(exc).__name__}: {exc}") from exc
        return rgb

    if isinstance(path_or_image, bytes):
        path_or_image = path_or_image.decode()
    if not isinstance(path_or_image, (str, os.PathLike)):
        raise ValueError(f"Expected a file path or PIL image, got {type(path_or_image).__name__}.")
    path = os.fspath(path_or_image)
    if path.startswith(("http://", "https://")):
        try:
            from transformers.image_utils import load_image as _hf_load_image

            return load_image(_hf_load_image(path), min_size=min_size)
        except Exception as exc:
            raise ValueError(f"Could not read image {path!r}: {type(exc).__name__}: {exc}") from exc
    try:
        with Image.open(path) as im:
            if min_size and im.format == "JPEG":
                th, tw = min_size
                im.draft("RGB", (4 * tw, 4 * th))
            frame = _first_frame(im)
            frame = ImageOps.exif_transpose(frame)
            if frame.mode in ("RGB", "L", "CMYK", "I", "F"):
                frame = _shrink(frame, min_size)
            rgb = _shrink(to_rgb_image(frame), min_size)
            if rgb is im:
                rgb = im.copy()  # detach from the file before it is closed
    except Exception as exc:
        raise ValueError(f"Could not read image {path!r}: {type(exc).__name__}: {exc}") from exc
    return rgb


def _array_to_rgb(arr: Any, is_torch: bool, input_data_format=None) -> Image.Image:
    shape = tuple(arr.shape)
    if is_torch:
        arr = arr.detach().cpu()
        if arr.dtype in (torch.bfloat16, torch.float16):
            arr = arr.float()
        arr = arr.numpy()
    else:
        arr = np.asarray(arr)
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise ValueError(
            f"Invalid image array shape {shape}: expected (H, W), (H, W, C) or (C, H, W) with "
            f"C in {_CHANNEL_COUNTS} and non-zero sizes."
        )
    if arr.ndim == 2:
        arr = arr[:, :, None]
    else:
        fmt = None
        if input_data_format is not None:
            fmt = ChannelDimension(input_data_format)
        first_ok = arr.shape[0] in _CHANNEL_COUNTS
        last_ok = arr.shape[-1] in _CHANNEL_COUNTS
        if fmt is None:
            if first_ok and last_ok:
                fmt = ChannelDimension.FIRST if is_torch else ChannelDimension.LAST
            elif first_ok:
                fmt = ChannelDimension.FIRST
            elif last_ok:
                fmt = ChannelDimension.LAST
            else:
                raise ValueError(
                    f"Invalid image array shape {shape}: cannot find a channel dimension with "
                    f"{_CHANNEL_COUNTS} channels at the start or the end."
                )
        if fmt == ChannelDimension.FIRST:
            if not first_ok:
                raise ValueError(f"Invalid image array shape {shape} for channels-first input.")
            arr = np.moveaxis(arr, 0, -1)
        elif not last_ok:
            raise ValueError(f"Invalid image array shape {shape} for channels-last input.")
    arr = np.ascontiguousarray(_to_uint8(arr))
    channels = arr.shape[-1]
    img = Image.fromarray(arr[:, :, 0] if channels == 1 else arr, _ARRAY_MODES[channels])
    return to_rgb_image(img)


def _is_tensor(x: Any) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def _flatten_images(images: Any) -> list[Any]:
    """Flatten (nested) lists / 4-D batches into a list of single images."""
    if isinstance(images, (str, bytes, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, np.ndarray) or _is_tensor(images):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, (list, tuple)):
        out: list[Any] = []
        for item in images:
            if isinstance(item, (list, tuple)):
                out.extend(_flatten_images(item))
            elif (isinstance(item, np.ndarray) or _is_tensor(item)) and item.ndim == 4:
                out.extend(list(item))
            else:
                out.append(item)
        return out
    raise ValueError(
        f"Unsupported image input of type {type(images).__name__}; expected a PIL image, numpy "
        "array, torch tensor, file path, or a list of those."
    )


def _target_hw(size: Any, do_resize: bool) -> tuple[int, int] | None:
    if not do_resize or size is None:
        return None
    get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    if get("height") and get("width"):
        return int(get("height")), int(get("width"))
    if get("shortest_edge"):
        return int(get("shortest_edge")), int(get("shortest_edge"))
    if get("max_height") and get("max_width"):
        return int(get("max_height")), int(get("max_width"))
    return None


# ---------------------------------------------------------------------------------------------
# processor
# ---------------------------------------------------------------------------------------------
class LSTMCaptionerImageProcessor(PilBackend):
    r"""PIL/numpy image processor for the LSTM captioner (no torchvision needed).

    Args:
        do_resize (`bool`, defaults to `True`): resize to `size`.
        size (`dict`, defaults to `{"height": 64, "width": 64}`): output size.
        resample (`PILImageResampling`, defaults to `BILINEAR`): resampling filter.
        do_rescale (`bool`, defaults to `True`): multiply by `rescale_factor`.
        rescale_factor (`float`, defaults to `1/255`).
        do_normalize (`bool`, defaults to `True`): `(x - image_mean) / image_std`.
        image_mean (`list[float]`, defaults to `[0.5, 0.5, 0.5]`).
        image_std (`list[float]`, defaults to `[0.5, 0.5, 0.5]`).
        do_convert_rgb (`bool`, defaults to `True`): convert every input to 8-bit RGB (see the
            module docstring for the exact rules).

    Calling the processor accepts a PIL image, numpy array, torch tensor, file path, or (nested)
    lists of them, and returns a `BatchFeature` with `pixel_values` `(B, 3, H, W)`
    (`return_tensors="pt"` / `"np"` to stack).
    """

    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BILINEAR
    size = {"height": 64, "width": 64}
    do_resize = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = [0.5, 0.5, 0.5]
    image_std = [0.5, 0.5, 0.5]
    do_convert_rgb = True

    def __init__(
        self,
        do_resize: bool | None = None,
        size: dict[str, int] | None = None,
        resample: PILImageResampling | int | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: float | list[float] | None = None,
        image_std: float | list[float] | None = None,
        do_convert_rgb: bool | None = None,
        **kwargs,
    ):
        explicit = {
            "do_resize": do_resize,
            "size": size,
            "resample": resample,
            "do_rescale": do_rescale,
            "rescale_factor": rescale_factor,
            "do_normalize": do_normalize,
            "image_mean": image_mean,
            "image_std": image_std,
            "do_convert_rgb": do_convert_rgb,
        }
        # Only forward values that were given: the mixin would otherwise set them to None
        # before the class defaults are resolved.
        kwargs.update({k: v for k, v in explicit.items() if v is not None})
        super().__init__(**kwargs)

    def _to_rgb_array(self, image: Any, do_convert_rgb: bool, min_hw, input_data_format) -> np.ndarray:
        """One raw input -> uint8 CHW RGB array."""
        if isinstance(image, (str, bytes, os.PathLike)):
            pil = load_image(image, min_size=min_hw)
        elif isinstance(image, Image.Image):
            pil = load_image(image, min_size=min_hw) if do_convert_rgb else _first_frame(image)
        elif isinstance(image, np.ndarray) or _is_tensor(image):
            if do_convert_rgb:
                pil = _shrink(_array_to_rgb(image, _is_tensor(image), input_data_format), min_hw)
            else:
                arr = image.detach().cpu().numpy() if _is_tensor(image) else np.asarray(image)
                return self._check_rgb_array(arr, input_data_format, _is_tensor(image))
        else:
            raise ValueError(
                f"Unsupported image input of type {type(image).__name__}; expected a PIL image, "
                "numpy array, torch tensor or file path."
            )
        if pil.mode != "RGB":
            raise ValueError(
                f"Image mode {pil.mode!r} is not RGB and do_convert_rgb=False; "
                "enable do_convert_rgb or convert the image first."
            )
        return np.ascontiguousarray(np.asarray(pil).transpose(2, 0, 1))

    @staticmethod
    def _check_rgb_array(arr: np.ndarray, input_data_format, is_torch: bool) -> np.ndarray:
        if arr.ndim != 3 or arr.size == 0 or (arr.shape[0] != 3 and arr.shape[-1] != 3):
            raise ValueError(
                f"Invalid image array shape {tuple(arr.shape)}: with do_convert_rgb=False inputs "
                "must be 3-channel RGB (H, W, 3) or (3, H, W)."
            )
        fmt = ChannelDimension(input_data_format) if input_data_format is not None else None
        if fmt is None:
            if arr.shape[0] == 3 and arr.shape[-1] == 3:
                fmt = ChannelDimension.FIRST if is_torch else ChannelDimension.LAST
            else:
                fmt = ChannelDimension.FIRST if arr.shape[0] == 3 else ChannelDimension.LAST
        if fmt == ChannelDimension.LAST:
            arr = np.moveaxis(arr, -1, 0)
        return np.ascontiguousarray(_to_uint8(arr))

    def _prepare_image_like_inputs(
        self,
        images: Any,
        *args,
        expected_ndims: int = 3,
        do_convert_rgb: bool | None = None,
        input_data_format: str | ChannelDimension | None = None,
        do_resize: bool | None = None,
        size: Any = None,
        **kwargs,
    ) -> list[np.ndarray]:
        items = _flatten_images(images)
        if not items:
            raise ValueError("No images were given to the image processor.")
        min_hw = _target_hw(size, bool(do_resize))
        do_convert_rgb = True if do_convert_rgb is None else do_convert_rgb
        return [self._to_rgb_array(item, do_convert_rgb, min_hw, input_data_format) for item in items]

    def process_image(self, image: Any, do_convert_rgb: bool | None = None, input_data_format=None, **kwargs):
        """Convert one raw input to the uint8 channels-first RGB array used by `_preprocess`."""
        do_convert_rgb = True if do_convert_rgb is None else do_convert_rgb
        return self._to_rgb_array(image, do_convert_rgb, None, input_data_format)
