"""Reading image files for the captioner's datasets.

`load_image` gives the first frame of a file, upright, decoded and detached from the file, in the mode it was stored
in. Converting that mode to the model's 8-bit RGB is the image processor's job (alpha on white, 16-bit scaled, ...;
see `hf_rnn.captioner.image_processing_lstm_captioner`), so training and inference see the same pixels whatever the
file holds. A file that cannot be read is a `ValueError` naming it, raised before any tensor is built.
"""

import contextlib
import os

from PIL import Image, ImageOps


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


__all__ = ["load_image"]
