"""Tests for the procedural landscape generator (hf_rnn.data.landscapes)."""

from __future__ import annotations

import hashlib

import datasets
import numpy as np
import pytest
from PIL import Image

from hf_rnn.data.landscapes import (
    KEYWORDS,
    MOODS,
    OBJECTS,
    TIMES,
    build_landscape_dataset,
    mood_for,
    render_landscape,
    split_seeds,
)

N_SCENES = 300


@pytest.fixture(scope="module")
def scenes():
    out = []
    for seed in range(N_SCENES):
        img, kw = render_landscape(seed)
        out.append((np.asarray(img).astype(np.int32), kw))
    return out


def test_vocabulary_layout():
    assert KEYWORDS == TIMES + MOODS + OBJECTS
    assert len(set(KEYWORDS)) == len(KEYWORDS)
    assert all(isinstance(k, str) and k == k.lower() for k in KEYWORDS)


def test_render_is_deterministic_per_seed():
    for seed in (0, 7, 123456789):
        a, ka = render_landscape(seed)
        b, kb = render_landscape(seed)
        assert a.mode == "RGB" and a.size == (64, 64)
        assert ka == kb
        assert a.tobytes() == b.tobytes()
    assert render_landscape(1)[0].tobytes() != render_landscape(2)[0].tobytes()


def test_size_changes_resolution_not_content():
    img, kw = render_landscape(11, size=128)
    assert img.size == (128, 128)
    assert kw == render_landscape(11)[1]


@pytest.mark.parametrize("size", [16, 17, 24, 31, 37, 48, 63])
def test_every_size_from_16_renders_its_seed_s_scene(size):
    """Below 64 pixels a grid unit can round to zero pixels (stars used to become inverted boxes and crash)."""
    for seed in range(40):
        img, kw = render_landscape(seed, size=size)
        assert img.size == (size, size)
        assert kw == render_landscape(seed)[1]


def test_keywords_canonical_and_consistent(scenes):
    index = {k: i for i, k in enumerate(KEYWORDS)}
    seen = set()
    for _, kw in scenes:
        assert kw[0] in TIMES
        assert kw[1] == mood_for(kw[0], "snow" in kw)
        assert all(k in OBJECTS for k in kw[2:])
        assert [index[k] for k in kw] == sorted(index[k] for k in kw)
        assert len(set(kw)) == len(kw)
        if kw[0] == "night":
            assert "sun" not in kw
        else:
            assert "moon" not in kw and "star" not in kw
        seen.update(kw)
    assert seen == set(KEYWORDS)  # every keyword is actually produced


def _by_time(scenes, time):
    return [(a, kw) for a, kw in scenes if kw[0] == time]


def test_sky_palette_matches_time_of_day(scenes):
    """Median colour of the top rows of the sky, per time of day."""

    def top_median(a):
        return np.median(a[:4].reshape(-1, 3), axis=0)

    lum = {t: np.mean([top_median(a).mean() for a, _ in _by_time(scenes, t)]) for t in TIMES}
    assert lum["night"] < 40
    assert lum["noon"] > lum["night"] + 80
    assert lum["morning"] > lum["noon"]  # pale morning sky
    for a, kw in scenes:
        r, g, b = top_median(a)
        if kw[0] == "night":
            assert (r + g + b) / 3 < 40, kw
        elif kw[0] == "noon":
            assert b - r > 120 and (r + g + b) / 3 > 100, kw  # saturated bright blue
        elif kw[0] == "evening":
            assert r - b > 80, kw  # red/orange
        else:
            assert b > r and (r + g + b) / 3 > 160, kw  # pale blue


def test_snow_means_white_ground(scenes):
    for a, kw in scenes:
        bottom = a[-5:].reshape(-1, 3)
        white = (bottom.min(axis=1) >= 180).mean()
        if "snow" in kw:
            assert white > 0.5, (kw, white)
        else:
            assert white < 0.02, (kw, white)


def test_noon_sun_is_drawn(scenes):
    for a, kw in _by_time(scenes, "noon"):
        sky = a[:25]
        sunlike = ((sky[..., 0] > 200) & (sky[..., 1] > 200) & (sky[..., 2] < 215)).sum()
        if "sun" in kw:
            assert sunlike >= 50, (kw, sunlike)
        else:
            assert sunlike == 0, (kw, sunlike)


def test_night_moon_and_stars_are_drawn(scenes):
    for a, kw in _by_time(scenes, "night"):
        if "snow" in kw:  # snow caps are also bright
            continue
        bright = (a[:25].min(axis=2) > 180).sum()
        if "moon" in kw:
            assert bright >= 50, (kw, bright)
        elif "star" in kw:
            assert bright > 0, (kw, bright)
        else:
            assert bright == 0, (kw, bright)


def test_daytime_water_is_blue(scenes):
    for a, kw in scenes:
        if kw[0] not in ("morning", "noon"):
            continue
        below = a[40:]
        blue = (
            (below[..., 0] < 90) & (below[..., 2] > below[..., 0] + 80) & (below[..., 2] > below[..., 1] + 40)
        ).sum()
        if "water" in kw:
            assert blue >= 100, (kw, blue)
        else:
            assert blue < 10, (kw, blue)


def test_split_seeds_disjoint():
    tr, va, te = (set(split_seeds(s, 1000, seed=3)) for s in ("train", "validation", "test"))
    assert len(tr) == 1000 and not (tr & va) and not (tr & te) and not (va & te)
    # a split's seeds do not depend on the other splits' sizes
    assert split_seeds("test", 5, seed=3) == sorted(te)[:5]
    with pytest.raises(ValueError):
        split_seeds("dev", 3)


def test_build_dataset_columns_features_and_splits():
    dd = build_landscape_dataset(num_train=24, num_validation=6, num_test=8, seed=1)
    assert isinstance(dd, datasets.DatasetDict)
    assert set(dd) == {"train", "validation", "test"}
    assert {k: dd[k].num_rows for k in dd} == {"train": 24, "validation": 6, "test": 8}
    feats = dd["train"].features
    assert set(feats) == {"image", "keywords"}
    assert isinstance(feats["image"], datasets.Image)
    kw_feat = feats["keywords"]
    inner = getattr(kw_feat, "feature", None)
    assert isinstance(inner, datasets.Value) and inner.dtype == "string"

    hashes = {}
    for name in dd:
        seeds = split_seeds(name, dd[name].num_rows, seed=1)
        hashes[name] = set()
        for i, row in enumerate(dd[name]):
            img = row["image"]
            assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (64, 64)
            ref_img, ref_kw = render_landscape(seeds[i])
            assert row["keywords"] == ref_kw
            assert img.tobytes() == ref_img.tobytes()  # lossless storage
            hashes[name].add(hashlib.sha1(img.tobytes()).hexdigest())
    assert not (hashes["train"] & hashes["validation"])
    assert not (hashes["train"] & hashes["test"])
    assert not (hashes["validation"] & hashes["test"])
