"""The procedural engine: random glass structures composited onto backgrounds, with exact masks.

One image = one seed. :meth:`ProceduralEngine.render` draws a scene description (camera, structure kind, surfaces,
appearance, occluders, camera effects) from ``numpy.random.default_rng(seed)`` and renders it with
:meth:`ProceduralEngine.render_scene`; tests call ``render_scene`` directly with hand-made configurations to check
the mask pixel by pixel.

Painting order (back to front), with the label map painted by the very same pixel sets:

1. background scene (label 0), objects standing *behind* glass (label 0 for now — glass in front relabels them);
2. per surface: wall around it (0), panes (glass: 1; mirrors: ``mirror_label``; open frames: 0), frame and
   mullions = the structure outline minus the panes (0), solid members: handles, rails, kick plates, spandrels (0);
3. foreground occluders (0) and opaque stickers on glass (0);
4. camera effects (exposure, vignetting, defocus, noise) — these change colours only, never labels.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from gemseg.synthesis.appearance import (
    GlassLook,
    apply_camera,
    dirt_field,
    draw_object,
    frame_color,
    infill_material,
    paint_infill,
    scene_reflection_dim,
    paint_plane_texture,
    paint_solid,
    reflection_image,
    sample_look,
    shade_pane,
)
from gemseg.synthesis.backgrounds import (
    BUNDLED_SETS,
    WALL_TEXTURES,
    BackgroundSource,
    flat_texture,
    pale_color,
    procedural_scene,
    texture,
)
from gemseg.synthesis.geometry import (
    Camera,
    PlanePose,
    Rect,
    Surface,
    apply_homography,
    convex_polygon_mask,
    grid_panes,
    polygon_bbox,
    pose_facing_camera,
    quad_of_rect,
)
from gemseg.synthesis.errors import SynthError

KINDS = ("window", "facade", "shopfront", "door", "partition", "railing", "display_case", "curtain_wall",
         "glass_wall")
# The last two are glass-dominant close-ups (real glass-scene photos are ~60 % glass; see docs/synthesis.md).
KIND_PROBS = (0.14, 0.1, 0.1, 0.13, 0.1, 0.07, 0.06, 0.17, 0.13)
PANEL_COLORS = ("white", "white", "white", "light", "screen")
MIRROR_LABELS = {"background": 0, "ignore": 255, "glass": 1}
MAX_GLASS_FRACTION = 0.9


class Glazing(NamedTuple):
    """A façade's grid of panes (sizes in metres)."""

    cols: int
    rows: int
    pane_h: float
    mullion: float
    width: float
    height: float
    panes: List[Rect]


def glazing_grid(rng: np.random.Generator, cols: Tuple[int, int], rows: Tuple[int, int], pane_w: Tuple[float, float],
                 pane_h: Tuple[float, float], mullion: Tuple[float, float], frame: Tuple[float, float]) -> Glazing:
    """A façade's grid of panes, every size drawn from its ``(low, high)`` range in this order: columns, rows, pane
    width, pane height, mullion, frame (the order fixes the images a seed gives)."""
    n_cols, n_rows = int(rng.integers(*cols)), int(rng.integers(*rows))
    pw, ph = rng.uniform(*pane_w), rng.uniform(*pane_h)
    mull = rng.uniform(*mullion)
    W, H = n_cols * (pw + mull), n_rows * (ph + mull)
    panes = grid_panes((0, 0, W, H), n_cols, n_rows, rng.uniform(*frame), mull)
    return Glazing(n_cols, n_rows, ph, mull, W, H, panes)


def spandrel_bands(panes: List[Rect], cols: int, rows: Sequence[int], width: float, band: float) -> List[Rect]:
    """Opaque bands ``band`` high across the whole façade at the top of each row in ``rows`` (floor slabs)."""
    return [(0.0, panes[r * cols][1], width, panes[r * cols][1] + band) for r in rows]


INFILL_STYLES = ("frame", "material")
# Knobs added after data sets were made whose defaults render exactly what the engine rendered before them: they
# are left out of synth_info.json at their defaults, so a run made before they existed still resumes
# (--skip-existing refuses a folder whose recorded options differ).
RECORDED_UNLESS_DEFAULT = ("infill_prob", "infill_style", "bundled_set")


@dataclass
class SynthOptions:
    """Knobs of the procedural engine (all recorded in the run's ``synth_info.json``)."""

    width: int = 640
    height: int = 480
    background_dirs: Tuple[str, ...] = ()
    bundled_backgrounds: bool = True
    # which bundled photos: "core" (29, every data set before issue 16's eighth round) or "extended" (+81)
    bundled_set: str = "core"
    photo_prob: float = 0.55
    mirror_label: str = "background"  # how mirrors (hard negatives) are labelled: background | ignore | glass
    negative_prob: float = 0.06  # images whose only structures are hard negatives (no glass at all)
    occluder_prob: float = 0.6
    kinds: Tuple[str, ...] = KINDS
    panel_prob: float = 0.35  # opaque look-alikes: white boards/doors/wall panels, switched-off screens (label 0)
    white_wall_prob: float = 0.4  # walls around glass painted flat white/pale instead of a texture
    bright_view_prob: float = 0.2  # views through glass that are blown-out/overcast (bright, flat — still glass)
    degrade_prob: float = 0.5  # JPEG re-compression and motion blur of the final image
    # Opaque cells inside glazing grids (covered, boarded, panelled): share of grids that have them, and their
    # style — "frame": curtain walls only, painted like the frame (the engine since issue 16's first round);
    # "material": curtain walls and glass walls, each cell in a material of its own (sheeting, pale boards, grey
    # panels, plywood; issue 16's sixth round, which measured worse on real photos: docs/synthesis.md).
    infill_prob: float = 0.4
    infill_style: str = "frame"
    # Photos that show real glass (listed in their folder's shows_glass.txt) only as views through/reflections on
    # glass, never as the background around it (their windows would be labelled "not glass").
    glass_aware_backgrounds: bool = True

    def __post_init__(self) -> None:
        if self.infill_style not in INFILL_STYLES:
            raise SynthError(f"infill_style must be one of {', '.join(INFILL_STYLES)}, got {self.infill_style!r}")
        if self.bundled_set not in BUNDLED_SETS:
            raise SynthError(f"bundled_set must be one of {', '.join(BUNDLED_SETS)}, got {self.bundled_set!r}")

    def to_json(self) -> Dict:
        return {"width": self.width, "height": self.height, "background_dirs": list(self.background_dirs),
                "bundled_backgrounds": self.bundled_backgrounds, "photo_prob": self.photo_prob,
                "mirror_label": self.mirror_label, "negative_prob": self.negative_prob,
                "occluder_prob": self.occluder_prob, "kinds": list(self.kinds), "panel_prob": self.panel_prob,
                "white_wall_prob": self.white_wall_prob, "bright_view_prob": self.bright_view_prob,
                "degrade_prob": self.degrade_prob, "glass_aware_backgrounds": self.glass_aware_backgrounds,
                **{f.name: getattr(self, f.name) for f in fields(self)
                   if f.name in RECORDED_UNLESS_DEFAULT and getattr(self, f.name) != f.default}}


@dataclass
class RenderedSurface:
    """A surface with everything needed to paint it (pose, appearance, materials)."""

    surface: Surface
    look: GlassLook
    frame_rgb: np.ndarray
    frame_kind: str
    wall_tex: Optional[np.ndarray] = None
    wall_tex_units: float = 2.0
    behind: Optional[np.ndarray] = None  # what this surface transmits when surface.through == "other"
    infill_rgb: List[np.ndarray] = field(default_factory=list)  # one colour per surface.infill cell


@dataclass
class Scene:
    """A full scene description: background, surfaces (back to front), occluders (back to front)."""

    camera: Camera
    background: np.ndarray
    reflection: np.ndarray
    surfaces: List[RenderedSurface]
    occluders: List[Tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (mask, rgb), in front
    behind_objects: List[Tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # painted before glass
    dirt: Optional[np.ndarray] = None
    camera_effects: bool = True


class ProceduralEngine:
    """Render synthetic glass images with exact masks. Thread-compatible, not thread-safe (photo cache)."""

    name = "procedural"

    def __init__(self, options: Optional[SynthOptions] = None):
        self.opt = options or SynthOptions()
        if self.opt.mirror_label not in MIRROR_LABELS:
            raise ValueError(f"mirror_label must be one of {sorted(MIRROR_LABELS)}")
        self.backgrounds = BackgroundSource(self.opt.background_dirs, self.opt.bundled_backgrounds,
                                            self.opt.photo_prob, self.opt.glass_aware_backgrounds,
                                            self.opt.bundled_set)

    # ------------------------------------------------------------------------------------------------------------
    # rendering a known scene

    def render_scene(self, scene: Scene, rng: Optional[np.random.Generator] = None
                     ) -> Tuple[np.ndarray, np.ndarray, Dict]:
        """Paint ``scene``; returns ``(uint8 RGB image, uint8 label map, camera-effect parameters)``."""
        rng = rng or np.random.default_rng(0)
        cam = scene.camera
        h, w = cam.height, cam.width
        img = scene.background.astype(np.float32, copy=True)
        label = np.zeros((h, w), np.uint8)
        for m, rgb in scene.behind_objects:
            img[m] = rgb[m]
        dirt = scene.dirt if scene.dirt is not None else np.zeros((h, w), np.float32)
        mirror_value = MIRROR_LABELS[self.opt.mirror_label]
        for rs in scene.surfaces:
            s = rs.surface
            H = s.pose.homography(cam)
            outer = convex_polygon_mask(apply_homography(H, quad_of_rect(s.extent)), h, w)
            # Snapshot of what is behind this structure (before its wall is painted): panes transmit it.
            behind = rs.behind if (s.through == "other" and rs.behind is not None) else img.copy()
            if s.wall is not None and rs.wall_tex is not None:
                ref = ((s.extent[0] + s.extent[2]) / 2, (s.extent[1] + s.extent[3]) / 2)
                wall = paint_plane_texture(img, H, s.wall, outer, rs.wall_tex, rs.wall_tex_units, ref)
                label[wall] = 0
            panes_union = np.zeros((h, w), bool)
            Hinv = np.linalg.inv(H)
            mirror_src = None
            if s.mirror:
                room = rs.behind if rs.behind is not None else img
                mirror_src = np.ascontiguousarray(room[:, ::-1])
            for rect in s.panes:
                quad = apply_homography(H, quad_of_rect(rect))
                pm = convex_polygon_mask(quad, h, w)
                if not pm.any():
                    continue
                panes_union |= pm
                if s.open_frame:  # empty frame / open doorway: we see straight through, no glass
                    img[pm] = behind[pm]
                    label[pm] = 0
                    continue
                box = polygon_bbox(quad, h, w)
                # A mirror shows a room, sharp and mirrored (a blurred other scene would make it look like
                # reflective glass, which is labelled glass elsewhere).
                refl = mirror_src if s.mirror else scene.reflection
                shade_pane(img, pm, box, Hinv, s.pose.view_cosine, s.extent, behind, refl, rs.look,
                           dirt, mirror=s.mirror)
                label[pm] = mirror_value if s.mirror else s.label
            if s.framed:
                frame = outer & ~panes_union
                paint_solid(img, frame, rs.frame_rgb, rng)
                label[frame] = 0
            for rect in s.solid:
                sm = convex_polygon_mask(apply_homography(H, quad_of_rect(rect)), h, w)
                paint_solid(img, sm, rs.frame_rgb * np.float32(0.9), rng)
                label[sm] = 0
            for i, rect in enumerate(s.infill):
                sm = convex_polygon_mask(apply_homography(H, quad_of_rect(rect)), h, w)
                color = rs.infill_rgb[i] if i < len(rs.infill_rgb) else rs.frame_rgb * np.float32(0.9)
                paint_infill(img, sm, color, rng)
                label[sm] = 0
        for m, rgb in scene.occluders:
            _contact_shadow(img, m)
            np.copyto(img, rgb, where=m[..., None])
            label[m] = 0
        params: Dict = {}
        if scene.camera_effects:
            out, params = apply_camera(rng, img, self.opt.degrade_prob)
            return out, label, params
        return (np.clip(img * 255.0 + 0.5, 0, 255)).astype(np.uint8), label, params

    # ------------------------------------------------------------------------------------------------------------
    # sampling a random scene

    def render(self, seed: int, index: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, Dict]:
        """Render the image of ``seed``: ``(uint8 RGB H×W×3, uint8 labels H×W, JSON-able parameters)``.

        ``index`` (the image's position in a run) is accepted for interface parity with the diffusion engine and
        ignored: a procedural image depends on its seed only."""
        rng = np.random.default_rng(seed)
        for attempt in range(4):
            scene, params = self.sample_scene(rng)
            image, label, cam_params = self.render_scene(scene, rng)
            # A frame filled with glass has no cue left (nothing that is not glass to compare with) and teaches
            # "everything is glass": redraw (deterministically, from the same stream) such scenes.
            if (label == 1).mean() <= MAX_GLASS_FRACTION:
                break
        params["redraws"] = attempt
        params["camera_effects"] = cam_params
        params["glass_fraction"] = round(float((label == 1).mean()), 5)
        return image, label, params

    def sample_scene(self, rng: np.random.Generator) -> Tuple[Scene, Dict]:
        """Draw a random scene description and its JSON-able parameters."""
        o = self.opt
        h, w = o.height, o.width
        cam = Camera(w, h, focal=float(w * rng.uniform(0.7, 1.4)))
        probs = np.array([KIND_PROBS[KINDS.index(k)] for k in o.kinds], dtype=np.float64)
        kind = str(rng.choice(list(o.kinds), p=probs / probs.sum()))
        negative_image = bool(rng.random() < o.negative_prob)
        negative_kinds = [k for k in ("door", "window") if k in o.kinds]
        if negative_image and negative_kinds and kind not in negative_kinds:
            # Only structures that have a plausible glass-free twin (open doorway, empty frame, wall mirror).
            kind = str(rng.choice(negative_kinds))
        indoor = kind in ("door", "partition", "railing", "display_case", "window", "glass_wall")
        background, bg_info = self.backgrounds.sample(rng, h, w, prefer="room" if indoor else "city",
                                                      role="surround")
        refl_src, refl_info = self.backgrounds.sample(rng, max(8, h // 2), max(8, w // 2),
                                                      prefer="city" if indoor else "landscape")
        reflection = reflection_image(refl_src, rng, (w, h))

        builders: Dict[str, Callable] = {
            "window": self._window, "facade": self._facade, "shopfront": self._shopfront, "door": self._door,
            "partition": self._partition, "railing": self._railing, "display_case": self._display_case,
            "curtain_wall": self._curtain_wall, "glass_wall": self._glass_wall,
        }
        surfaces: List[Surface] = builders[kind](rng, cam)
        # A second, smaller structure of another kind now and then (several surfaces per image).
        if rng.random() < 0.3:
            k2 = str(rng.choice(["door", "partition", "window", "window", "display_case"]))
            extra = builders[k2](rng, cam, small=True)
            # A main structure with a wall would paint over anything drawn before it: put the extra one in front.
            surfaces = surfaces + extra if any(s.wall is not None for s in surfaces) else extra + surfaces
        # Hard negatives: turn structures into open frames / mirrors, or add a picture frame.
        negatives: List[str] = []
        for s in surfaces:
            if s.kind not in ("door", "window"):
                continue  # façades, shop fronts, partitions, railings and cases are always glass
            if negative_image or rng.random() < 0.03:
                # A real clean window *is* glass even when it shows no reflection, so a glass-free twin must not
                # look like one: negatives are single openings (no mullions, handles or kick plates) — an open
                # doorway, or a framed wall mirror.
                u0, v0, u1, v1 = s.extent
                fr = min(0.08, 0.1 * (u1 - u0))
                s.panes = [(u0 + fr, v0 + fr, u1 - fr, v1 - (0.0 if s.kind == "door" else fr))]
                s.solid = []
                s.framed = True
                if s.kind == "door" and rng.random() < 0.7:
                    s.open_frame, s.through = True, "other"
                    negatives.append("open_doorway")
                else:
                    s.mirror = True
                    negatives.append(f"mirror_{s.kind}")
        if rng.random() < 0.12:
            pic = self._picture_frame(rng, cam)
            if pic is not None:
                surfaces.append(pic)
                negatives.append("picture_frame")
        if rng.random() < o.panel_prob:
            # Flat bright surfaces and dark screens are what a glass model confuses most on real photos: opaque
            # panels in the scene, in front of whatever they overlap (their pixels are background).
            for _ in range(int(rng.integers(1, 3))):
                panel = self._panel(rng, cam)
                surfaces.append(panel)
                negatives.append(f"panel_{panel.kind}")

        rendered: List[RenderedSurface] = []
        for s in surfaces:
            ew, eh = s.extent[2] - s.extent[0], s.extent[3] - s.extent[1]
            look = sample_look(rng, "mirror" if s.mirror else s.kind, (ew, eh))
            fc, fk = frame_color(rng)
            if s.kind in ("curtain_wall", "glass_wall") and rng.random() < 0.6:
                fc, fk = pale_color(rng, "white"), "white"  # glazing systems are mostly white/silver
            rs = RenderedSurface(surface=s, look=look, frame_rgb=fc, frame_kind=fk)
            if s.infill:
                # Cells covered with one material (a sheet over several cells) or each its own.
                first, _ = infill_material(rng)
                same = rng.random() < 0.6
                rs.infill_rgb = [first if (same or i == 0) else infill_material(rng)[0] for i in range(len(s.infill))]
            if s.wall is not None:
                if rng.random() < o.white_wall_prob:
                    rs.wall_tex = flat_texture(rng, pale_color(rng, "light"), 128, 128)
                    rs.wall_tex_units = 6.0
                else:
                    wk = str(rng.choice(WALL_TEXTURES))
                    rs.wall_tex = texture(rng, wk, 128, 128)
                    rs.wall_tex_units = float(rng.uniform(1.0, 3.0)) if wk != "plaster" else 6.0
            if s.kind.startswith("panel_"):
                rs.frame_rgb = pale_color(rng, s.kind[len("panel_"):])
            if s.kind == "panel_screen":
                # A switched-off screen: near black, glossy (faint reflection), no glass label.
                rs.behind = np.float32(0.02) + scene_reflection_dim(reflection, rng)
            elif s.mirror:
                # What a wall mirror shows: the room behind the camera, sharp (see render_scene).
                rs.behind, _ = procedural_scene(rng, h, w, "room")
            elif s.through == "other":
                if s.kind in ("facade", "shopfront", "curtain_wall"):
                    inner, _ = self.backgrounds.sample(rng, h, w, prefer="room")
                    inner = inner * np.float32(rng.uniform(0.25, 0.7))  # interiors look dark from outside
                elif s.kind == "picture":  # a framed photo is a hard negative: its pixels are background
                    inner, _ = self.backgrounds.sample(rng, h, w, role="surround")
                else:
                    inner, _ = self.backgrounds.sample(rng, h, w, prefer="landscape")
                    inner = np.clip(inner * np.float32(rng.uniform(1.0, 1.35)), 0, 1)  # outdoors is brighter
                if s.kind != "picture" and rng.random() < o.bright_view_prob:
                    # Exposed for the room, the outdoor view through a window burns out to near-white: bright,
                    # flat panes that are still glass.
                    inner = np.clip(inner * np.float32(rng.uniform(1.8, 3.5)) + np.float32(0.15), 0, 1)
                rs.behind = inner
            rendered.append(rs)

        behind_objects, occluders, occ_kinds = [], [], []
        glass_boxes = [self._surface_bbox(s, cam) for s in surfaces]
        glass_boxes = [b for b in glass_boxes if b is not None]
        if glass_boxes and rng.random() < 0.35:  # things seen through the glass (still labelled glass)
            for _ in range(int(rng.integers(1, 4))):
                m, c, k = self._object_near(rng, cam, glass_boxes, scale_rel=(0.15, 0.5))
                behind_objects.append((m, c))
        if glass_boxes and rng.random() < o.occluder_prob:
            for _ in range(int(rng.integers(1, 4))):
                m, c, k = self._object_near(rng, cam, glass_boxes, scale_rel=(0.25, 0.9))
                occluders.append((m, c))
                occ_kinds.append(k)
        stickers = 0
        if glass_boxes and rng.random() < 0.15:
            for _ in range(int(rng.integers(1, 4))):
                m, c = self._sticker(rng, cam, glass_boxes)
                occluders.append((m, c))
                stickers += 1

        scene = Scene(camera=cam, background=background, reflection=reflection, surfaces=rendered,
                      occluders=occluders, behind_objects=behind_objects, dirt=dirt_field(rng, h, w))
        params = {
            "kind": kind,
            "focal_px": round(cam.focal, 2),
            "background": bg_info,
            "reflection_source": refl_info,
            "surfaces": [self._surface_json(rs, cam) for rs in rendered],
            "negatives": negatives,
            "occluders": occ_kinds,
            "stickers": stickers,
            "objects_behind_glass": len(behind_objects),
        }
        return scene, params

    # ------------------------------------------------------------------------------------------------------------
    # structure builders (canonical units ~ metres)

    def _pose(self, rng, cam, size, center, width_px, yaw, pitch, roll=0.0) -> PlanePose:
        """A pose whose structure corners are all in front of the camera (falls back to head-on)."""
        for _ in range(8):
            pose = pose_facing_camera(cam, size, center, width_px, yaw, pitch, roll)
            if pose.depth_ok((0.0, 0.0, size[0], size[1]), 0.2):
                return pose
            yaw *= 0.6
            pitch *= 0.6
        return pose_facing_camera(cam, size, center, width_px, 0.0, 0.0, 0.0)

    def _window(self, rng, cam, small: bool = False) -> List[Surface]:
        w, h = cam.width, cam.height
        W, H = rng.uniform(0.8, 2.6), rng.uniform(0.9, 2.0)
        cols, rows = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        fr = rng.uniform(0.03, 0.1)
        framed = rng.random() < 0.9
        panes = grid_panes((0, 0, W, H), cols, rows, fr if framed else 0.0, rng.uniform(0.03, 0.08),
                           row_weights=[rng.uniform(0.3, 0.6), 1.0] if rows == 2 else None)
        width_px = w * (rng.uniform(0.2, 0.4) if small else rng.uniform(0.35, 0.85))
        pose = self._pose(rng, cam, (W, H), (rng.uniform(0.25, 0.75) * w, rng.uniform(0.3, 0.6) * h), width_px,
                          rng.uniform(-50, 50), rng.uniform(-12, 12), rng.normal(0, 1.5))
        wall = None if small else (-6.0, -4.0, W + 6.0, H + 4.0)  # an extra structure must not hide the scene
        return [Surface("window", pose, (0, 0, W, H), panes, wall=wall, framed=framed, through="other")]

    def _facade(self, rng, cam, small: bool = False) -> List[Surface]:
        w, h = cam.width, cam.height
        cols, rows, ph, mull, W, H, panes = glazing_grid(rng, (3, 9), (2, 7), (1.0, 2.0), (1.2, 3.0), (0.05, 0.18),
                                                         (0.05, 0.25))
        solid: List[Rect] = []
        if rng.random() < 0.5:  # opaque spandrel panels at floor slabs: not glass, but look like it
            solid += spandrel_bands(panes, cols, range(rows), W, rng.uniform(0.15, 0.35) * ph)
        if rng.random() < 0.3:  # protruding vertical fins
            for c in range(1, cols):
                u = panes[c][0] - mull
                solid.append((u - 0.02, 0.0, u + mull + 0.02, H))
        width_px = w * rng.uniform(0.7, 1.6)
        pose = self._pose(rng, cam, (W, H), (rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h), width_px,
                          rng.uniform(-60, 60), rng.uniform(-30, 8), rng.normal(0, 2))
        return [Surface("facade", pose, (0, 0, W, H), panes, solid=solid, through="other")]

    def _shopfront(self, rng, cam, small: bool = False) -> List[Surface]:
        w, h = cam.width, cam.height
        W, H = rng.uniform(3, 8), rng.uniform(2.6, 3.6)
        cols = int(rng.integers(2, 6))
        transom = rng.random() < 0.5
        fr = rng.uniform(0.04, 0.12)
        base = rng.uniform(0.0, 0.5)
        panes = grid_panes((0, 0, W, H - base), cols, 2 if transom else 1, fr, rng.uniform(0.04, 0.1),
                           row_weights=[0.25, 1.0] if transom else None)
        solid = [(0.0, H - base, W, H)] if base > 0.05 else []
        pose = self._pose(rng, cam, (W, H), (rng.uniform(0.3, 0.7) * w, rng.uniform(0.45, 0.7) * h),
                          w * rng.uniform(0.6, 1.3), rng.uniform(-55, 55), rng.uniform(-8, 8), rng.normal(0, 1))
        wall = (-4.0, -6.0, W + 4.0, H + 0.05)
        return [Surface("shopfront", pose, (0, 0, W, H), panes, solid=solid, wall=wall, through="other")]

    def _door(self, rng, cam, small: bool = False) -> List[Surface]:
        w, h = cam.width, cam.height
        double = rng.random() < 0.4
        W, H = (rng.uniform(1.6, 2.4) if double else rng.uniform(0.8, 1.1)), rng.uniform(2.0, 2.5)
        framed = rng.random() < 0.75
        fr = rng.uniform(0.04, 0.12) if framed else 0.0
        kick = rng.uniform(0.1, 0.4) if framed and rng.random() < 0.4 else 0.0
        panes = grid_panes((0, 0, W, H - kick), 2 if double else 1, 1, fr, 2 * fr + 0.01)
        solid: List[Rect] = [(0.0, H - kick - fr, W, H)] if kick > 0 else []
        if rng.random() < 0.8:  # handles: opaque, in front of the glass
            hx = [W / 2 - 0.12, W / 2 + 0.08] if double else [W - fr - 0.15]
            hl = rng.uniform(0.2, 0.9)
            for x in hx:
                solid.append((x, H * 0.5 - hl / 2, x + 0.04, H * 0.5 + hl / 2))
        if not framed and rng.random() < 0.7:  # patch fittings of frameless doors
            for v in (0.0, H - 0.15):
                solid.append((0.0, v, 0.18, v + 0.15))
        height_px = h * (rng.uniform(0.35, 0.6) if small else rng.uniform(0.6, 1.1))
        pose = self._pose(rng, cam, (W, H), (rng.uniform(0.2, 0.8) * w, rng.uniform(0.45, 0.6) * h),
                          height_px * W / H, rng.uniform(-55, 55), rng.uniform(-8, 8), rng.normal(0, 1))
        wall = (-5.0, -3.0, W + 5.0, H + 0.0) if (rng.random() < 0.45 and not small) else None
        through = "other" if wall is not None and rng.random() < 0.6 else "scene"
        return [Surface("door", pose, (0, 0, W, H), panes, solid=solid, wall=wall, framed=framed, through=through)]

    def _partition(self, rng, cam, small: bool = False) -> List[Surface]:
        w, h = cam.width, cam.height
        n = int(rng.integers(1, 5))
        W, H = n * rng.uniform(0.9, 1.6), rng.uniform(2.2, 3.0)
        channels = rng.random() < 0.5
        ch = rng.uniform(0.03, 0.08) if channels else 0.0
        gap = rng.uniform(0.005, 0.02)
        panes = grid_panes((0, ch, W, H - ch), n, 1, 0.0, gap)
        solid: List[Rect] = [(0.0, 0.0, W, ch), (0.0, H - ch, W, H)] if channels else []
        pose = self._pose(rng, cam, (W, H), (rng.uniform(0.3, 0.7) * w, rng.uniform(0.4, 0.6) * h),
                          w * (rng.uniform(0.3, 0.6) if small else rng.uniform(0.6, 1.4)),
                          rng.uniform(-65, 65), rng.uniform(-8, 8), rng.normal(0, 1))
        # Gaps between frameless panes are not glass and not frame: leave the scene visible there.
        return [Surface("partition", pose, (0, 0, W, H), panes, solid=solid, framed=False)]

    def _railing(self, rng, cam, small: bool = False) -> List[Surface]:
        w, h = cam.width, cam.height
        n = int(rng.integers(2, 7))
        W, H = n * rng.uniform(0.9, 1.5), rng.uniform(0.9, 1.15)
        rail = rng.uniform(0.04, 0.09)
        post = rng.uniform(0.03, 0.08)
        posts = rng.random() < 0.6
        panes = grid_panes((0, rail, W, H), n, 1, 0.0, post if posts else 0.015)
        panes = [(u0, v0 + 0.02, u1, v1 - 0.05) for (u0, v0, u1, v1) in panes]
        solid: List[Rect] = [(0.0, 0.0, W, rail)]
        if posts:
            edges = [0.0] + [p[2] for p in panes[:-1]] + [W - post]
            for u in edges:
                solid.append((u, 0.0, u + post, H))
        # Railings run across the lower part of the view (a balcony, a mezzanine, a stair), seen from above.
        pose = self._pose(rng, cam, (W, H), (rng.uniform(0.3, 0.7) * w, rng.uniform(0.68, 0.9) * h),
                          w * rng.uniform(0.9, 1.8), rng.uniform(-50, 50), rng.uniform(-25, 0), rng.normal(0, 1))
        return [Surface("railing", pose, (0, 0, W, H), panes, solid=solid, framed=False)]

    def _display_case(self, rng, cam, small: bool = False) -> List[Surface]:
        """A glass box on a cabinet, built in 3-D so its visible faces share exact edges."""
        w, h = cam.width, cam.height
        W, D, Hb = rng.uniform(0.6, 1.8), rng.uniform(0.4, 0.9), rng.uniform(0.4, 1.0)
        base_h = rng.uniform(0.3, 0.9)
        yaw = float(rng.uniform(-50, 50))
        pitch = float(rng.uniform(10, 35))  # tilt so that the camera looks down onto the top face
        width_px = w * (rng.uniform(0.15, 0.3) if small else rng.uniform(0.25, 0.55))
        center = (rng.uniform(0.25, 0.75) * w, rng.uniform(0.5, 0.75) * h)
        front = self._pose(rng, cam, (W, Hb + base_h), center, width_px, yaw, pitch)
        ex, ey = front.axis_u, front.axis_v
        ez = np.cross(ex, ey)  # away from the camera (depth direction of the box)
        P = front.origin
        if float(np.dot(-ey, -P)) <= 0.0:  # top face turned away: mirror the tilt
            front = self._pose(rng, cam, (W, Hb + base_h), center, width_px, yaw, -pitch)
            ex, ey = front.axis_u, front.axis_v
            ez = np.cross(ex, ey)
            P = front.origin
        fr = rng.uniform(0.01, 0.03)
        left = PlanePose(origin=P + D * ez, axis_u=-ez, axis_v=ey)
        right = PlanePose(origin=P + W * ex, axis_u=ez, axis_v=ey)
        top = PlanePose(origin=P + D * ez, axis_u=ex, axis_v=-ez)
        # (pose, size, outward normal, a point on the face, has cabinet)
        faces = ((left, (D, Hb + base_h), -ex, P, True), (right, (D, Hb + base_h), ex, P + W * ex, True),
                 (top, (W, D), -ey, P, False), (front, (W, Hb + base_h), -ez, P, True))
        out: List[Surface] = []
        for pose, size, normal, point, cabinet in faces:
            # Back-face culling: a face is drawn only if its outside faces the camera (at the origin); the visible
            # faces of a convex box never overlap, so no depth sorting is needed.
            if float(np.dot(normal, -point)) <= 0.0 or not pose.depth_ok((0.0, 0.0, size[0], size[1]), 0.1):
                continue
            if cabinet:
                panes = [(fr, fr, size[0] - fr, Hb - fr)]
                solid: List[Rect] = [(0.0, Hb, size[0], Hb + base_h)]  # the cabinet below the glass
            else:
                panes = [(fr, fr, size[0] - fr, size[1] - fr)]
                solid = []
            out.append(Surface("display_case", pose, (0.0, 0.0, size[0], size[1]), panes, solid=solid))
        return out

    def _curtain_wall(self, rng, cam, small: bool = False) -> List[Surface]:
        """A glazed façade seen close up: a grid of large reflective panes that fills most of the frame."""
        w, h = cam.width, cam.height
        cols, rows, ph, _, W, H, panes = glazing_grid(rng, (2, 6), (2, 6), (1.2, 2.2), (1.4, 3.2), (0.04, 0.14),
                                                      (0.03, 0.15))
        solid: List[Rect] = []
        if rng.random() < 0.3:  # opaque spandrel bands at the floor slabs
            solid += spandrel_bands(panes, cols, range(1, rows), W, rng.uniform(0.1, 0.25) * ph)
        cells = self._take_infill(rng, panes, "curtain_wall")
        infill: List[Rect] = []
        if self.opt.infill_style == "frame":
            solid += cells  # painted as frame members
        else:
            infill = cells
        width_px = w * (rng.uniform(0.4, 0.7) if small else rng.uniform(0.9, 2.0))
        pose = self._pose(rng, cam, (W, H), (rng.uniform(0.35, 0.65) * w, rng.uniform(0.3, 0.65) * h), width_px,
                          rng.uniform(-55, 55), rng.uniform(-30, 15), rng.normal(0, 2))
        return [Surface("curtain_wall", pose, (0, 0, W, H), panes, solid=solid, infill=infill, through="other")]

    def _take_infill(self, rng, panes: List[Rect], kind: str) -> List[Rect]:
        """With probability ``infill_prob``, turn 1 to a third of ``panes`` (in place) into opaque infill cells.

        Insulated spandrel panels, boarded or sheeted cells: framed like glass but not glass — real glazing under
        construction or refurbishment is full of them. The ``frame`` style draws them in curtain walls only (and
        consumes the random stream exactly as the engine did before ``infill_style`` existed; ``material`` as the
        sixth round's runs did, so that both replay image for image)."""
        if self.opt.infill_style == "frame":
            if kind != "curtain_wall" or rng.random() >= self.opt.infill_prob or len(panes) <= 2:
                return []
        elif len(panes) <= 2 or rng.random() >= self.opt.infill_prob:
            return []
        k = int(rng.integers(1, max(2, len(panes) // 3) + 1))
        return [panes.pop(i) for i in sorted(rng.choice(len(panes), size=k, replace=False).tolist(), reverse=True)]

    def _glass_wall(self, rng, cam, small: bool = False) -> List[Surface]:
        """Floor-to-ceiling glazing of a room (office front, lobby, storefront from inside), frame-filling."""
        w, h = cam.width, cam.height
        cols = int(rng.integers(2, 6))
        W, H = cols * rng.uniform(0.9, 1.6), rng.uniform(2.6, 3.4)
        transom = rng.random() < 0.4
        panes = grid_panes((0, 0, W, H), cols, 2 if transom else 1, rng.uniform(0.02, 0.08),
                           rng.uniform(0.03, 0.09), row_weights=[0.25, 1.0] if transom else None)
        solid: List[Rect] = []
        if rng.random() < 0.35:  # a door handle on one pane
            c = int(rng.integers(0, cols))
            u0, v0, u1, v1 = panes[c + (cols if transom else 0)]
            x = u1 - 0.15
            solid.append((x, H * 0.45, x + 0.04, H * 0.45 + rng.uniform(0.2, 0.8)))
        width_px = w * (rng.uniform(0.35, 0.6) if small else rng.uniform(0.85, 1.7))
        pose = self._pose(rng, cam, (W, H), (rng.uniform(0.35, 0.65) * w, rng.uniform(0.4, 0.6) * h), width_px,
                          rng.uniform(-55, 55), rng.uniform(-10, 10), rng.normal(0, 1))
        infill = [] if small else self._take_infill(rng, panes, "glass_wall")
        wall = None if small else (-5.0, -2.0, W + 5.0, H + 0.0)
        return [Surface("glass_wall", pose, (0, 0, W, H), panes, solid=solid, infill=infill, wall=wall,
                        through="other")]

    def _panel(self, rng, cam) -> Surface:
        """An opaque flat rectangle that looks like a pane at a glance: a white board, door, cabinet or wall
        section, or a switched-off screen (a hard negative; all of it is background)."""
        w, h = cam.width, cam.height
        tone = str(rng.choice(PANEL_COLORS))
        W, H = rng.uniform(0.5, 2.5), rng.uniform(0.4, 2.2)
        if tone == "screen":
            W, H = rng.uniform(0.6, 1.6), 0.0
            H = W * rng.uniform(0.5, 0.62)
        pose = self._pose(rng, cam, (W, H), (rng.uniform(0.1, 0.9) * w, rng.uniform(0.15, 0.8) * h),
                          w * rng.uniform(0.15, 0.5), rng.uniform(-50, 50), rng.uniform(-10, 10), rng.normal(0, 1))
        if tone == "screen":
            b = rng.uniform(0.01, 0.04)
            return Surface("panel_screen", pose, (0, 0, W, H), [(b, b, W - b, H - b)], open_frame=True,
                           through="other")
        return Surface(f"panel_{tone}", pose, (0, 0, W, H), [], solid=[(0.0, 0.0, W, H)], framed=False)

    def _picture_frame(self, rng, cam) -> Optional[Surface]:
        """A framed picture on a wall: a hard negative (frame + photo, no glass)."""
        w, h = cam.width, cam.height
        W, H = rng.uniform(0.4, 1.2), rng.uniform(0.3, 0.9)
        pose = self._pose(rng, cam, (W, H), (rng.uniform(0.15, 0.85) * w, rng.uniform(0.2, 0.6) * h),
                          w * rng.uniform(0.12, 0.3), rng.uniform(-40, 40), rng.uniform(-8, 8))
        fr = rng.uniform(0.03, 0.08)
        return Surface("picture", pose, (0, 0, W, H), [(fr, fr, W - fr, H - fr)], open_frame=True,
                       through="other")

    # ------------------------------------------------------------------------------------------------------------
    # objects

    @staticmethod
    def _surface_bbox(s: Surface, cam: Camera) -> Optional[Tuple[int, int, int, int]]:
        if s.open_frame or not s.panes:
            return None
        pts = np.concatenate([apply_homography(s.pose.homography(cam), quad_of_rect(r)) for r in s.panes])
        return polygon_bbox(pts, cam.height, cam.width)

    def _object_near(self, rng, cam, boxes, scale_rel):
        x0, y0, x1, y1 = boxes[int(rng.integers(0, len(boxes)))]
        ax = rng.uniform(x0, x1)
        ay = min(cam.height * 1.05, rng.uniform(y0 + 0.5 * (y1 - y0), y1 + 0.3 * (cam.height - y1)))
        # Object size follows the glass it stands at, but never dwarfs the frame (a person is at most ~0.8 H).
        scale = max(8.0, min(y1 - y0, 0.8 * cam.height) * rng.uniform(*scale_rel))
        return draw_object(rng, cam.height, cam.width, (ax, ay), scale)

    @staticmethod
    def _sticker(rng, cam, boxes):
        """A small opaque decal on glass (logo, notice, dot): its pixels are not visible glass."""
        import cv2

        x0, y0, x1, y1 = boxes[int(rng.integers(0, len(boxes)))]
        m = np.zeros((cam.height, cam.width), np.uint8)
        cx, cy = int(rng.uniform(x0, x1)), int(rng.uniform(y0, y1))
        r = int(np.clip(rng.uniform(0.01, 0.03) * (x1 - x0 + y1 - y0), 2, 0.03 * cam.width))
        if rng.random() < 0.5:
            cv2.circle(m, (cx, cy), r, 1, -1)
        else:
            cv2.rectangle(m, (cx - r, cy - r // 2), (cx + r, cy + r // 2), 1, -1)
        col = np.empty((cam.height, cam.width, 3), np.float32)
        from gemseg.synthesis.backgrounds import random_color

        col[:] = random_color(rng, "any")
        return m.astype(bool), col

    @staticmethod
    def _surface_json(rs: RenderedSurface, cam: Camera) -> Dict:
        s = rs.surface
        H = s.pose.homography(cam)
        return {
            "kind": s.kind,
            "quad": [[round(float(x), 2), round(float(y), 2)] for x, y in apply_homography(H, quad_of_rect(s.extent))],
            "panes": len(s.panes),
            "infill": len(s.infill),
            "framed": s.framed,
            "frame": rs.frame_kind if s.framed else None,
            "wall": s.wall is not None,
            "through": s.through,
            "open_frame": s.open_frame,
            "mirror": s.mirror,
            "look": rs.look.to_json(),
        }


def _contact_shadow(img: np.ndarray, mask: np.ndarray, strength: float = 0.35) -> None:
    """Darken a soft ellipse under an object's base (colours only: shadows never change labels)."""
    import cv2

    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return
    bottom = int(rows[-1])
    cols = np.flatnonzero(mask[max(bottom - 3, 0):bottom + 1].any(axis=0))
    if len(cols) == 0:
        return
    cols_all = np.flatnonzero(mask.any(axis=0))
    half_w = max(2, int(0.6 * (cols_all[-1] - cols_all[0] + 1)))
    cx = int((cols[0] + cols[-1]) // 2)
    h, w = mask.shape
    y0, y1 = max(bottom - half_w // 3, 0), min(bottom + half_w // 3 + 1, h)
    x0, x1 = max(cx - half_w * 2, 0), min(cx + half_w * 2 + 1, w)
    if y1 <= y0 or x1 <= x0:
        return
    patch = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.ellipse(patch, (cx - x0, bottom - y0), (half_w, max(1, half_w // 8)), 0, 0, 360, 1.0, -1)
    patch = cv2.GaussianBlur(patch, (0, 0), max(1.0, half_w / 10))
    img[y0:y1, x0:x1] *= (1.0 - strength * patch)[..., None]

