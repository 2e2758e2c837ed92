"""Procedural landscape images with keyword labels (the image side of the captioner task).

Every scene is a deterministic function of an integer seed. A scene has:

* a time of day (``morning``, ``noon``, ``evening``, ``night``) that sets the sky palette
  (morning: pale blue fading to pink; noon: saturated bright blue; evening: red to orange;
  night: dark navy) and tints every other object;
* a mood keyword derived deterministically from the scene (see :func:`mood_for`):
  ``cold`` if the scene has snow, otherwise morning -> ``calm``, noon -> ``bright``,
  evening -> ``warm``, night -> ``cold``;
* optional objects, each drawn large enough to be visible at 64x64: ``sun`` (day only),
  ``moon`` and ``star`` (night only), ``cloud``, ``mountain``, ``snow`` (white ground
  plus white caps on any mountains), ``water`` (a lake or a sea band just below the horizon),
  ``tree`` and ``house``.

Labels are keyword lists in the canonical order of :data:`KEYWORDS`: the time keyword, then
the mood keyword, then the object keywords present, e.g. ``["evening", "warm", "sun",
"mountain", "tree"]``. An object keyword is emitted only if the object was actually drawn
(e.g. a cloud that could not be placed without hiding the sun is skipped, and so is its
keyword).

Drawing uses integer coordinates on a 64-unit grid scaled by ``size / 64``, then adds a
little uniform pixel noise; everything is seeded from ``seed`` so results are reproducible
across runs and machines (``random.Random`` + ``numpy.random.default_rng``).
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "KEYWORDS",
    "TIMES",
    "MOODS",
    "OBJECTS",
    "mood_for",
    "render_landscape",
    "split_seeds",
    "build_landscape_dataset",
]

TIMES: tuple[str, ...] = ("morning", "noon", "evening", "night")
MOODS: tuple[str, ...] = ("calm", "bright", "warm", "cold")
OBJECTS: tuple[str, ...] = (
    "sun",
    "moon",
    "star",
    "cloud",
    "mountain",
    "snow",
    "water",
    "tree",
    "house",
)
#: Full keyword vocabulary in canonical order (labels always follow this order).
KEYWORDS: tuple[str, ...] = TIMES + MOODS + OBJECTS

_KEYWORD_INDEX = {k: i for i, k in enumerate(KEYWORDS)}

# Object probabilities (independent draws; some objects depend on the time of day).
_P_SUN = 0.85  # day scenes only
_P_MOON = 0.8  # night scenes only
_P_STARS = 0.75  # night scenes only
_P_CLOUD = 0.45
_P_MOUNTAIN = 0.5
_P_SNOW = 0.25
_P_WATER = 0.4
_P_TREE = 0.5
_P_HOUSE = 0.35

# (top, bottom) sky colours per time of day.
_SKY = {
    "morning": ((150, 190, 232), (250, 198, 200)),
    "noon": ((35, 115, 235), (125, 188, 250)),
    "evening": ((190, 60, 55), (255, 160, 60)),
    "night": ((4, 8, 30), (22, 32, 72)),
}
_SUN = {
    "morning": (255, 212, 120),
    "noon": (255, 248, 170),
    "evening": (255, 110, 30),
}
_SNOW = {
    "morning": (238, 240, 250),
    "noon": (250, 250, 255),
    "evening": (255, 232, 218),
    "night": (196, 206, 230),
}
_GRASS = (78, 160, 64)
_MOUNTAIN = ((112, 116, 140), (120, 110, 100), (95, 110, 125))
_WATER = (40, 110, 200)
_TRUNK = (96, 62, 32)
_FOLIAGE = ((34, 112, 44), (50, 128, 36), (24, 92, 56))
_WALLS = ((205, 180, 140), (180, 95, 70), (200, 190, 160), (150, 120, 95))
_ROOFS = ((150, 40, 30), (95, 60, 50), (120, 30, 60))


def mood_for(time_of_day: str, snow: bool) -> str:
    """Deterministic mood keyword: snow -> cold, else calm/bright/warm/cold by time of day."""
    if snow:
        return "cold"
    return {"morning": "calm", "noon": "bright", "evening": "warm", "night": "cold"}[time_of_day]


def _clip(c) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, round(v)))) for v in c)


def _tint(color, time_of_day: str) -> tuple[int, int, int]:
    """Apply the light of the time of day to an object colour."""
    r, g, b = color
    if time_of_day == "morning":
        return _clip((r * 0.95 + 10, g * 0.93 + 5, b * 0.95 + 10))
    if time_of_day == "evening":
        return _clip((r * 0.8 + 40, g * 0.62 + 8, b * 0.55))
    if time_of_day == "night":
        return _clip((r * 0.32 + 6, g * 0.36 + 8, b * 0.45 + 18))
    return _clip(color)


def _jitter(rng: random.Random, color, amount: int = 10) -> tuple[int, int, int]:
    return _clip(c + rng.randint(-amount, amount) for c in color)


def render_landscape(seed: int, size: int = 64) -> tuple[Image.Image, list[str]]:
    """Render the landscape for ``seed`` as an RGB ``size`` x ``size`` image with its keywords.

    The result is a pure function of ``(seed, size)``; the scene content (and therefore the
    keywords) depends only on ``seed``.
    """
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    rng = random.Random(int(seed))
    s = size / 64.0

    def S(v: float) -> int:  # 64-unit grid -> pixels
        return int(round(v * s))

    time = TIMES[rng.randrange(4)]
    night = time == "night"
    has_snow = rng.random() < _P_SNOW
    has_mountain = rng.random() < _P_MOUNTAIN
    has_water = rng.random() < _P_WATER
    n_trees = rng.randint(1, 3) if rng.random() < _P_TREE else 0
    n_houses = rng.randint(1, 2) if rng.random() < _P_HOUSE else 0
    want_clouds = rng.random() < (_P_CLOUD if not night else _P_CLOUD * 0.6)
    has_sun = (not night) and rng.random() < _P_SUN
    has_moon = night and rng.random() < _P_MOON
    has_stars = night and rng.random() < _P_STARS
    present: set[str] = set()

    horizon = rng.randint(40, 45)
    hpx = S(horizon)

    # --- sky + ground as arrays -------------------------------------------------------
    top, bottom = (np.array(_jitter(rng, c, 8), dtype=np.float32) for c in _SKY[time])
    t = np.linspace(0.0, 1.0, max(hpx, 1), dtype=np.float32)[:, None]
    sky = top[None, :] * (1 - t) + bottom[None, :] * t  # (hpx, 3)
    canvas = np.empty((size, size, 3), dtype=np.float32)
    canvas[:hpx] = sky[:, None, :]
    if has_snow:
        ground = np.array(_jitter(rng, _SNOW[time], 5), dtype=np.float32)
        canvas[hpx:] = ground
    else:
        ground_top = np.array(_tint(_jitter(rng, _GRASS, 12), time), dtype=np.float32)
        if night:  # keep ground distinguishable from the dark sky and tree silhouettes
            ground_top = ground_top + 22
        ground_bot = ground_top * 0.8
        tg = np.linspace(0.0, 1.0, size - hpx, dtype=np.float32)[:, None]
        canvas[hpx:] = (ground_top[None, :] * (1 - tg) + ground_bot[None, :] * tg)[:, None, :]
    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)

    # --- stars (before moon/mountains so those occlude them) ---------------------------
    if has_stars:
        for _ in range(rng.randint(12, 22)):
            x, y = rng.randint(1, 62), rng.randint(1, 20)
            c = _jitter(rng, (240, 240, 225), 12)
            if rng.random() < 0.5:
                draw.rectangle([S(x), S(y), S(x + 1) - 1, S(y + 1) - 1], fill=c)
            else:
                draw.rectangle([S(x), S(y), S(x + 2) - 1, S(y + 2) - 1], fill=c)
        present.add("star")

    # --- sun / moon ------------------------------------------------------------------
    body_x = body_r = None
    if has_sun:
        body_r = rng.randint(6, 8) if time != "noon" else rng.randint(5, 7)
        body_x = rng.randint(10, 54)
        y = rng.randint(9, 15) if time != "evening" else rng.randint(13, 18)
        draw.ellipse(
            [S(body_x - body_r), S(y - body_r), S(body_x + body_r), S(y + body_r)],
            fill=_jitter(rng, _SUN[time], 6),
        )
        present.add("sun")
    if has_moon:
        body_r = rng.randint(5, 7)
        body_x = rng.randint(10, 54)
        y = rng.randint(8, 14)
        draw.ellipse(
            [S(body_x - body_r), S(y - body_r), S(body_x + body_r), S(y + body_r)],
            fill=_jitter(rng, (236, 236, 212), 8),
        )
        if rng.random() < 0.4:  # gibbous bite, still mostly visible
            off = body_r * 1.3 * (1 if rng.random() < 0.5 else -1)
            bx = body_x + off
            draw.ellipse(
                [S(bx - body_r), S(y - body_r), S(bx + body_r), S(y + body_r)],
                fill=tuple(int(v) for v in sky[min(S(y), hpx - 1)]),
            )
        present.add("moon")

    # --- clouds (kept clear of the sun/moon) ------------------------------------------
    if want_clouds:
        n_clouds = rng.randint(1, 3)
        placed = 0
        used: list[tuple[int, int]] = []
        for _ in range(n_clouds):
            w = rng.randint(14, 22)
            h = rng.randint(6, 9)
            ok = False
            for _try in range(8):
                cx = rng.randint(w // 2 + 1, 63 - w // 2)
                if body_x is not None and abs(cx - body_x) < body_r + w // 2 + 2:
                    continue
                if any(abs(cx - ux) < (w + uw) // 2 + 1 for ux, uw in used):
                    continue
                ok = True
                break
            if not ok:
                continue
            cy = rng.randint(6, 20)
            base = {
                "morning": (246, 240, 244),
                "noon": (250, 250, 252),
                "evening": (236, 200, 196),
                "night": (92, 98, 124),
            }[time]
            col = _jitter(rng, base, 6)
            x0 = cx - w // 2
            # a flat bottom ellipse plus two or three puffs
            draw.ellipse([S(x0), S(cy), S(x0 + w), S(cy + h)], fill=col)
            for _p in range(rng.randint(2, 3)):
                pw = rng.randint(w // 3, w // 2 + 2)
                px = rng.randint(x0, x0 + w - pw)
                ph = rng.randint(h - 1, h + 3)
                draw.ellipse([S(px), S(cy - ph // 2), S(px + pw), S(cy + h // 2 + 1)], fill=col)
            used.append((cx, w))
            placed += 1
        if placed:
            present.add("cloud")

    # --- mountains ----------------------------------------------------------------------
    if has_mountain:
        n_m = rng.randint(1, 3)
        xs = sorted(rng.sample(range(4, 61, 4), n_m))
        snow_col = _jitter(rng, _SNOW[time], 4)
        for mx in xs:
            peak = rng.randint(17, 28)
            half = rng.randint(15, 24)
            col = _tint(_jitter(rng, rng.choice(_MOUNTAIN), 10), time)
            draw.polygon([(S(mx - half), hpx), (S(mx), S(peak)), (S(mx + half), hpx)], fill=col)
            if has_snow:
                cap = 0.4  # fraction of the mountain height that is white
                cy = peak + (horizon - peak) * cap
                dx = half * cap
                draw.polygon([(S(mx - dx), S(cy)), (S(mx), S(peak)), (S(mx + dx), S(cy))], fill=snow_col)
        present.add("mountain")
    if has_snow:
        present.add("snow")

    # --- water -------------------------------------------------------------------------
    water_bottom = horizon
    lake_range = None
    if has_water:
        wh = rng.randint(7, 11)
        wcol = _tint(_jitter(rng, _WATER, 12), time)
        if night:
            wcol = _clip((wcol[0], wcol[1] + 10, wcol[2] + 45))
        ripple = _clip(tuple(v * 1.25 + 20 for v in wcol))
        if rng.random() < 0.5:  # sea band across the whole width
            draw.rectangle([0, hpx, size - 1, S(horizon + wh)], fill=wcol)
            x0, x1 = 0, 63
        else:  # lake
            lw = rng.randint(30, 44)
            x0 = rng.randint(1, 63 - lw)
            x1 = x0 + lw
            draw.ellipse([S(x0), hpx, S(x1), S(horizon + wh + 2)], fill=wcol)
            lake_range = (x0, x1)
        for _ in range(rng.randint(2, 4)):
            ry = rng.randint(horizon + 2, horizon + wh - 1)
            rl = rng.randint(5, 10)
            rx = rng.randint(x0 + 6, max(x0 + 6, x1 - 6 - rl))
            draw.line([(S(rx), S(ry)), (S(rx + rl), S(ry))], fill=ripple, width=max(1, S(1)))
        water_bottom = horizon + wh
        present.add("water")

    # --- trees and houses on the ground (distinct x slots, far ones first) -------------
    # Keep water visible: at most three ground objects in front of it, and for a lake prefer
    # slots that are not in front of it.
    if has_water:
        while n_trees + n_houses > 3:
            if n_trees >= n_houses:
                n_trees -= 1
            else:
                n_houses -= 1
    slots = list(range(5))
    rng.shuffle(slots)
    if lake_range is not None:
        lx0, lx1 = lake_range
        slots.sort(key=lambda k: lx0 - 6 <= k * 12.8 + 6.4 <= lx1 + 6)  # stable: random order kept
    slots = slots[: n_trees + n_houses]
    kinds = ["tree"] * n_trees + ["house"] * n_houses
    items = []
    for slot, kind in zip(slots, kinds):
        cx = int(slot * 12.8 + 6.4) + rng.randint(-2, 2)
        base = rng.randint(min(water_bottom + 6, 60), 61)
        items.append((base, cx, kind))
    items.sort()
    for base, cx, kind in items:
        if kind == "tree":
            h = rng.randint(15, 22)
            w = rng.randint(9, 12)
            trunk_h = max(3, h // 4)
            draw.rectangle([S(cx - 1), S(base - trunk_h), S(cx + 1), S(base)], fill=_tint(_TRUNK, time))
            fol = _tint(_jitter(rng, rng.choice(_FOLIAGE), 10), time)
            if night:
                fol = _clip(v * 0.5 for v in fol)
            if rng.random() < 0.5:  # conifer
                draw.polygon(
                    [(S(cx - w / 2), S(base - trunk_h)), (S(cx), S(base - h)), (S(cx + w / 2), S(base - trunk_h))],
                    fill=fol,
                )
            else:  # round crown
                draw.ellipse([S(cx - w / 2), S(base - h), S(cx + w / 2), S(base - trunk_h + 1)], fill=fol)
            present.add("tree")
        else:
            w = rng.randint(11, 14)
            bh = rng.randint(8, 11)
            rh = rng.randint(5, 7)
            wall = _tint(_jitter(rng, rng.choice(_WALLS), 10), time)
            roof = _tint(_jitter(rng, rng.choice(_ROOFS), 10), time)
            x0, x1 = cx - w // 2, cx - w // 2 + w
            draw.rectangle([S(x0), S(base - bh), S(x1), S(base)], fill=wall)
            draw.polygon([(S(x0 - 2), S(base - bh)), (S(cx), S(base - bh - rh)), (S(x1 + 2), S(base - bh))], fill=roof)
            win = (255, 214, 90) if night else _tint((70, 90, 120), time)
            draw.rectangle([S(x0 + 2), S(base - bh + 2), S(x0 + 4), S(base - bh + 4)], fill=win)
            draw.rectangle([S(x1 - 5), S(base - 5), S(x1 - 2), S(base)], fill=_tint((70, 45, 30), time))
            present.add("house")

    # --- pixel noise ---------------------------------------------------------------------
    nrng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF, size])
    arr = np.asarray(img, dtype=np.int16) + nrng.integers(-3, 4, size=(size, size, 3), dtype=np.int16)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")

    keywords = [time, mood_for(time, has_snow)] + [k for k in OBJECTS if k in present]
    return img, keywords


_SPLIT_OFFSETS = {"train": 0, "validation": 100_000_000, "test": 200_000_000}


def split_seeds(split: str, n: int, seed: int = 0) -> list[int]:
    """Scene seeds used for ``split`` by :func:`build_landscape_dataset`.

    Splits use disjoint seed ranges (offsets of 1e8 within a 1e9 block per dataset ``seed``),
    and each split's seeds do not depend on the other splits' sizes.
    """
    if split not in _SPLIT_OFFSETS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_SPLIT_OFFSETS)}")
    if not 0 <= n <= 100_000_000:
        raise ValueError(f"split size must be in [0, 1e8], got {n}")
    base = int(seed) * 1_000_000_000 + _SPLIT_OFFSETS[split]
    return list(range(base, base + n))


def build_landscape_dataset(
    num_train: int = 4000,
    num_validation: int = 200,
    num_test: int = 400,
    size: int = 64,
    seed: int = 0,
):
    """Build a ``datasets.DatasetDict`` with ``train``/``validation``/``test`` splits.

    Columns: ``image`` (``datasets.Image()``) and ``keywords`` (list of strings in the
    canonical :data:`KEYWORDS` order). Split seeds come from :func:`split_seeds` and are
    disjoint.
    """
    import datasets

    features = datasets.Features({"image": datasets.Image(), "keywords": datasets.List(datasets.Value("string"))})
    splits = {}
    for name, n in (("train", num_train), ("validation", num_validation), ("test", num_test)):
        images, keywords = [], []
        for s in split_seeds(name, n, seed):
            img, kw = render_landscape(s, size=size)
            # Encode once ourselves with fast (lossless) PNG settings; datasets' default
            # encoder uses a slower compression level.
            buf = io.BytesIO()
            img.save(buf, format="PNG", compress_level=1)
            images.append({"bytes": buf.getvalue(), "path": None})
            keywords.append(kw)
        splits[name] = datasets.Dataset.from_dict({"image": images, "keywords": keywords}, features=features)
    return datasets.DatasetDict(splits)
