"""Where the pixels around and behind the glass come from: real photographs and procedural scenes.

Photographs: the bundled set (``gemseg/assets/synthesis/backgrounds``, permissively licensed, see its
``LICENSES.md``; with ``bundled_set="extended"`` also ``backgrounds_extended``, 81 more CC0 / CC BY photos) plus any
folder the user passes (``--backgrounds DIR``). With few photos, variety comes from
random crops, scales, flips and colour jitter, and from procedural scenes: rooms in perspective (textured walls,
floor, ceiling), city streets/skylines under a sky, skies with clouds, and material textures (brick, tiles,
plaster, wood, concrete, foliage).

All images are float32 RGB in ``[0, 1]``. Everything is driven by a ``numpy.random.Generator`` so a scene is a pure
function of its seed.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from gemseg.io import IMAGE_EXTENSIONS, ImageReadError, read_image

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "assets" / "synthesis" / "backgrounds"
EXTENDED_DIR = BUNDLED_DIR.parent / "backgrounds_extended"
# "core": the 29 photos every data set of the engine used until issue 16's eighth round (the default, so earlier
# runs replay unchanged); "extended": core + 81 photos (Humus cube-map faces, more Public Domain Database shots).
BUNDLED_SETS = ("core", "extended")


def bundled_dirs(bundled_set: str = "core") -> List[Path]:
    """The bundled photo folders of ``bundled_set`` (``"core"`` or ``"extended"``)."""
    if bundled_set not in BUNDLED_SETS:
        raise ValueError(f"bundled_set must be one of {', '.join(BUNDLED_SETS)}, got {bundled_set!r}")
    dirs = [BUNDLED_DIR] + ([EXTENDED_DIR] if bundled_set == "extended" else [])
    return [d for d in dirs if d.is_dir()]


def list_photos(dirs: Sequence[os.PathLike]) -> List[Path]:
    """All image files under ``dirs`` (recursively), sorted so that index → file is stable across runs."""
    out: List[Path] = []
    for d in dirs:
        d = Path(d)
        if d.is_file() and d.suffix.lower() in IMAGE_EXTENSIONS:
            out.append(d)
            continue
        if not d.is_dir():
            continue
        out.extend(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    return sorted(set(out), key=lambda p: str(p))


class PhotoBank:
    """Lazy, bounded cache of background photographs (decoded once per process, long side ≤ ``max_side``)."""

    def __init__(self, paths: Sequence[Path], max_side: int = 800, cache_size: int = 64):
        self.paths = list(paths)
        self.max_side = max_side
        self.cache_size = cache_size
        self._cache: "OrderedDict[int, np.ndarray]" = OrderedDict()

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, index: int) -> str:
        p = self.paths[index]
        bundled = p.parent in (BUNDLED_DIR, EXTENDED_DIR)  # bundled file names are unique across both folders
        return p.name if bundled else str(p)

    def get(self, index: int) -> np.ndarray:
        """Photo ``index`` as uint8 RGB; unreadable files are replaced by a mid-grey image (and never crash a run)."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        try:
            img = read_image(self.paths[index])
        except ImageReadError:
            img = np.full((480, 640, 3), 128, np.uint8)
        s = self.max_side / max(img.shape[:2])
        if s < 1.0:  # shrink huge user photos once; crops are resized to the output size anyway
            img = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                             interpolation=cv2.INTER_AREA)
        self._cache[index] = img
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return img


# ----------------------------------------------------------------------------------------------------------------
# small helpers


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Value noise in ``[0, 1]``: random values on a coarse grid (``cell`` pixels apart) upsampled bicubically."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    g = rng.random((gh, gw), dtype=np.float32)
    n = cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(n, 0.0, 1.0)


def fractal_noise(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 3) -> np.ndarray:
    """Sum of value-noise octaves, normalised to ``[0, 1]``."""
    acc = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        acc += amp * smooth_noise(rng, h, w, max(cell, 1.5))
        total += amp
        amp *= 0.5
        cell /= 2.0
    return acc / total


def random_color(rng: np.random.Generator, palette: str = "any") -> np.ndarray:
    """A plausible colour: ``neutral`` (greys/beiges), ``warm``, ``cool`` or ``any`` (moderately saturated)."""
    if palette == "neutral":
        base = rng.uniform(0.35, 0.92)
        tint = rng.normal(0, 0.03, 3) + np.array([0.02, 0.0, -0.03]) * rng.uniform(0, 2)
        return np.clip(base + tint, 0, 1).astype(np.float32)
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(30, 200), rng.integers(60, 240)]]])
    if palette == "warm":
        hsv[0, 0, 0] = rng.integers(5, 30)
    elif palette == "cool":
        hsv[0, 0, 0] = rng.integers(90, 130)
    return (cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] / 255.0).astype(np.float32)


def texture(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """A material texture ``h×w×3``: plaster, concrete, brick, tiles, wood, metal, foliage, carpet, marble."""
    if kind in ("plaster", "concrete", "carpet"):
        c = random_color(rng, "neutral")
        n = fractal_noise(rng, h, w, cell=w / rng.uniform(4, 12), octaves=4)
        amp = {"plaster": 0.05, "concrete": 0.14, "carpet": 0.12}[kind]
        fine = rng.random((h, w), dtype=np.float32) * (0.08 if kind != "plaster" else 0.03)
        return np.clip(c[None, None] * (1 - amp / 2 + amp * n[..., None] + fine[..., None]), 0, 1)
    if kind == "brick":
        mortar = random_color(rng, "neutral") * 0.9
        brick = random_color(rng, "warm") * rng.uniform(0.6, 0.9)
        bh = max(4, int(h / rng.uniform(10, 24)))
        bw = bh * rng.uniform(2.2, 3.2)
        img = np.empty((h, w, 3), np.float32)
        img[:] = mortar
        rows = int(np.ceil(h / bh))
        for r in range(rows):
            off = (bw / 2) * (r % 2)
            x = -off
            while x < w:
                xa, xb = int(max(x + 1, 0)), int(min(x + bw - 1, w))
                ya, yb = r * bh + 1, min((r + 1) * bh - 1, h)
                if xb > xa and yb > ya:
                    img[ya:yb, xa:xb] = brick * rng.uniform(0.8, 1.15)
                x += bw
        n = fractal_noise(rng, h, w, cell=bh, octaves=2)
        return np.clip(img * (0.85 + 0.3 * n[..., None]), 0, 1)
    if kind == "tiles":
        c1 = random_color(rng, "neutral")
        c2 = c1 * rng.uniform(0.6, 1.0) if rng.random() < 0.6 else random_color(rng, "any")
        t = max(6, int(w / rng.uniform(6, 16)))
        yy, xx = np.mgrid[0:h, 0:w]
        checker = ((yy // t + xx // t) % 2).astype(np.float32)[..., None]
        img = c1 * (1 - checker) + c2 * checker
        grout = ((yy % t) < 1) | ((xx % t) < 1)
        img[grout] *= 0.7
        return np.clip(img * (0.93 + 0.1 * fractal_noise(rng, h, w, t, 2)[..., None]), 0, 1)
    if kind == "wood":
        c = random_color(rng, "warm") * rng.uniform(0.5, 0.9)
        yy = np.arange(h, dtype=np.float32)[:, None]
        warp = fractal_noise(rng, h, w, cell=w / 3, octaves=2) * rng.uniform(10, 30)
        rings = 0.5 + 0.5 * np.sin((yy + warp) * rng.uniform(0.2, 0.6))
        plank = max(8, int(h / rng.uniform(4, 10)))
        seams = (np.arange(h) % plank < 1)[:, None]
        img = c[None, None] * (0.75 + 0.35 * rings[..., None])
        img = np.where(seams[..., None], img * 0.6, img)
        return np.clip(img, 0, 1).astype(np.float32)
    if kind == "metal":
        c = random_color(rng, "neutral")
        streak = cv2.resize(rng.random((h, 1), dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        grad = np.linspace(0.8, 1.15, w, dtype=np.float32)[None, :]
        return np.clip(c[None, None] * (grad * (0.9 + 0.15 * streak))[..., None], 0, 1)
    if kind == "foliage":
        g = np.array([0.18, 0.35, 0.12], np.float32) * rng.uniform(0.6, 1.3)
        n = fractal_noise(rng, h, w, cell=w / 8, octaves=5)
        img = g[None, None] * (0.4 + 1.2 * n[..., None])
        img[..., 0] += 0.1 * smooth_noise(rng, h, w, w / 5)
        return np.clip(img, 0, 1)
    if kind == "marble":
        c = random_color(rng, "neutral") * 0.3 + 0.65
        n = fractal_noise(rng, h, w, cell=w / 4, octaves=5)
        veins = np.abs(np.sin(n * rng.uniform(8, 16)))
        return np.clip(c[None, None] * (0.8 + 0.2 * veins[..., None]), 0, 1).astype(np.float32)
    raise ValueError(f"unknown texture {kind!r}")


WALL_TEXTURES = ("plaster", "plaster", "concrete", "brick", "tiles", "wood", "marble")
FLOOR_TEXTURES = ("wood", "tiles", "carpet", "concrete", "marble")


def warp_into(dst: np.ndarray, tex: np.ndarray, quad: np.ndarray, repeats: Tuple[float, float] = (1.0, 1.0)) -> None:
    """Paint texture ``tex`` (tiled ``repeats`` times) into the image quadrilateral ``quad`` of ``dst``,
    perspective-correct, in place.

    The tiled texture is warped with ``BORDER_TRANSPARENT``: pixels whose source falls outside it are left as they
    are, so no polygon mask is needed (backgrounds carry no labels, so anti-aliased edges are fine)."""
    th, tw = tex.shape[:2]
    rx, ry = max(repeats[0], 1e-3), max(repeats[1], 1e-3)
    tiled = np.tile(tex, (int(np.ceil(ry)), int(np.ceil(rx)), 1))[: max(1, int(round(th * ry))),
                                                                   : max(1, int(round(tw * rx)))]
    sh, sw = tiled.shape[:2]
    src = np.array([[0, 0], [sw, 0], [sw, sh], [0, sh]], np.float64)
    from gemseg.synthesis.geometry import homography_from_quads

    H = homography_from_quads(src, np.asarray(quad, np.float64))
    h, w = dst.shape[:2]
    cv2.warpPerspective(np.ascontiguousarray(tiled), H, (w, h), dst=dst, flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_TRANSPARENT)


# ----------------------------------------------------------------------------------------------------------------
# procedural scenes


def sky(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A sky gradient (clear, overcast or dusk) with fractal clouds (built at half resolution: it is smooth)."""
    H_, W_ = h, w
    h, w = max(4, h // 2), max(4, w // 2)
    mode = rng.choice(["clear", "overcast", "dusk"], p=[0.5, 0.3, 0.2])
    if mode == "clear":
        top, bottom = np.array([0.25, 0.45, 0.8]), np.array([0.7, 0.82, 0.95])
    elif mode == "overcast":
        g = rng.uniform(0.55, 0.85)
        top, bottom = np.array([g, g, g + 0.03]), np.array([g + 0.1, g + 0.1, g + 0.1])
    else:
        top, bottom = np.array([0.2, 0.25, 0.5]), np.array([0.95, 0.6, 0.35])
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = (top * (1 - t) + bottom * t).astype(np.float32) * np.ones((1, w, 1), np.float32)
    clouds = fractal_noise(rng, h, w, cell=w / rng.uniform(2, 6), octaves=4)
    cover = rng.uniform(0.3, 0.75)
    c = np.clip((clouds - cover) / (1 - cover) * 2.0, 0, 1)[..., None]
    out = np.clip(img * (1 - c) + c * rng.uniform(0.85, 1.0), 0, 1).astype(np.float32)
    return cv2.resize(out, (W_, H_), interpolation=cv2.INTER_LINEAR)


def city(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A street/skyline: sky, buildings of several depths with window grids, a ground strip."""
    img = sky(rng, h, w)
    horizon = int(h * rng.uniform(0.55, 0.85))
    for layer in range(3):
        shade = 0.55 + 0.2 * layer
        x = int(-rng.uniform(0, 60))
        while x < w:
            bw = int(rng.uniform(0.08, 0.3) * w)
            top = int(rng.uniform(0.05, 0.6 - 0.12 * layer) * h)
            col = random_color(rng, "neutral" if rng.random() < 0.7 else "warm") * shade
            xa, xb = max(x, 0), min(x + bw, w)
            if xb > xa:
                img[top:horizon, xa:xb] = col
                # window grid: darker or lit rectangles
                step_x = max(4, int(rng.uniform(0.015, 0.04) * w))
                step_y = max(5, int(step_x * rng.uniform(1.0, 1.8)))
                lit = rng.random() < 0.3
                for yy in range(top + step_y // 2, horizon - step_y, step_y):
                    for xx in range(xa + step_x // 3, xb - step_x // 2, step_x):
                        wc = (np.array([0.95, 0.85, 0.55]) if lit and rng.random() < 0.4
                              else col * rng.uniform(0.35, 0.7))
                        img[yy:yy + step_y // 2, xx:xx + max(1, step_x // 2)] = wc
            x += bw + int(rng.uniform(0, 0.05) * w)
    img[horizon:] = texture(rng, "concrete", h - horizon, w) * 0.7 if h > horizon else img[horizon:]
    return img


def room(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An interior in one-point perspective: back wall, side walls, floor and ceiling with material textures."""
    img = np.zeros((h, w, 3), np.float32)
    vx, vy = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.35, 0.6)
    bw, bh = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.6)
    bx0, by0 = vx - bw * rng.uniform(0.3, 0.7), vy - bh * rng.uniform(0.4, 0.6)
    bx1, by1 = bx0 + bw, by0 + bh
    far = 3.0  # image corners extend well beyond the frame so the side planes fill it
    corners = np.array([[-w * far, -h * far], [w * (1 + far), -h * far], [w * (1 + far), h * (1 + far)],
                        [-w * far, h * (1 + far)]])

    def toward(p, q, t):  # a point on the segment from back-wall corner p to outer corner q
        return p + (q - p) * t

    B = np.array([[bx0, by0], [bx1, by0], [bx1, by1], [bx0, by1]])
    O = np.array([toward(B[i], corners[i], 1.0) for i in range(4)])
    wall_kind = rng.choice(WALL_TEXTURES)
    tw = 128
    wall_tex = texture(rng, wall_kind, tw, tw)
    side_tex = wall_tex * rng.uniform(0.75, 1.0)
    floor_tex = texture(rng, rng.choice(FLOOR_TEXTURES), tw, tw)
    ceil_tex = texture(rng, "plaster", tw // 2, tw // 2) * rng.uniform(0.85, 1.05)
    rep = float(rng.uniform(1.0, 2.5))  # texture tiles across the back wall; side planes are ~4x deeper
    warp_into(img, np.clip(ceil_tex, 0, 1), np.array([O[0], O[1], B[1], B[0]]), (rep, 4 * rep))
    warp_into(img, np.clip(side_tex * 0.9, 0, 1), np.array([O[1], O[2], B[2], B[1]]), (4 * rep, rep))
    warp_into(img, np.clip(floor_tex, 0, 1), np.array([B[3], B[2], O[2], O[3]]), (rep, 4 * rep))
    warp_into(img, np.clip(side_tex, 0, 1), np.array([O[0], B[0], B[3], O[3]]), (4 * rep, rep))
    warp_into(img, wall_tex, B, (rep, rep))
    # Soft lighting falloff from a random light position.
    lx, ly = rng.uniform(0, w), rng.uniform(0, h * 0.4)
    yy, xx = np.mgrid[0:h:8, 0:w:8].astype(np.float32)
    fall = 1.0 / (1.0 + ((xx - lx) ** 2 + (yy - ly) ** 2) / (rng.uniform(0.4, 1.2) * w) ** 2)
    fall = cv2.resize(fall, (w, h), interpolation=cv2.INTER_LINEAR)
    img *= (0.55 + 0.6 * fall)[..., None]
    return np.clip(img, 0, 1)


def landscape(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Sky over trees/hills: what a window often shows."""
    img = sky(rng, h, w)
    horizon = rng.uniform(0.35, 0.7) * h
    ridge = horizon + (fractal_noise(rng, 1, w, cell=w / 6, octaves=4)[0] - 0.5) * h * 0.3
    yy = np.arange(h, dtype=np.float32)[:, None]
    ground = yy > ridge[None, :]
    fol = texture(rng, "foliage", h, w)
    img[ground] = fol[ground]
    return img


def pale_color(rng: np.random.Generator, tone: str) -> np.ndarray:
    """A surface colour: ``white`` (0.82–0.97 grey with a slight cast), ``light`` (a pale tint: cream, pale grey,
    light blue…) or ``screen`` (a near-black bezel)."""
    if tone == "screen":
        return np.full(3, rng.uniform(0.02, 0.08), np.float32)
    if tone == "white":
        return np.clip(rng.uniform(0.82, 0.97) + rng.normal(0, 0.012, 3), 0, 1).astype(np.float32)
    base = random_color(rng, "any")
    return np.clip(0.8 + 0.2 * base * rng.uniform(0.3, 0.9), 0, 1).astype(np.float32)


def flat_texture(rng: np.random.Generator, color: np.ndarray, h: int, w: int) -> np.ndarray:
    """A nearly uniform surface (painted plaster, a white wall): ``color`` with faint low-frequency unevenness."""
    n = smooth_noise(rng, h, w, w / 3.0)[..., None]
    return np.clip(color[None, None] * (0.96 + 0.08 * n), 0, 1).astype(np.float32)


def procedural_scene(rng: np.random.Generator, h: int, w: int, kind: Optional[str] = None) -> Tuple[np.ndarray, str]:
    """A random procedural scene and its kind name."""
    kind = kind or str(rng.choice(["room", "city", "landscape", "texture"], p=[0.45, 0.25, 0.15, 0.15]))
    if kind == "room":
        return room(rng, h, w), kind
    if kind == "city":
        return city(rng, h, w), kind
    if kind == "landscape":
        return landscape(rng, h, w), kind
    if kind == "sky":
        return sky(rng, h, w), kind
    tex = str(rng.choice(WALL_TEXTURES + FLOOR_TEXTURES))
    return texture(rng, tex, h, w), f"texture:{tex}"


def jitter_color(rng: np.random.Generator, img: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Random brightness/contrast/saturation/white-balance change (lighting variety for few photos).

    All four are linear in RGB, so they are folded into one 3×4 colour matrix applied by ``cv2.transform``."""
    gain = 1.0 + strength * rng.uniform(-0.25, 0.25)
    wb = 1.0 + strength * rng.normal(0, 0.05, 3)
    contrast = 1.0 + strength * rng.uniform(-0.25, 0.2)
    sat = 1.0 + strength * rng.uniform(-0.4, 0.3)
    mean = np.array(cv2.mean(img)[:3], np.float64)
    a = contrast * gain * wb  # per-channel scale
    b = (1.0 - contrast) * mean * gain * wb  # per-channel offset
    S = sat * np.eye(3) + (1.0 - sat) / 3.0 * np.ones((3, 3))  # saturation about the channel mean
    M = np.concatenate([S @ np.diag(a), (S @ b)[:, None]], axis=1).astype(np.float32)
    out = cv2.transform(img, M)
    return np.clip(out, 0, 1, out=out)


def photo_crop(rng: np.random.Generator, photo: np.ndarray, h: int, w: int) -> Tuple[np.ndarray, Dict]:
    """A random crop of ``photo`` covering ``h×w`` after scaling (zoom 1–1.8×), random flip, as float RGB."""
    ph, pw = photo.shape[:2]
    s = max(h / ph, w / pw) * rng.uniform(1.0, 1.8)
    ch, cw = min(ph, int(np.ceil(h / s))), min(pw, int(np.ceil(w / s)))
    y0 = int(rng.integers(0, ph - ch + 1))
    x0 = int(rng.integers(0, pw - cw + 1))
    crop = photo[y0:y0 + ch, x0:x0 + cw]
    interp = cv2.INTER_AREA if ch > h else cv2.INTER_LINEAR
    out = cv2.resize(crop, (w, h), interpolation=interp).astype(np.float32) * (1.0 / 255.0)
    flip = bool(rng.random() < 0.5)
    if flip:
        out = out[:, ::-1].copy()
    return out, {"crop": [x0, y0, cw, ch], "flip": flip}


SHOWS_GLASS_FILE = "shows_glass.txt"


def read_shows_glass(dirs: Sequence[os.PathLike]) -> set:
    """Names of photos that show real glass, from each folder's ``shows_glass.txt`` (one file name per line, ``#``
    comments). A photo of a street or a room almost always has windows; pasted around our synthetic glass they would
    be labelled background, teaching the model that real glass is *not* glass. Such photos are therefore used only
    where every pixel of theirs is labelled glass (the view through a pane, reflections on it)."""
    names: set = set()
    for d in dirs:
        f = Path(d) / SHOWS_GLASS_FILE
        if not f.is_file():
            continue
        for line in f.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                names.add(str((Path(d) / line).resolve()))
    return names


class BackgroundSource:
    """Samples full-frame backgrounds: photographs (when any) with probability ``photo_prob``, else procedural.

    ``glass_aware``: photos listed in a ``shows_glass.txt`` of their folder are drawn only for the ``"view"`` role
    (pixels labelled glass), never for the ``"surround"`` role (pixels labelled background).
    """

    def __init__(self, photo_dirs: Sequence[os.PathLike] = (), use_bundled: bool = True, photo_prob: float = 0.55,
                 glass_aware: bool = True, bundled_set: str = "core"):
        dirs = (bundled_dirs(bundled_set) if use_bundled else []) + [Path(d) for d in photo_dirs]
        self.bank = PhotoBank(list_photos(dirs))
        self.photo_prob = photo_prob if len(self.bank) else 0.0
        shows_glass = read_shows_glass(dirs) if glass_aware else set()
        self.shows_glass = [str(p.resolve()) in shows_glass for p in self.bank.paths]
        self.surround_indices = [i for i, g in enumerate(self.shows_glass) if not g]

    def sample(self, rng: np.random.Generator, h: int, w: int, prefer: Optional[str] = None,
               role: str = "view") -> Tuple[np.ndarray, Dict]:
        """A background and a JSON-able description of where it came from.

        ``prefer`` nudges procedural choices (``"room"`` for interiors, ``"city"``/``"landscape"`` for views).
        ``role``: ``"surround"`` for pixels that will be labelled background (photos showing glass are skipped),
        ``"view"`` for pixels seen through or reflected on glass.
        """
        if role not in ("view", "surround"):
            raise ValueError(f"role must be 'view' or 'surround', got {role!r}")
        pool = self.surround_indices if role == "surround" else range(len(self.bank))
        if self.photo_prob > 0 and len(pool) and rng.random() < self.photo_prob:
            idx = int(pool[int(rng.integers(0, len(pool)))])
            img, info = photo_crop(rng, self.bank.get(idx), h, w)
            img = jitter_color(rng, img)
            return img, {"source": "photo", "photo": self.bank.name(idx), **info}
        kind = prefer if (prefer and rng.random() < 0.6) else None
        img, name = procedural_scene(rng, h, w, kind)
        return jitter_color(rng, img, 0.5), {"source": "procedural", "scene": name}
