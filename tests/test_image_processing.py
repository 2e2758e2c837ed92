"""The captioner's image processor (conversions, errors, remote code) and the datasets' image loader."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_base import BatchFeature

from hf_rnn.captioner.image_processing_lstm_captioner import LSTMCaptionerImageProcessor, to_rgb_image
from hf_rnn.data.images import load_image


@pytest.fixture(scope="module")
def proc():
    return LSTMCaptionerImageProcessor()


@pytest.fixture(scope="module")
def rgb_image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8), "RGB")


def _reference(img: Image.Image, h=64, w=64, mean=0.5, std=0.5) -> np.ndarray:
    """Hand computation: PIL bilinear resize, /255, (x - mean) / std, CHW."""
    arr = np.asarray(img.convert("RGB").resize((w, h), Image.BILINEAR)).astype(np.float64) / 255.0
    return ((arr - mean) / std).transpose(2, 0, 1)


def _pv(proc, images, **kw):
    return proc(images, return_tensors="pt", **kw)["pixel_values"]


def test_defaults_and_base_class(proc):
    assert isinstance(proc, PilBackend)
    assert not type(proc).__name__.endswith("Pil")
    assert proc.size["height"] == 64 and proc.size["width"] == 64
    assert proc.do_resize and proc.do_rescale and proc.do_normalize and proc.do_convert_rgb
    assert proc.rescale_factor == pytest.approx(1 / 255)
    assert list(proc.image_mean) == [0.5, 0.5, 0.5] and list(proc.image_std) == [0.5, 0.5, 0.5]
    assert proc.model_input_names == ["pixel_values"]


def test_matches_hand_computation(proc, rgb_image):
    out = proc(rgb_image, return_tensors="pt")
    assert isinstance(out, BatchFeature)
    pv = out["pixel_values"]
    assert pv.shape == (1, 3, 64, 64) and pv.dtype == torch.float32
    np.testing.assert_allclose(pv[0].numpy(), _reference(rgb_image), atol=1e-5)


def test_custom_size_mean_std(rgb_image):
    p = LSTMCaptionerImageProcessor(
        size={"height": 32, "width": 48}, image_mean=[0.2, 0.4, 0.6], image_std=[0.3, 0.3, 0.3]
    )
    pv = _pv(p, rgb_image)
    assert pv.shape == (1, 3, 32, 48)
    arr = np.asarray(rgb_image.resize((48, 32), Image.BILINEAR)).astype(np.float64) / 255.0
    ref = ((arr - [0.2, 0.4, 0.6]) / [0.3, 0.3, 0.3]).transpose(2, 0, 1)
    np.testing.assert_allclose(pv[0].numpy(), ref, atol=1e-5)


def test_batches_and_input_types(proc, rgb_image):
    arr = np.asarray(rgb_image)
    ref = _reference(rgb_image)
    inputs = [
        rgb_image,
        arr,  # HWC uint8
        arr.transpose(2, 0, 1),  # CHW uint8
        arr.astype(np.float32) / 255.0,  # HWC float in [0, 1]
        torch.from_numpy(arr.transpose(2, 0, 1).copy()),  # CHW uint8 tensor
        torch.from_numpy(arr.transpose(2, 0, 1).astype(np.float32) / 255.0),  # CHW float tensor
    ]
    pv = _pv(proc, inputs)
    assert pv.shape == (len(inputs), 3, 64, 64)
    for i in range(len(inputs)):
        np.testing.assert_allclose(pv[i].numpy(), ref, atol=1e-5, err_msg=f"input {i}")
    # 4-D batch and no return_tensors
    out = proc(np.stack([arr, arr]))
    assert len(out["pixel_values"]) == 2
    np.testing.assert_allclose(out["pixel_values"][1], ref, atol=1e-5)


def test_file_paths(proc, rgb_image, tmp_path):
    path = tmp_path / "img.png"
    rgb_image.save(path)
    pv = _pv(proc, [str(path), path])
    assert pv.shape == (2, 3, 64, 64)
    np.testing.assert_allclose(pv[0].numpy(), _reference(rgb_image), atol=1e-5)
    np.testing.assert_allclose(pv[1].numpy(), pv[0].numpy())
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.tobytes() == rgb_image.tobytes()


def _mode_images(base: Image.Image) -> dict[str, Image.Image]:
    rgba = base.convert("RGBA")
    p_img = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    p_img.info["transparency"] = 0
    grey = np.asarray(base.convert("L"))
    return {
        "L": base.convert("L"),
        "LA": base.convert("LA"),
        "RGBA": rgba,
        "P": p_img,
        "CMYK": base.convert("CMYK"),
        "I;16": Image.fromarray(grey.astype(np.uint16) * 257),
        "I": base.convert("I"),
        "F": base.convert("F"),
        "1": base.convert("1"),
    }


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "I", "F", "1"])
def test_mode_conversion(proc, rgb_image, mode):
    img = _mode_images(rgb_image)[mode]
    assert img.mode == mode
    pv = _pv(proc, img)
    assert pv.shape == (1, 3, 64, 64)
    assert torch.isfinite(pv).all()
    assert pv.min() >= -1.0 - 1e-6 and pv.max() <= 1.0 + 1e-6


def test_sixteen_bit_is_scaled_like_eight_bit(proc, rgb_image):
    imgs = _mode_images(rgb_image)
    np.testing.assert_allclose(_pv(proc, imgs["I;16"]).numpy(), _pv(proc, imgs["L"]).numpy(), atol=1e-6)
    # a uint16 array behaves the same way
    grey16 = np.asarray(rgb_image.convert("L")).astype(np.uint16) * 257
    np.testing.assert_allclose(_pv(proc, grey16).numpy(), _pv(proc, imgs["L"]).numpy(), atol=1e-6)


def test_transparent_pixels_become_white(proc):
    arr = np.zeros((8, 8, 4), dtype=np.uint8)
    arr[..., 0] = 200  # red, but fully transparent
    rgba = Image.fromarray(arr, "RGBA")
    assert np.all(np.asarray(to_rgb_image(rgba)) == 255)
    pv = _pv(proc, rgba)
    np.testing.assert_allclose(pv.numpy(), 1.0, atol=1e-6)  # white -> (1 - 0.5) / 0.5
    # palette image whose transparent index is red
    p_img = Image.new("P", (8, 8), 0)
    p_img.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    p_img.info["transparency"] = 0
    assert np.all(np.asarray(to_rgb_image(p_img)) == 255)
    # LA with transparent black
    la = Image.fromarray(np.zeros((8, 8, 2), dtype=np.uint8), "LA")
    assert np.all(np.asarray(to_rgb_image(la)) == 255)


def test_tiny_and_huge_images(proc):
    pv = _pv(proc, Image.new("RGB", (1, 1), (255, 0, 0)))
    assert pv.shape == (1, 3, 64, 64)
    np.testing.assert_allclose(pv[0, 0].numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(pv[0, 1].numpy(), -1.0, atol=1e-6)

    big = np.zeros((4000, 6000, 3), dtype=np.uint8)
    big[:, :3000] = (255, 0, 0)
    big[:, 3000:] = (0, 0, 255)
    pv = _pv(proc, Image.fromarray(big))
    assert pv.shape == (1, 3, 64, 64) and torch.isfinite(pv).all()
    assert pv[0, 0, :, :16].mean() > 0.9 and pv[0, 2, :, -16:].mean() > 0.9


def test_large_jpeg_file_is_close_to_direct_resize(proc, rgb_image, tmp_path):
    path = tmp_path / "large.jpg"
    rgb_image.resize((2400, 1800), Image.BILINEAR).save(path, quality=92)
    pv = _pv(proc, path)[0].numpy()
    with Image.open(path) as im:
        ref = _reference(im.convert("RGB"))
    assert np.abs(pv - ref).mean() < 0.02


def _truncated(tmp_path, fmt, ext):
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    data = buf.getvalue()
    path = tmp_path / f"truncated.{ext}"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("kind", ["png", "jpeg", "random", "missing", "empty"])
def test_bad_files_raise_value_error_naming_file(proc, tmp_path, kind):
    if kind == "png":
        path = _truncated(tmp_path, "PNG", "png")
    elif kind == "jpeg":
        path = _truncated(tmp_path, "JPEG", "jpg")
    elif kind == "random":
        path = tmp_path / "noise.png"
        path.write_bytes(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "empty":
        path = tmp_path / "empty.jpg"
        path.write_bytes(b"")
    else:
        path = tmp_path / "does_not_exist.png"
    with pytest.raises(ValueError, match="Could not read image") as err:
        proc(str(path), return_tensors="pt")
    assert path.name in str(err.value)
    with pytest.raises(ValueError) as err:
        load_image(path)
    assert path.name in str(err.value)


@pytest.mark.parametrize("shape", [(5, 6, 7), (0, 8, 3), (8,), (2, 2, 2, 2, 2), (3, 0, 4)])
def test_impossible_array_shapes(proc, shape):
    with pytest.raises(ValueError) as err:
        proc(np.zeros(shape, dtype=np.uint8), return_tensors="pt")
    assert str(shape) in str(err.value)


def test_non_finite_and_bad_types(proc):
    arr = np.zeros((8, 8, 3), dtype=np.float32)
    arr[0, 0, 0] = np.nan
    with pytest.raises(ValueError):
        proc(arr)
    with pytest.raises(ValueError):
        proc(12345)


def test_animated_gif_uses_first_frame(proc, tmp_path):
    rng = np.random.default_rng(3)
    frames = [Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).convert("P") for _ in range(3)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as im:
        assert im.n_frames == 3
        frame0 = im.convert("RGB")  # frame 0 on its own
        im.seek(2)
        pv_pil = _pv(proc, im)  # PIL input positioned on a later frame
        assert im.tell() == 2  # caller's frame position restored
    ref = _pv(proc, frame0)
    np.testing.assert_allclose(_pv(proc, path).numpy(), ref.numpy())
    np.testing.assert_allclose(pv_pil.numpy(), ref.numpy())
    assert not np.allclose(ref.numpy(), _pv(proc, frames[1].convert("RGB")).numpy())


def test_save_load_round_trip(tmp_path, rgb_image):
    p = LSTMCaptionerImageProcessor(size={"height": 40, "width": 40}, image_mean=[0.1, 0.2, 0.3])
    p.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert cfg["image_processor_type"] == "LSTMCaptionerImageProcessor"
    assert cfg["size"] == {"height": 40, "width": 40}
    q = LSTMCaptionerImageProcessor.from_pretrained(tmp_path)
    assert q.to_dict() == p.to_dict()
    inputs = [rgb_image, rgb_image.convert("LA"), np.asarray(rgb_image)]
    assert torch.equal(_pv(p, inputs), _pv(q, inputs))


def test_auto_image_processor_remote_code_round_trip(tmp_path, rgb_image, monkeypatch):
    from transformers import AutoImageProcessor

    monkeypatch.setattr(LSTMCaptionerImageProcessor, "_auto_class", "AutoImageProcessor")
    p = LSTMCaptionerImageProcessor()
    p.save_pretrained(tmp_path)
    assert (tmp_path / "image_processing_lstm_captioner.py").exists()
    cfg = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert cfg["auto_map"]["AutoImageProcessor"].endswith("LSTMCaptionerImageProcessor")
    q = AutoImageProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(q).__name__ == "LSTMCaptionerImageProcessor"
    assert torch.equal(_pv(p, rgb_image), _pv(q, rgb_image))


def test_module_is_self_contained():
    import hf_rnn.captioner.image_processing_lstm_captioner as mod

    src = Path(mod.__file__).read_text(encoding="utf-8")
    # No package imports (only "# Copied from hf_rnn..." marks may name it): the file is shipped as remote code.
    for line in src.splitlines():
        stripped = line.strip()
        if stripped.startswith(("import ", "from ")):
            root = stripped.split()[1].split(".")[0]
            assert root in {"__future__", "contextlib", "os", "typing", "numpy", "PIL", "torch", "transformers"}, line
    assert os.path.basename(mod.__file__) == "image_processing_lstm_captioner.py"


@pytest.mark.parametrize(
    "mode,ext", [("RGBA", "png"), ("LA", "png"), ("I;16", "png"), ("P", "gif"), ("CMYK", "jpg"), ("L", "tiff")]
)
def test_dataset_loader_keeps_the_stored_mode_and_the_processor_converts(proc, rgb_image, tmp_path, mode, ext):
    """Training reads files with `hf_rnn.data.images.load_image`, inference gives the processor a path: one pixel
    path for both, whatever the file holds."""
    path = tmp_path / f"image.{ext}"
    _mode_images(rgb_image)[mode].save(path)
    loaded = load_image(path)
    with Image.open(path) as stored:
        assert loaded.mode == stored.mode
    assert torch.equal(_pv(proc, loaded), _pv(proc, path))
    assert torch.equal(_pv(proc, loaded), _pv(proc, to_rgb_image(loaded)))


def test_dataset_loader_names_an_opened_image_that_fails_to_decode(tmp_path):
    path = _truncated(tmp_path, "PNG", "png")
    opened = Image.open(io.BytesIO(path.read_bytes()))
    opened.filename = "from-a-dataset.png"
    with pytest.raises(ValueError, match="Could not read image 'from-a-dataset.png'"):
        load_image(opened)
