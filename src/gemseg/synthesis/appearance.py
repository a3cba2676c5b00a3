"""How glass, frames, walls and foreground objects look.

Glass pane model (per pixel, inside the pane):

    out = T(x + d(x)) · τ · tint · (1 − r(θ)) + R(x) · r(θ) + highlights + haze

* ``T`` is what lies behind the pane (the scene itself for doors/partitions/railings/display cases, another image
  for windows/façades/shop fronts), sampled at a slightly displaced position ``d`` (a smooth field of a few pixels
  plus a constant parallax offset) — the refraction of imperfect or thick glass;
* ``τ`` transmittance and ``tint`` a colour cast (clear, green float glass, blue/grey/bronze coatings);
* ``r(θ)`` a Fresnel-like reflectance: Schlick's ``r0 + (1 − r0)(1 − cos θ)^5`` with ``θ`` the true viewing angle
  from the 3-D pose, scaled per surface (coated façade glass reflects far more than a clean partition);
* ``R`` a reflected image (another scene, mirrored, blurred);
* specular highlight streaks and dirt/smudges in the pane's own (canonical) coordinates, so they follow
  perspective; edge glints on frameless panes.

Frames, mullions, walls and occluders are opaque: their pixels are labelled background whatever they cover.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from gemseg.synthesis.backgrounds import fractal_noise, random_color, smooth_noise, texture

TINTS = {
    "clear": (1.0, 1.0, 1.0),
    "green": (0.9, 1.0, 0.94),
    "blue": (0.82, 0.92, 1.0),
    "grey": (0.78, 0.8, 0.82),
    "bronze": (1.0, 0.88, 0.72),
}


@dataclass
class GlassLook:
    """Appearance parameters of one glass surface (all JSON-able via :meth:`to_json`)."""

    tint: str = "clear"
    transmittance: float = 0.9
    reflect_scale: float = 3.0  # multiplies Schlick reflectance; ~1 for clean glass, up to ~15 for mirror-coated
    r0: float = 0.04
    displace_px: float = 1.0
    displace_freq: float = 2.0
    offset_px: Tuple[float, float] = (0.0, 0.0)
    highlights: List[Tuple[float, float, float, float]] = field(default_factory=list)  # (angle, pos, width, peak)
    dirt: float = 0.0
    frost: float = 0.0  # 0 = clear, 1 = fully frosted (translucent blur)
    edge_glint: float = 0.0
    phase: Tuple[float, float] = (0.0, 0.0)

    def to_json(self) -> Dict:
        return {
            "tint": self.tint, "transmittance": round(self.transmittance, 4),
            "reflect_scale": round(self.reflect_scale, 3), "displace_px": round(self.displace_px, 3),
            "offset_px": [round(o, 3) for o in self.offset_px], "highlights": len(self.highlights),
            "dirt": round(self.dirt, 3), "frost": round(self.frost, 3), "edge_glint": round(self.edge_glint, 3),
        }


def sample_look(rng: np.random.Generator, kind: str, extent_wh: Tuple[float, float]) -> GlassLook:
    """Random glass appearance suited to a structure kind."""
    coated = kind in ("facade", "shopfront", "curtain_wall") and rng.random() < 0.7
    tint = str(rng.choice(["blue", "grey", "green", "bronze"])) if coated else str(
        rng.choice(["clear", "clear", "green", "blue", "grey"]))
    if kind == "mirror":
        reflect = 40.0
    elif coated:
        reflect = float(rng.uniform(3, 14))
    else:
        reflect = float(rng.uniform(0.8, 5))
    W, H = extent_wh
    n_hl = int(rng.choice([0, 1, 1, 2, 3]))
    hls = [(float(rng.uniform(20, 70) * rng.choice([-1, 1])), float(rng.uniform(0, 1)),
            float(rng.uniform(0.02, 0.12)), float(rng.uniform(0.08, 0.45))) for _ in range(n_hl)]
    return GlassLook(
        tint=tint,
        transmittance=float(rng.uniform(0.55, 0.85) if coated else rng.uniform(0.8, 0.97)),
        reflect_scale=reflect,
        displace_px=float(rng.uniform(0.2, 3.0)),
        displace_freq=float(rng.uniform(0.5, 4.0)) / max(W, H),
        offset_px=(float(rng.uniform(-4, 4)), float(rng.uniform(-3, 3))),
        highlights=hls,
        dirt=float(rng.uniform(0.02, 0.25) if rng.random() < 0.45 else 0.0),
        frost=float(rng.uniform(0.5, 1.0)) if (kind in ("partition", "door") and rng.random() < 0.08) else 0.0,
        edge_glint=float(rng.uniform(0.1, 0.5)) if rng.random() < 0.6 else 0.0,
        phase=(float(rng.uniform(0, 6.3)), float(rng.uniform(0, 6.3))),
    )


STEP = 4  # coarse-grid step for smooth per-pane fields


def _coords_grid(Hinv: np.ndarray, gx0: float, gy0: float, step: int, gw: int, gh: int
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """Canonical coordinates at pixel centres ``(gx0 + i·step + 0.5, gy0 + j·step + 0.5)``."""
    xs = gx0 + np.arange(gw, dtype=np.float64) * step + 0.5
    ys = gy0 + np.arange(gh, dtype=np.float64) * step + 0.5
    a = Hinv
    nu = a[0, 0] * xs[None, :] + (a[0, 1] * ys + a[0, 2])[:, None]
    nv = a[1, 0] * xs[None, :] + (a[1, 1] * ys + a[1, 2])[:, None]
    nw = a[2, 0] * xs[None, :] + (a[2, 1] * ys + a[2, 2])[:, None]
    return (nu / nw).astype(np.float32), (nv / nw).astype(np.float32)


def shade_pane(
    img: np.ndarray,
    mask: np.ndarray,
    box: Tuple[int, int, int, int],
    Hinv: np.ndarray,
    view_cos_fn,
    extent: Tuple[float, float, float, float],
    behind: np.ndarray,
    reflection: np.ndarray,
    look: GlassLook,
    dirt_field: np.ndarray,
    mirror: bool = False,
) -> None:
    """Render glass into ``img`` where ``mask`` is true (inside ``box``), in place."""
    x0, y0, x1, y1 = box
    sub = mask[y0:y1, x0:x1]
    if not sub.any():
        return
    bh, bw = y1 - y0, x1 - x0
    # Every field below (refraction displacement, Fresnel reflectance, highlight streaks) is smooth, so it is
    # evaluated on a grid STEP× coarser and upsampled: ~STEP² fewer transcendental ops per pane. Only colours use
    # the fields; which pixels are glass comes from the exact mask.
    step = STEP if min(bh, bw) >= 4 * STEP else 1
    gx0 = x0 + (step - 1) / 2.0  # coarse sample centres map back onto pixel centres under INTER_LINEAR resize
    gy0 = y0 + (step - 1) / 2.0
    gw, gh = -(-bw // step), -(-bh // step)
    u, v = _coords_grid(Hinv, gx0, gy0, step, gw, gh)
    eu0, ev0, eu1, ev1 = extent
    ew, eh = max(eu1 - eu0, 1e-6), max(ev1 - ev0, 1e-6)
    # Normalised surface coordinates (0..1 over the whole structure) for streaks shared by all its panes.
    un, vn = (u - eu0) / ew, (v - ev0) / eh

    def up(field: np.ndarray) -> np.ndarray:
        if step == 1:
            return field.astype(np.float32, copy=False)
        return cv2.resize(field.astype(np.float32, copy=False), (gw * step, gh * step),
                          interpolation=cv2.INTER_LINEAR)[:bh, :bw]

    band = np.zeros_like(u)
    for angle, pos, width, peak in look.highlights:
        a = np.deg2rad(angle)
        d = un * np.cos(a) + vn * np.sin(a)
        lo, hi = min(np.cos(a), 0) + min(np.sin(a), 0), max(np.cos(a), 0) + max(np.sin(a), 0)
        c = lo + (hi - lo) * pos
        band += peak * np.exp(-0.5 * ((d - c) / width) ** 2)

    f = look.displace_freq * 2 * np.pi
    if mirror:
        out = reflection[y0:y1, x0:x1] * np.float32(0.92)
    else:
        dx = look.displace_px * np.sin(u * f + look.phase[0]) * np.cos(v * f * 0.7 + look.phase[1]) + look.offset_px[0]
        dy = look.displace_px * np.cos(u * f * 0.8 + look.phase[1]) * np.sin(v * f + look.phase[0]) + look.offset_px[1]
        px = up(dx) + np.arange(x0, x1, dtype=np.float32)[None, :]
        py = up(dy) + np.arange(y0, y1, dtype=np.float32)[:, None]
        trans = cv2.remap(behind, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if look.frost > 0:
            k = int(3 + 2 * round(6 * look.frost))
            blurred = cv2.GaussianBlur(trans, (k * 2 + 1, k * 2 + 1), 0)
            trans = trans * (1 - look.frost) + blurred * look.frost
            trans = trans * (1 - 0.3 * look.frost) + 0.3 * look.frost * 0.85
        tint = np.asarray(TINTS[look.tint], np.float32)
        cos = view_cos_fn(u, v)
        schlick = look.r0 + (1 - look.r0) * (1.0 - cos) ** 5
        r = up(np.clip(look.reflect_scale * schlick, 0.0, 0.85))[..., None]
        out = trans * (look.transmittance * tint) * (1 - r) + reflection[y0:y1, x0:x1] * r
    if look.highlights:
        out = out + up(band)[..., None]
    if look.dirt > 0:
        dd = (look.dirt * dirt_field[y0:y1, x0:x1])[..., None]
        out = out * (1 - dd) + dd * np.float32(0.78)
    if look.edge_glint > 0:
        sub_u8 = sub.astype(np.uint8)
        edge = sub & ~cv2.erode(sub_u8, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                                borderValue=0).astype(bool)
        out[edge] = out[edge] * (1 - look.edge_glint) + look.edge_glint * np.array([0.75, 0.92, 0.85], np.float32)
    np.clip(out, 0, 1, out=out)
    np.copyto(img[y0:y1, x0:x1], out, where=sub[..., None])


def frame_color(rng: np.random.Generator) -> Tuple[np.ndarray, str]:
    """A frame material: aluminium, white/black powder coat, wood, or a random painted colour."""
    kind = str(rng.choice(["aluminium", "white", "black", "wood", "painted"], p=[0.35, 0.2, 0.2, 0.15, 0.1]))
    if kind == "aluminium":
        c = np.float32(rng.uniform(0.55, 0.8)) * np.array([1.0, 1.0, 1.03], np.float32)
    elif kind == "white":
        c = np.full(3, rng.uniform(0.82, 0.95), np.float32)
    elif kind == "black":
        c = np.full(3, rng.uniform(0.06, 0.18), np.float32)
    elif kind == "wood":
        c = random_color(rng, "warm") * np.float32(rng.uniform(0.5, 0.8))
    else:
        c = random_color(rng, "any")
    return c.astype(np.float32), kind


def _region_box(region: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    """``(y0, y1, x0, x1)``, the bounding box of a boolean H×W mask (end-exclusive), or None if it is empty."""
    ys = np.flatnonzero(region.any(axis=1))
    if len(ys) == 0:
        return None
    xs = np.flatnonzero(region.any(axis=0))
    return int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1


def paint_solid(img: np.ndarray, region: np.ndarray, color: np.ndarray, rng: np.random.Generator,
                shade: Optional[np.ndarray] = None) -> None:
    """Paint an opaque member (frame, mullion, panel) with a base colour, soft shading and a little grain."""
    box = _region_box(region)
    if box is None:
        return
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    g = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(0.9, 1.15), h, dtype=np.float32)[:, None, None]
    grain = 1.0 + 0.04 * (smooth_noise(rng, h, w, 3.0)[..., None] - 0.5)
    patch = np.clip(color[None, None] * g * grain, 0, 1)
    if shade is not None:
        patch = patch * shade[y0:y1, x0:x1, None]
    np.copyto(img[y0:y1, x0:x1], patch.astype(np.float32, copy=False), where=region[y0:y1, x0:x1, None])


INFILL_MATERIALS = ("sheeting", "pale", "panel", "board")


def infill_material(rng: np.random.Generator) -> Tuple[np.ndarray, str]:
    """Base colour and kind of an opaque cell inside a glazing grid, drawn independently of the frame colour.

    ``sheeting`` (saturated fabric or plastic covering a cell: pink, blue, orange, green…), ``pale`` (cream, pale
    tints, off-white boards), ``panel`` (grey to near-black insulated spandrel panels) or ``board`` (plywood, OSB).
    Real curtain walls are framed in one colour and filled with many others; painting infill in the frame's own
    colour would teach "a framed cell that is not frame-coloured is glass"."""
    kind = str(rng.choice(INFILL_MATERIALS, p=[0.35, 0.3, 0.2, 0.15]))
    if kind == "sheeting":
        c = np.clip(random_color(rng, "any") * np.float32(rng.uniform(0.9, 1.3)) + np.float32(0.1), 0, 1)
    elif kind == "pale":
        base = random_color(rng, "any")
        c = np.clip(0.7 + 0.3 * base * rng.uniform(0.4, 1.0), 0, 1)
    elif kind == "panel":
        c = np.clip(rng.uniform(0.1, 0.6) + rng.normal(0, 0.02, 3), 0, 1)
    else:
        c = random_color(rng, "warm") * np.float32(rng.uniform(0.7, 1.0)) + np.float32(0.1)
    return np.clip(c, 0, 1).astype(np.float32), kind


def paint_infill(img: np.ndarray, region: np.ndarray, color: np.ndarray, rng: np.random.Generator) -> None:
    """Paint an opaque infill cell: ``color`` under broad, uneven light (a backlit sheet glows unevenly, a panel
    catches a gradient), a few soft folds or seams, and fine grain; nothing seen through it."""
    box = _region_box(region)
    if box is None:
        return
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    amp = rng.uniform(0.1, 0.45)
    light = 1.0 + amp * (smooth_noise(rng, h, w, max(4.0, rng.uniform(0.3, 0.8) * max(h, w))) - 0.5)
    a = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(a) * np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
            + np.sin(a) * np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None])
    light = light * (1.0 + rng.uniform(0.0, 0.35) * ramp)
    if rng.random() < 0.5:  # folds of a sheet / seams of boards: soft darker lines across the cell
        folds = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(1, 5))):
            p0 = (int(rng.integers(0, w)), 0 if rng.random() < 0.5 else int(rng.integers(0, h)))
            p1 = (int(rng.integers(0, w)), h - 1)
            cv2.line(folds, p0, p1, 1.0, max(1, int(0.02 * max(h, w))))
        folds = cv2.GaussianBlur(folds, (0, 0), max(1.0, 0.02 * max(h, w)))
        light = light * (1.0 - rng.uniform(0.1, 0.3) * folds)
    grain = 1.0 + 0.05 * (smooth_noise(rng, h, w, 2.0) - 0.5)
    patch = np.clip(color[None, None] * (light * grain)[..., None], 0, 1).astype(np.float32)
    np.copyto(img[y0:y1, x0:x1], patch, where=region[y0:y1, x0:x1, None])


def _plane_coords32(Hinv: np.ndarray, h: int, w: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical ``u, v`` and the homogeneous ``w`` of every pixel centre, in float32 (full-image walls)."""
    a = (Hinv / np.abs(Hinv).max()).astype(np.float32)  # scale-free; keeps float32 well conditioned
    xs = np.arange(w, dtype=np.float32) + np.float32(0.5)
    ys = np.arange(h, dtype=np.float32) + np.float32(0.5)
    nw = a[2, 0] * xs[None, :] + (a[2, 1] * ys + a[2, 2])[:, None]
    safe = np.where(np.abs(nw) < 1e-12, np.float32(1e-12), nw)
    u = (a[0, 0] * xs[None, :] + (a[0, 1] * ys + a[0, 2])[:, None]) / safe
    v = (a[1, 0] * xs[None, :] + (a[1, 1] * ys + a[1, 2])[:, None]) / safe
    return u, v, nw


def paint_plane_texture(img: np.ndarray, H: np.ndarray, rect: Tuple[float, float, float, float],
                        exclude: np.ndarray, tex: np.ndarray, tex_size_units: float,
                        ref_uv: Tuple[float, float]) -> np.ndarray:
    """Paint ``tex`` on the plane with image homography ``H`` over canonical ``rect`` (minus ``exclude``), for every
    pixel whose viewing ray meets the plane in front of the camera (``ref_uv``: a canonical point known to be in
    front); returns the painted mask.

    Used for walls, which may extend past the camera's field of view (so their corners need not project)."""
    h, w = img.shape[:2]
    Hinv = np.linalg.inv(H)
    # The homogeneous coordinate of H^-1·pixel is linear in the pixel and changes sign on the plane's vanishing
    # line; the side holding ``ref_uv`` (a point known to be in front, e.g. the window's centre) is in front.
    pc = H @ np.array([ref_uv[0], ref_uv[1], 1.0])
    ref = np.sign((Hinv @ (pc / pc[2]))[2])
    u, v, nw = _plane_coords32(Hinv, h, w)
    front = (nw * np.float32(ref)) > 0
    inside = front & (u >= rect[0]) & (u <= rect[2]) & (v >= rect[1]) & (v <= rect[3]) & ~exclude
    th, tw = tex.shape[:2]
    s = np.float32(tw / tex_size_units)
    # Tiling by an explicit modulo (in place): remap's own BORDER_WRAP cannot take the huge coordinates that
    # points near the plane's horizon reach.
    u *= s
    v *= s
    np.mod(u, np.float32(tw - 1), out=u)
    np.mod(v, np.float32(th - 1), out=v)
    painted = cv2.remap(tex, u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    np.copyto(img, painted, where=inside[..., None])
    return inside


# ----------------------------------------------------------------------------------------------------------------
# foreground objects (occluders) and objects behind glass


MATERIAL_OF = {"table": "wood", "chair": "wood", "sofa": "carpet", "pole": "metal", "box": "concrete",
               "plant": "foliage", "person": "carpet"}


def draw_object(rng: np.random.Generator, h: int, w: int, anchor: Tuple[float, float], scale: float
                ) -> Tuple[np.ndarray, np.ndarray, str]:
    """A procedural object (person, plant, furniture, pole, box, lamp) standing at ``anchor`` (its base point).

    Returns ``(mask, colour image, kind)``; the mask is exact (the same pixels are painted and labelled)."""
    kind = str(rng.choice(["person", "plant", "table", "chair", "pole", "box", "sofa"]))
    m = np.zeros((h, w), np.uint8)
    col = np.zeros((h, w, 3), np.float32)
    ax, ay = anchor
    s = scale

    def fill(poly, color):
        cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
        cv2.fillPoly(col, [np.round(poly).astype(np.int32)], tuple(float(c) for c in color))

    def circle(cx, cy, r, color):
        cv2.circle(m, (int(round(cx)), int(round(cy))), max(1, int(round(r))), 1, -1)
        cv2.circle(col, (int(round(cx)), int(round(cy))), max(1, int(round(r))), tuple(float(c) for c in color), -1)

    def rect(xa, ya, xb, yb, color):
        fill(np.array([[xa, ya], [xb, ya], [xb, yb], [xa, yb]]), color)

    if kind == "person":
        cloth = random_color(rng, "any") * 0.7
        legs = random_color(rng, "neutral") * 0.4
        skin = np.array([0.8, 0.6, 0.48], np.float32) * rng.uniform(0.45, 1.05)
        H_ = s
        rect(ax - 0.09 * H_, ay - 0.48 * H_, ax - 0.01 * H_, ay, legs)
        rect(ax + 0.01 * H_, ay - 0.48 * H_, ax + 0.09 * H_, ay, legs)
        fill(np.array([[ax - 0.13 * H_, ay - 0.82 * H_], [ax + 0.13 * H_, ay - 0.82 * H_],
                       [ax + 0.11 * H_, ay - 0.45 * H_], [ax - 0.11 * H_, ay - 0.45 * H_]]), cloth)
        rect(ax - 0.17 * H_, ay - 0.8 * H_, ax - 0.12 * H_, ay - 0.5 * H_, cloth * 0.9)
        rect(ax + 0.12 * H_, ay - 0.8 * H_, ax + 0.17 * H_, ay - 0.5 * H_, cloth * 0.9)
        circle(ax, ay - 0.9 * H_, 0.075 * H_, skin)
        circle(ax, ay - 0.93 * H_, 0.07 * H_, random_color(rng, "neutral") * 0.3)
        circle(ax, ay - 0.885 * H_, 0.065 * H_, skin)
    elif kind == "plant":
        pot = random_color(rng, "warm") * 0.7
        ph = 0.25 * s
        fill(np.array([[ax - 0.12 * s, ay - ph], [ax + 0.12 * s, ay - ph], [ax + 0.09 * s, ay],
                       [ax - 0.09 * s, ay]]), pot)
        leaf = np.array([0.2, 0.42, 0.15], np.float32) * rng.uniform(0.6, 1.2)
        for _ in range(int(rng.integers(6, 14))):
            circle(ax + rng.normal(0, 0.12) * s, ay - ph - rng.uniform(0.05, 0.6) * s, rng.uniform(0.05, 0.13) * s,
                   leaf * rng.uniform(0.7, 1.3))
    elif kind == "table":
        c = random_color(rng, "warm") * 0.7 if rng.random() < 0.6 else random_color(rng, "neutral")
        tw_ = rng.uniform(0.5, 1.0) * s
        th_ = 0.45 * s
        rect(ax - tw_ / 2, ay - th_, ax + tw_ / 2, ay - th_ + 0.05 * s, c)
        rect(ax - tw_ / 2 + 0.03 * s, ay - th_, ax - tw_ / 2 + 0.07 * s, ay, c * 0.8)
        rect(ax + tw_ / 2 - 0.07 * s, ay - th_, ax + tw_ / 2 - 0.03 * s, ay, c * 0.8)
    elif kind == "chair":
        c = random_color(rng, "any") * 0.8
        rect(ax - 0.12 * s, ay - 0.3 * s, ax + 0.12 * s, ay - 0.26 * s, c)
        rect(ax + 0.09 * s, ay - 0.62 * s, ax + 0.12 * s, ay, c * 0.85)
        rect(ax - 0.12 * s, ay - 0.3 * s, ax - 0.09 * s, ay, c * 0.85)
    elif kind == "pole":
        c = random_color(rng, "neutral") * 0.8
        pw = rng.uniform(0.03, 0.08) * s
        rect(ax - pw, 0, ax + pw, ay, c)
    elif kind == "box":
        c = random_color(rng, "any") * 0.85
        bw, bh = rng.uniform(0.15, 0.5) * s, rng.uniform(0.1, 0.45) * s
        rect(ax - bw / 2, ay - bh, ax + bw / 2, ay, c)
        rect(ax - bw / 2, ay - bh, ax + bw / 2, ay - bh + 0.1 * bh, c * 1.15)
    else:  # sofa
        c = random_color(rng, "any") * 0.65
        sw = rng.uniform(0.6, 1.1) * s
        rect(ax - sw / 2, ay - 0.42 * s, ax + sw / 2, ay - 0.06 * s, c)
        rect(ax - sw / 2 - 0.05 * s, ay - 0.3 * s, ax - sw / 2 + 0.05 * s, ay, c * 0.85)
        rect(ax + sw / 2 - 0.05 * s, ay - 0.3 * s, ax + sw / 2 + 0.05 * s, ay, c * 0.85)
    mask = m.astype(bool)
    if mask.any():
        # Soft vertical shading and grain so objects are not flat stickers.
        ys = np.flatnonzero(mask.any(axis=1))
        xs = np.flatnonzero(mask.any(axis=0))
        y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
        # Top-lit vertical shading, a lit side (a light from the left or right) and a material pattern, so objects
        # read as solid things rather than flat stickers.
        bh_, bw_ = y1 - y0, x1 - x0
        shade = np.linspace(1.1, 0.75, bh_, dtype=np.float32)[:, None, None]
        side = np.linspace(1.0, rng.uniform(0.7, 1.0), bw_, dtype=np.float32)
        side = (side if rng.random() < 0.5 else side[::-1])[None, :, None]
        material = MATERIAL_OF.get(kind, "concrete")
        pattern = texture(rng, material, bh_, bw_).mean(axis=2, keepdims=True)
        pattern = pattern / max(float(pattern.mean()), 1e-3)
        col[y0:y1, x0:x1] *= shade * side * (0.6 + 0.4 * pattern)
    return mask, np.clip(col, 0, 1), kind


def scene_reflection_dim(reflection: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a switched-off screen shows: a faint, dark copy of the reflected scene (``H×W×3`` float)."""
    return reflection * np.float32(rng.uniform(0.04, 0.15))


def degrade(rng: np.random.Generator, u8: np.ndarray, prob: float) -> Tuple[np.ndarray, Dict]:
    """Camera-phone degradations on the final ``H×W×3`` uint8 image: linear motion blur and a JPEG round trip at a
    low quality (blocking, ringing) — each with probability ``prob``; colours only, never labels."""
    info: Dict = {}
    if prob > 0 and rng.random() < prob * 0.4:
        length = int(rng.integers(3, 10))
        k = np.zeros((length, length), np.float32)
        k[length // 2, :] = 1.0 / length
        ang = float(rng.uniform(0, 180))
        rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), ang, 1.0)
        k = cv2.warpAffine(k, rot, (length, length))
        k /= max(float(k.sum()), 1e-6)
        u8 = cv2.filter2D(u8, -1, k, borderType=cv2.BORDER_REFLECT)
        info["motion_blur"] = [length, round(ang, 1)]
    if prob > 0 and rng.random() < prob:
        q = int(rng.integers(30, 86))
        ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            u8 = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
            info["jpeg_quality"] = q
    return u8, info


def apply_camera(rng: np.random.Generator, img: np.ndarray, degrade_prob: float = 0.0) -> Tuple[np.ndarray, Dict]:
    """Lighting change (exposure, gamma), vignetting, optional defocus, sensor noise, then (``degrade_prob``)
    motion blur and JPEG artefacts.

    Returns the final uint8 image and the parameters. Gamma is applied on the 8-bit image through a lookup table
    (exact to the 8-bit rounding, and ~10× cheaper than a float power)."""
    h, w = img.shape[:2]
    exposure = float(rng.uniform(0.8, 1.2))
    gamma = float(rng.uniform(0.85, 1.15))
    vig = float(rng.uniform(0.0, 0.35))
    blur = float(rng.uniform(0.4, 1.4)) if rng.random() < 0.25 else 0.0
    noise = float(rng.uniform(0.0, 0.025))
    # Colour temperature of the light (warm tungsten … cool daylight/shade), as a white-balance error would leave.
    temp = float(rng.normal(0.0, 0.04))
    wb = np.array([1.0 + temp, 1.0, 1.0 - temp], np.float32)
    gain = np.float32(exposure * 255.0)
    img = img * wb
    if vig > 0.02:
        yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None] ** 2
        xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :] ** 2
        vmap = (np.float32(1.0) - np.float32(vig * 0.5) * (xx + yy)) * gain
        out = img * vmap[..., None]
    else:
        out = img * gain
    if blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    if noise > 0.002:
        # Luminance noise (one field for the three channels) plus weaker per-pixel chroma-free grain.
        out += (rng.standard_normal((h, w), dtype=np.float32) * np.float32(noise * 255.0))[..., None]
    out += np.float32(0.5)
    np.clip(out, 0, 255, out=out)
    u8 = out.astype(np.uint8)
    lut = np.clip(np.round(255.0 * (np.arange(256) / 255.0) ** gamma), 0, 255).astype(np.uint8)
    u8 = cv2.LUT(u8, lut)
    u8, deg = degrade(rng, u8, degrade_prob)
    return u8, {"exposure": round(exposure, 3), "gamma": round(gamma, 3), "white_balance": round(temp, 4),
                "vignette": round(vig, 3),
                "blur_sigma": round(blur, 3), "noise_sigma": round(noise, 4), **deg}


def dirt_field(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smudge/dirt density in ``[0, 1]``: blotchy fractal noise with a few elliptic finger/cleaning marks.

    Built at half resolution (it is smooth) and upsampled."""
    H_, W_ = h, w
    h, w = max(2, h // 2), max(2, w // 2)
    n = fractal_noise(rng, h, w, cell=w / rng.uniform(3, 10), octaves=4)
    n = np.clip((n - 0.45) * 2.5, 0, 1)
    marks = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(0, 6))):
        c = (int(rng.uniform(0, w)), int(rng.uniform(h * 0.3, h)))  # smudges sit low, where hands touch
        ax_ = (int(rng.uniform(4, 30)), int(rng.uniform(3, 15)))
        cv2.ellipse(marks, c, (max(1, ax_[0] // 2), max(1, ax_[1] // 2)), float(rng.uniform(0, 180)), 0, 360,
                    float(rng.uniform(0.3, 1.0)), -1)
    marks = cv2.GaussianBlur(marks, (0, 0), 1.5)
    field_ = np.clip(n + marks, 0, 1).astype(np.float32)
    return cv2.resize(field_, (W_, H_), interpolation=cv2.INTER_LINEAR)


def reflection_image(scene: np.ndarray, rng: np.random.Generator, size: Optional[Tuple[int, int]] = None
                     ) -> np.ndarray:
    """Turn a scene into what a glass surface reflects: mirrored, blurred, slightly brightened, resized to
    ``size = (w, h)`` (reflections are soft, so the scene may be sampled at lower resolution)."""
    refl = np.ascontiguousarray(scene[:, ::-1])
    sigma = float(rng.uniform(0.25, 2.5))
    refl = cv2.GaussianBlur(refl, (0, 0), sigma)
    if size is not None and (refl.shape[1], refl.shape[0]) != tuple(size):
        refl = cv2.resize(refl, tuple(size), interpolation=cv2.INTER_LINEAR)
    return np.clip(refl * np.float32(rng.uniform(0.9, 1.3)), 0, 1)


__all__ = ["GlassLook", "sample_look", "shade_pane", "frame_color", "paint_solid", "infill_material",
           "paint_infill", "paint_plane_texture",
           "draw_object", "apply_camera", "degrade", "scene_reflection_dim", "dirt_field", "reflection_image", "texture"]
