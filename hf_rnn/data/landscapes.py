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
from dataclasses import dataclass

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


@dataclass
class _Scene:
    """What a seed puts in the picture, drawn before any pixel (the order of the draws is part of the format)."""

    time: str
    snow: bool
    mountain: bool
    water: bool
    trees: int
    houses: int
    clouds: bool
    sun: bool
    moon: bool
    stars: bool
    horizon: int

    @classmethod
    def draw(cls, rng: random.Random) -> _Scene:
        time = TIMES[rng.randrange(4)]
        night = time == "night"
        snow = rng.random() < _P_SNOW
        mountain = rng.random() < _P_MOUNTAIN
        water = rng.random() < _P_WATER
        trees = rng.randint(1, 3) if rng.random() < _P_TREE else 0
        houses = rng.randint(1, 2) if rng.random() < _P_HOUSE else 0
        clouds = rng.random() < (_P_CLOUD if not night else _P_CLOUD * 0.6)
        sun = (not night) and rng.random() < _P_SUN
        moon = night and rng.random() < _P_MOON
        stars = night and rng.random() < _P_STARS
        return cls(time, snow, mountain, water, trees, houses, clouds, sun, moon, stars, rng.randint(40, 45))

    @property
    def night(self) -> bool:
        return self.time == "night"


class _Canvas:
    """The picture being drawn: scene coordinates on a 64-unit grid, scaled to `size` pixels."""

    def __init__(self, image: Image.Image, sky: np.ndarray, horizon: int):
        self.image, self.sky, self.size = image, sky, image.size[0]
        self.draw = ImageDraw.Draw(image)
        self.scale = self.size / 64.0
        self.hpx = self.S(horizon)

    def S(self, v: float) -> int:
        return int(round(v * self.scale))

    def box(self, x0: float, y0: float, x1: float, y1: float) -> list[int]:
        return [self.S(x0), self.S(y0), self.S(x1), self.S(y1)]


def render_landscape(seed: int, size: int = 64) -> tuple[Image.Image, list[str]]:
    """Render the landscape for ``seed`` as an RGB ``size`` x ``size`` image with its keywords.

    The result is a pure function of ``(seed, size)``; the scene content (and therefore the
    keywords) depends only on ``seed``.
    """
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    rng = random.Random(int(seed))
    scene = _Scene.draw(rng)
    canvas = _sky_and_ground(rng, scene, size)
    present: set[str] = set()
    if scene.stars:
        _draw_stars(rng, canvas)
        present.add("star")
    body = _draw_sun_or_moon(rng, scene, canvas, present)
    if scene.clouds and _draw_clouds(rng, scene.time, canvas, body):
        present.add("cloud")
    if scene.mountain:
        _draw_mountains(rng, scene, canvas)
        present.add("mountain")
    if scene.snow:
        present.add("snow")
    water_bottom, lake = scene.horizon, None
    if scene.water:
        water_bottom, lake = _draw_water(rng, scene, canvas)
        present.add("water")
    present |= _draw_trees_and_houses(rng, scene, canvas, water_bottom, lake)
    image = _with_noise(canvas.image, seed, size)
    keywords = [scene.time, mood_for(scene.time, scene.snow)] + [k for k in OBJECTS if k in present]
    return image, keywords


def _sky_and_ground(rng: random.Random, scene: _Scene, size: int) -> _Canvas:
    """A vertical sky gradient above the horizon; snow, or a grass gradient, below it."""
    hpx = int(round(scene.horizon * size / 64.0))
    top, bottom = (np.array(_jitter(rng, c, 8), dtype=np.float32) for c in _SKY[scene.time])
    t = np.linspace(0.0, 1.0, max(hpx, 1), dtype=np.float32)[:, None]
    sky = top[None, :] * (1 - t) + bottom[None, :] * t  # (hpx, 3)
    pixels = np.empty((size, size, 3), dtype=np.float32)
    pixels[:hpx] = sky[:, None, :]
    if scene.snow:
        pixels[hpx:] = np.array(_jitter(rng, _SNOW[scene.time], 5), dtype=np.float32)
    else:
        ground_top = np.array(_tint(_jitter(rng, _GRASS, 12), scene.time), dtype=np.float32)
        if scene.night:  # keep ground distinguishable from the dark sky and tree silhouettes
            ground_top = ground_top + 22
        ground_bot = ground_top * 0.8
        tg = np.linspace(0.0, 1.0, size - hpx, dtype=np.float32)[:, None]
        pixels[hpx:] = (ground_top[None, :] * (1 - tg) + ground_bot[None, :] * tg)[:, None, :]
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    return _Canvas(image, sky, scene.horizon)


def _draw_stars(rng: random.Random, canvas: _Canvas) -> None:
    """One- or two-unit dots in the upper sky (drawn first, so the moon and mountains hide them)."""
    S = canvas.S
    for _ in range(rng.randint(12, 22)):
        x, y = rng.randint(1, 62), rng.randint(1, 20)
        color = _jitter(rng, (240, 240, 225), 12)
        side = 1 if rng.random() < 0.5 else 2
        # Below 64 pixels a unit can round to nothing: a star is then one pixel, never an inverted box.
        canvas.draw.rectangle([S(x), S(y), max(S(x), S(x + side) - 1), max(S(y), S(y + side) - 1)], fill=color)


def _draw_sun_or_moon(rng: random.Random, scene: _Scene, canvas: _Canvas, present: set[str]) -> tuple[int, int] | None:
    """The sun by day, the moon (sometimes gibbous) by night; returns its (x, radius) so clouds keep clear of it."""
    body = None
    if scene.sun:
        radius = rng.randint(6, 8) if scene.time != "noon" else rng.randint(5, 7)
        x = rng.randint(10, 54)
        y = rng.randint(9, 15) if scene.time != "evening" else rng.randint(13, 18)
        canvas.draw.ellipse(
            canvas.box(x - radius, y - radius, x + radius, y + radius), fill=_jitter(rng, _SUN[scene.time], 6)
        )
        present.add("sun")
        body = (x, radius)
    if scene.moon:
        radius = rng.randint(5, 7)
        x = rng.randint(10, 54)
        y = rng.randint(8, 14)
        canvas.draw.ellipse(
            canvas.box(x - radius, y - radius, x + radius, y + radius), fill=_jitter(rng, (236, 236, 212), 8)
        )
        if rng.random() < 0.4:  # gibbous bite, still mostly visible
            bite = x + radius * 1.3 * (1 if rng.random() < 0.5 else -1)
            sky = canvas.sky[min(canvas.S(y), canvas.hpx - 1)]
            canvas.draw.ellipse(
                canvas.box(bite - radius, y - radius, bite + radius, y + radius), fill=tuple(int(v) for v in sky)
            )
        present.add("moon")
        body = (x, radius)
    return body


_CLOUD_COLORS = {
    "morning": (246, 240, 244),
    "noon": (250, 250, 252),
    "evening": (236, 200, 196),
    "night": (92, 98, 124),
}


def _draw_clouds(rng: random.Random, time: str, canvas: _Canvas, body: tuple[int, int] | None) -> bool:
    """One to three clouds, none over the sun/moon nor over each other; returns whether any was placed."""
    used: list[tuple[int, int]] = []
    for _ in range(rng.randint(1, 3)):
        w = rng.randint(14, 22)
        h = rng.randint(6, 9)
        for _try in range(8):
            cx = rng.randint(w // 2 + 1, 63 - w // 2)
            clear_of_body = body is None or abs(cx - body[0]) >= body[1] + w // 2 + 2
            if clear_of_body and all(abs(cx - ux) >= (w + uw) // 2 + 1 for ux, uw in used):
                break
        else:
            continue
        cy = rng.randint(6, 20)
        color = _jitter(rng, _CLOUD_COLORS[time], 6)
        x0 = cx - w // 2
        # a flat bottom ellipse plus two or three puffs
        canvas.draw.ellipse(canvas.box(x0, cy, x0 + w, cy + h), fill=color)
        for _puff in range(rng.randint(2, 3)):
            pw = rng.randint(w // 3, w // 2 + 2)
            px = rng.randint(x0, x0 + w - pw)
            ph = rng.randint(h - 1, h + 3)
            canvas.draw.ellipse(canvas.box(px, cy - ph // 2, px + pw, cy + h // 2 + 1), fill=color)
        used.append((cx, w))
    return bool(used)


def _draw_mountains(rng: random.Random, scene: _Scene, canvas: _Canvas) -> None:
    """One to three triangles standing on the horizon, with white caps when the scene has snow."""
    S, hpx = canvas.S, canvas.hpx
    xs = sorted(rng.sample(range(4, 61, 4), rng.randint(1, 3)))
    snow_color = _jitter(rng, _SNOW[scene.time], 4)
    for mx in xs:
        peak = rng.randint(17, 28)
        half = rng.randint(15, 24)
        color = _tint(_jitter(rng, rng.choice(_MOUNTAIN), 10), scene.time)
        canvas.draw.polygon([(S(mx - half), hpx), (S(mx), S(peak)), (S(mx + half), hpx)], fill=color)
        if scene.snow:
            cap = 0.4  # fraction of the mountain height that is white
            cy = peak + (scene.horizon - peak) * cap
            dx = half * cap
            canvas.draw.polygon([(S(mx - dx), S(cy)), (S(mx), S(peak)), (S(mx + dx), S(cy))], fill=snow_color)


def _draw_water(rng: random.Random, scene: _Scene, canvas: _Canvas) -> tuple[int, tuple[int, int] | None]:
    """A sea band or a lake just below the horizon, with ripples; returns its lower edge and the lake's x range."""
    S, hpx, size = canvas.S, canvas.hpx, canvas.size
    horizon = scene.horizon
    wh = rng.randint(7, 11)
    color = _tint(_jitter(rng, _WATER, 12), scene.time)
    if scene.night:
        color = _clip((color[0], color[1] + 10, color[2] + 45))
    ripple = _clip(tuple(v * 1.25 + 20 for v in color))
    lake = None
    if rng.random() < 0.5:  # sea band across the whole width
        canvas.draw.rectangle([0, hpx, size - 1, S(horizon + wh)], fill=color)
        x0, x1 = 0, 63
    else:
        lw = rng.randint(30, 44)
        x0 = rng.randint(1, 63 - lw)
        x1 = x0 + lw
        canvas.draw.ellipse([S(x0), hpx, S(x1), S(horizon + wh + 2)], fill=color)
        lake = (x0, x1)
    for _ in range(rng.randint(2, 4)):
        ry = rng.randint(horizon + 2, horizon + wh - 1)
        rl = rng.randint(5, 10)
        rx = rng.randint(x0 + 6, max(x0 + 6, x1 - 6 - rl))
        canvas.draw.line([(S(rx), S(ry)), (S(rx + rl), S(ry))], fill=ripple, width=max(1, S(1)))
    return horizon + wh, lake


def _draw_trees_and_houses(
    rng: random.Random, scene: _Scene, canvas: _Canvas, water_bottom: int, lake: tuple[int, int] | None
) -> set[str]:
    """Trees and houses in distinct x slots below the water, far ones first; returns the keywords drawn."""
    trees, houses = scene.trees, scene.houses
    # Keep water visible: at most three ground objects in front of it, and for a lake prefer
    # slots that are not in front of it.
    if scene.water:
        while trees + houses > 3:
            if trees >= houses:
                trees -= 1
            else:
                houses -= 1
    slots = list(range(5))
    rng.shuffle(slots)
    if lake is not None:
        lx0, lx1 = lake
        slots.sort(key=lambda k: lx0 - 6 <= k * 12.8 + 6.4 <= lx1 + 6)  # stable: random order kept
    items = []
    for slot, kind in zip(slots[: trees + houses], ["tree"] * trees + ["house"] * houses):
        cx = int(slot * 12.8 + 6.4) + rng.randint(-2, 2)
        base = rng.randint(min(water_bottom + 6, 60), 61)
        items.append((base, cx, kind))
    items.sort()
    for base, cx, kind in items:
        (_draw_tree if kind == "tree" else _draw_house)(rng, scene.time, canvas, base, cx)
    return {kind for _, _, kind in items}


def _draw_tree(rng: random.Random, time: str, canvas: _Canvas, base: int, cx: int) -> None:
    """A trunk under a conifer triangle or a round crown."""
    S = canvas.S
    h = rng.randint(15, 22)
    w = rng.randint(9, 12)
    trunk_h = max(3, h // 4)
    canvas.draw.rectangle([S(cx - 1), S(base - trunk_h), S(cx + 1), S(base)], fill=_tint(_TRUNK, time))
    foliage = _tint(_jitter(rng, rng.choice(_FOLIAGE), 10), time)
    if time == "night":
        foliage = _clip(v * 0.5 for v in foliage)
    if rng.random() < 0.5:  # conifer
        canvas.draw.polygon(
            [(S(cx - w / 2), S(base - trunk_h)), (S(cx), S(base - h)), (S(cx + w / 2), S(base - trunk_h))],
            fill=foliage,
        )
    else:
        canvas.draw.ellipse(canvas.box(cx - w / 2, base - h, cx + w / 2, base - trunk_h + 1), fill=foliage)


def _draw_house(rng: random.Random, time: str, canvas: _Canvas, base: int, cx: int) -> None:
    """Walls, a roof, a window (lit at night) and a door."""
    S = canvas.S
    w = rng.randint(11, 14)
    bh = rng.randint(8, 11)
    rh = rng.randint(5, 7)
    wall = _tint(_jitter(rng, rng.choice(_WALLS), 10), time)
    roof = _tint(_jitter(rng, rng.choice(_ROOFS), 10), time)
    x0, x1 = cx - w // 2, cx - w // 2 + w
    canvas.draw.rectangle(canvas.box(x0, base - bh, x1, base), fill=wall)
    canvas.draw.polygon([(S(x0 - 2), S(base - bh)), (S(cx), S(base - bh - rh)), (S(x1 + 2), S(base - bh))], fill=roof)
    window = (255, 214, 90) if time == "night" else _tint((70, 90, 120), time)
    canvas.draw.rectangle(canvas.box(x0 + 2, base - bh + 2, x0 + 4, base - bh + 4), fill=window)
    canvas.draw.rectangle(canvas.box(x1 - 5, base - 5, x1 - 2, base), fill=_tint((70, 45, 30), time))


def _with_noise(image: Image.Image, seed: int, size: int) -> Image.Image:
    """A little uniform pixel noise, seeded by (seed, size) alone."""
    noise_rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF, size])
    pixels = np.asarray(image, dtype=np.int16) + noise_rng.integers(-3, 4, size=(size, size, 3), dtype=np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


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
