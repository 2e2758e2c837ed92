"""Image processor of the LSTM captioner: transformers' `PilBackend` with the captioner's size and statistics, plus
the input conversions the backend lacks.

Self-contained (standard library, numpy, PIL, torch, transformers): `save_pretrained` copies it next to a checkpoint
as remote code, so a path given to the processor is opened here (the copy of `hf_rnn.data.images.load_image`).

Per image: open -> first frame -> 8-bit RGB -> resize to `size` with `resample` -> rescale by `rescale_factor` ->
normalise with `image_mean` / `image_std` (the last three are the backend's). Output: `pixel_values` of shape
`(batch, 3, height, width)`.

Conversion to 8-bit RGB (`do_convert_rgb=True`, the default):

* PIL modes: `RGB` as is; `L`/`1`/`CMYK`/`YCbCr`/... via PIL; alpha modes (`RGBA`, `LA`, `PA`, `RGBa`, `La`) and
  palette/grey/RGB images with a `transparency` entry are composited onto a **white** background; 16-bit modes
  (`I;16*`) are divided by 257; `I` (32-bit int) and `F` (float) follow the value rules for arrays below.
* Multi-frame images (animated GIF/PNG/WebP, multi-page TIFF): only the **first frame** is used.
* Arrays / tensors: 2-D `(H, W)` or 3-D with 1, 2, 3 or 4 channels either last (HWC) or first (CHW). When both ends
  could be channels, torch tensors are read as CHW and numpy arrays as HWC (override with `input_data_format`).
  4-D inputs are batches. `bool` -> {0, 255}; `uint8` as is; `uint16` -> `/257`; other integers: values <= 255 are
  8-bit, <= 65535 are 16-bit (`/257`), larger ranges are min-max scaled; floats in [0, 1] are multiplied by 255,
  other floats are clipped to [0, 255]; NaN/inf raise `ValueError`. Everything goes through 8-bit RGB, so float
  inputs are quantised to 1/255.
* `str` / `os.PathLike` inputs are opened with EXIF orientation applied; missing, unreadable, corrupt or truncated
  files raise `ValueError("Could not read image '<path>': ...")`. `http(s)://` strings are fetched by the backend.

With `do_convert_rgb=False` inputs must already be 8-bit 3-channel RGB, otherwise `ValueError`.
"""

import contextlib
import os
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import ChannelDimension, PILImageResampling

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_CHANNEL_COUNTS = (1, 2, 3, 4)
_ARRAY_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


class LSTMCaptionerImageProcessor(PilBackend):
    """
    PIL/numpy image processor of the LSTM captioner (no torchvision needed): 64x64, bilinear, scaled to [-1, 1].

    Accepts a PIL image, numpy array, torch tensor, file path or URL, or (nested) lists of them; returns a
    `BatchFeature` with `pixel_values` (B, 3, H, W) (`return_tensors="pt"` / `"np"` to stack). The conversion rules
    are in the module docstring.
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

    def _prepare_images_structure(self, images: Any, expected_ndims: int = 3) -> list[Any]:
        """One flat list of single images, files opened (the backend's version drops 2-D arrays, names no shape)."""
        flat = _flatten_images(images)
        if not flat:
            raise ValueError("No images were given to the image processor.")
        return [self.fetch_images(image) if isinstance(image, (str, os.PathLike)) else image for image in flat]

    def fetch_images(self, image_url_or_urls: Any) -> Any:
        """Local files are opened with `load_image` (errors name the file); URLs are left to the backend."""
        if isinstance(image_url_or_urls, (list, tuple)):
            return [self.fetch_images(item) for item in image_url_or_urls]
        if isinstance(image_url_or_urls, str) and image_url_or_urls.startswith(("http://", "https://")):
            try:
                return super().fetch_images(image_url_or_urls)
            except Exception as error:
                raise ValueError(
                    f"Could not read image {image_url_or_urls!r}: {type(error).__name__}: {error}"
                ) from error
        if isinstance(image_url_or_urls, (str, os.PathLike)):
            return load_image(image_url_or_urls)
        return super().fetch_images(image_url_or_urls)

    def process_image(
        self, image: Any, do_convert_rgb: bool | None = None, input_data_format: Any = None, **kwargs
    ) -> np.ndarray:
        """One PIL image, array or tensor -> the uint8 (3, H, W) RGB array the backend resizes and normalises."""
        if isinstance(image, Image.Image):
            image = load_image(image)
            if do_convert_rgb is not False:
                image = to_rgb_image(image)
            elif image.mode != "RGB":
                raise ValueError(
                    f"Image mode {image.mode!r} is not RGB and do_convert_rgb=False; "
                    "enable do_convert_rgb or convert the image first."
                )
            return np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1))
        if isinstance(image, (np.ndarray, torch.Tensor)):
            if do_convert_rgb is False:
                return _check_rgb_array(image, input_data_format)
            rgb = _array_to_rgb(image, input_data_format)
            return np.ascontiguousarray(np.asarray(rgb).transpose(2, 0, 1))
        raise ValueError(
            f"Unsupported image input of type {type(image).__name__}; expected a PIL image, numpy array, torch tensor "
            "or file path."
        )


# Copied from hf_rnn.data.images.load_image
def load_image(source: str | os.PathLike | Image.Image) -> Image.Image:
    """
    Open an image file, or finish loading an image PIL opened lazily (e.g. from a dataset's bytes).

    Args:
        source: a file path, or a PIL image; an opened image is named in errors by its `filename`.

    Returns:
        The first frame (animated GIF/PNG/WebP, multi-page TIFF), pixels decoded, in its stored mode; a file also
        gets its EXIF orientation applied.

    Raises:
        ValueError: `Could not read image '<name>': <reason>` for a missing, unreadable, corrupt or truncated file.
    """
    if isinstance(source, Image.Image):
        name = getattr(source, "filename", "") or f"<PIL.Image mode={source.mode} size={source.size}>"
        try:
            return _first_frame(source)
        except Exception as error:
            raise ValueError(f"Could not read image {name!r}: {type(error).__name__}: {error}") from error
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"Expected an image file path or a PIL image, got {type(source).__name__}.")
    try:
        with Image.open(source) as image:
            # exif_transpose returns a new image, so the result outlives the closed file.
            return ImageOps.exif_transpose(_first_frame(image))
    except Exception as error:
        raise ValueError(f"Could not read image {os.fspath(source)!r}: {type(error).__name__}: {error}") from error


# Copied from hf_rnn.data.images._first_frame
def _first_frame(image: Image.Image) -> Image.Image:
    """Frame 0 of `image`, decoded; the caller's frame position is left as it was."""
    if getattr(image, "n_frames", 1) > 1:
        current = image.tell()
        try:
            image.seek(0)
            image.load()
            return image.copy()
        finally:
            with contextlib.suppress(Exception):
                image.seek(current)
    image.load()
    return image


def to_rgb_image(image: Image.Image) -> Image.Image:
    """A decoded PIL image of any common mode as 8-bit RGB (transparent pixels on white); RGB comes back as is."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in _ALPHA_MODES or ("transparency" in image.info and mode in ("P", "L", "RGB")):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    if mode == "1":
        return image.convert("L").convert("RGB")
    # PIL would clip these to 8 bits instead of scaling them.
    if mode.startswith("I;16"):
        return Image.fromarray(_int_to_uint8(np.asarray(image), sixteen_bit=True), "L").convert("RGB")
    if mode == "I":
        return Image.fromarray(_int_to_uint8(np.asarray(image)), "L").convert("RGB")
    if mode == "F":
        return Image.fromarray(_float_to_uint8(np.asarray(image)), "L").convert("RGB")
    try:
        return image.convert("RGB")
    except Exception as error:  # e.g. LAB/HSV without a colour-management path
        raise ValueError(f"Cannot convert image mode {mode!r} to RGB: {error}") from error


def _int_to_uint8(array: np.ndarray, sixteen_bit: bool = False) -> np.ndarray:
    if sixteen_bit:
        return np.round(array.astype(np.float32) / 257.0).clip(0, 255).astype(np.uint8)
    array = array.astype(np.int64)
    low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
    if low >= 0 and high <= 255:
        return array.astype(np.uint8)
    if low >= 0 and high <= 65535:
        return np.round(array / 257.0).clip(0, 255).astype(np.uint8)
    # Unknown range: min-max scale.
    return np.round((array - low) * (255.0 / max(high - low, 1))).clip(0, 255).astype(np.uint8)


def _float_to_uint8(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError("Image array contains NaN or infinite values.")
    if array.size and array.min() >= 0.0 and array.max() <= 1.0:
        array = array * 255.0
    return np.round(array).clip(0, 255).astype(np.uint8)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return _int_to_uint8(array, sixteen_bit=True)
    if np.issubdtype(array.dtype, np.integer):
        return _int_to_uint8(array)
    if np.issubdtype(array.dtype, np.floating):
        return _float_to_uint8(array)
    raise ValueError(f"Unsupported image array dtype {array.dtype}.")


def _as_numpy(image: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        return (image.float() if image.dtype in (torch.bfloat16, torch.float16) else image).numpy()
    return np.asarray(image)


def _channels_first(shape: tuple[int, ...], is_torch: bool, input_data_format: Any, counts: tuple[int, ...]) -> bool:
    """Where the channels of a 3-D array are: explicit format, else the end that can hold them (torch: CHW first)."""
    first, last = shape[0] in counts, shape[-1] in counts
    if input_data_format is not None:
        fmt = ChannelDimension(input_data_format)
        if not (first if fmt == ChannelDimension.FIRST else last):
            raise ValueError(f"Invalid image array shape {shape} for {fmt.value} input.")
        return fmt == ChannelDimension.FIRST
    if not (first or last):
        raise ValueError(
            f"Invalid image array shape {shape}: cannot find a channel dimension with {counts} channels at the start "
            "or the end."
        )
    return first and (is_torch or not last)


def _array_to_rgb(image: np.ndarray | torch.Tensor, input_data_format: Any = None) -> Image.Image:
    shape = tuple(image.shape)
    array = _as_numpy(image)
    if array.ndim not in (2, 3) or array.size == 0:
        raise ValueError(
            f"Invalid image array shape {shape}: expected (H, W), (H, W, C) or (C, H, W) with C in {_CHANNEL_COUNTS} "
            "and non-zero sizes."
        )
    if array.ndim == 2:
        array = array[:, :, None]
    elif _channels_first(shape, isinstance(image, torch.Tensor), input_data_format, _CHANNEL_COUNTS):
        array = np.moveaxis(array, 0, -1)
    array = np.ascontiguousarray(_to_uint8(array))
    channels = array.shape[-1]
    return to_rgb_image(Image.fromarray(array[:, :, 0] if channels == 1 else array, _ARRAY_MODES[channels]))


def _check_rgb_array(image: np.ndarray | torch.Tensor, input_data_format: Any) -> np.ndarray:
    """`do_convert_rgb=False`: only 3-channel arrays, returned channels-first."""
    shape = tuple(image.shape)
    array = _as_numpy(image)
    if array.ndim != 3 or array.size == 0 or 3 not in (shape[0], shape[-1]):
        raise ValueError(
            f"Invalid image array shape {shape}: with do_convert_rgb=False inputs must be 3-channel RGB (H, W, 3) or "
            "(3, H, W)."
        )
    if not _channels_first(shape, isinstance(image, torch.Tensor), input_data_format, (3,)):
        array = np.moveaxis(array, -1, 0)
    return np.ascontiguousarray(_to_uint8(array))


def _flatten_images(images: Any) -> list[Any]:
    """(Nested) lists and 4-D batches -> a flat list of single images."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, (np.ndarray, torch.Tensor)):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, (list, tuple)):
        return [single for item in images for single in _flatten_images(item)]
    raise ValueError(
        f"Unsupported image input of type {type(images).__name__}; expected a PIL image, numpy array, torch tensor, "
        "file path, or a list of those."
    )


__all__ = ["LSTMCaptionerImageProcessor", "to_rgb_image"]
