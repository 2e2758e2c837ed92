"""Image + keyword-list datasets for the captioner.

Sources: the procedural landscapes (`landscapes`), an image folder whose `metadata.jsonl`
has a `keywords` list per file (the `datasets` imagefolder layout), or any Hub dataset with
an image column and a keyword-list column. Images are checked up front so a broken file is
reported by name before training starts, not as a tensor error in the middle of an epoch.
"""

import io
import logging
from pathlib import Path

from datasets import DatasetDict, Image, load_dataset
from PIL import Image as PILImage

from .images import load_image
from .landscapes import build_landscape_dataset

logger = logging.getLogger(__name__)

LANDSCAPES = "landscapes"


def load_captioning_data(
    dataset_name: str | None,
    dataset_config_name: str | None = None,
    data_dir: str | None = None,
    splits: dict[str, str | None] | None = None,
    image_column: str = "image",
    keywords_column: str = "keywords",
    landscape_sizes: tuple[int, int, int] = (4000, 200, 400),
    image_size: int = 64,
    seed: int = 0,
) -> DatasetDict:
    """A DatasetDict with columns `image` (undecoded: path/bytes) and `keywords` (list of str)."""
    splits = splits or {"train": "train", "validation": "validation", "test": "test"}
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise FileNotFoundError(f"Image folder {data_dir} does not exist.")
        raw = load_dataset("imagefolder", data_dir=data_dir)
    elif dataset_name in (None, LANDSCAPES):
        return build_landscape_dataset(*landscape_sizes, size=image_size, seed=seed).cast_column(
            "image", Image(decode=False)
        )
    else:
        raw = load_dataset(dataset_name, dataset_config_name)
    result = {}
    for ours, theirs in splits.items():
        if theirs and theirs in raw:
            result[ours] = raw[theirs]
    if not result:
        raise ValueError(f"None of the splits {list(splits.values())} found; the data has {list(raw)}.")
    for split, dataset in result.items():
        missing = [c for c in (image_column, keywords_column) if c not in dataset.column_names]
        if missing:
            raise ValueError(
                f"Split {split!r} has columns {dataset.column_names}; missing {missing}. An image folder needs a "
                f"metadata.jsonl with a `{keywords_column}` list per `file_name`."
            )
        dataset = dataset.select_columns([image_column, keywords_column])
        if image_column != "image":
            dataset = dataset.rename_column(image_column, "image")
        if keywords_column != "keywords":
            dataset = dataset.rename_column(keywords_column, "keywords")
        result[split] = dataset.cast_column("image", Image(decode=False))
    return DatasetDict(result)


def check_images(data: DatasetDict, num_proc: int | None = None) -> None:
    """Open every image once; raise one error listing the unreadable files (by name) if there are any."""
    for split, dataset in data.items():

        def probe(batch: dict) -> dict:
            problems = []
            for image in batch["image"]:
                try:
                    load_image(_as_loadable(image))
                except ValueError as error:
                    problems.append(str(error))
            return {"problem": problems}

        checked = dataset.map(
            probe,
            batched=True,
            remove_columns=dataset.column_names,
            num_proc=num_proc,
            desc=f"Checking {split} images",
        )
        problems = checked["problem"] if len(checked) else []
        if problems:
            listed = "\n  ".join(problems[:10])
            more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
            raise ValueError(f"{len(problems)} unreadable image(s) in the {split} split:\n  {listed}{more}")


def check_keywords(data: DatasetDict) -> list[str]:
    """All keywords in training order of first appearance; every example must have a non-empty list."""
    vocabulary: dict[str, None] = {}
    for split, dataset in data.items():
        for index, keywords in enumerate(dataset["keywords"]):
            if not isinstance(keywords, (list, tuple)) or not keywords:
                raise ValueError(f"Example {index} of the {split} split has no keyword list (got {keywords!r}).")
            if split == "train":
                vocabulary.update(dict.fromkeys(keywords))
    return list(vocabulary)


def _as_loadable(image):
    """Undecoded `datasets` images are {"path", "bytes"} dicts; `load_image` takes a path or an opened image."""
    if isinstance(image, dict):
        if image.get("bytes") is not None:
            try:
                opened = PILImage.open(io.BytesIO(image["bytes"]))
                opened.filename = image.get("path") or ""  # so load_image names the file in its errors
                return opened
            except Exception as error:
                raise ValueError(f"Could not read image {image.get('path') or '<bytes>'!r}: {error}") from error
        return image["path"]
    return image


def decode_image(image):
    """An image from the dataset as an RGB PIL image, with the file named in any error."""
    return load_image(_as_loadable(image))


__all__ = ["LANDSCAPES", "check_images", "check_keywords", "decode_image", "load_captioning_data"]
