"""Geometry of synthetic glass scenes: planar rectangles in 3-D seen by a pinhole camera.

Every surface (a window, a façade, a door, a display-case face, ...) is a planar rectangle in *canonical* plane
coordinates ``(u, v)`` (``u`` to the right, ``v`` downwards, in the surface's own units). A 3-D pose places that
rectangle in front of the camera, which gives a homography ``H`` from canonical coordinates to image pixels. Panes,
frame members and mullions are axis-aligned rectangles in canonical coordinates, so in the image they are convex
quadrilaterals ``H · rect``.

Masks are rasterised by one rule used everywhere (and tested against an independent rasteriser): pixel ``(x, y)``
belongs to a convex polygon iff its *centre* ``(x + 0.5, y + 0.5)`` lies inside or on the boundary. Because the
renderer paints the label map with exactly the same rasterisation as the colours, the mask is the set of visible
glass pixels by construction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

Rect = Tuple[float, float, float, float]  # (u0, v0, u1, v1) in canonical plane units


def quad_of_rect(rect: Rect) -> np.ndarray:
    """The four corners of an axis-aligned rectangle, clockwise in image orientation (y down)."""
    u0, v0, u1, v1 = rect
    return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], dtype=np.float64)


def apply_homography(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map ``N×2`` points through a 3×3 homography."""
    pts = np.asarray(pts, dtype=np.float64)
    ph = np.concatenate([pts, np.ones((pts.shape[0], 1))], axis=1) @ H.T
    return ph[:, :2] / ph[:, 2:3]


def homography_from_quads(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The homography taking four ``src`` points to four ``dst`` points."""
    return cv2.getPerspectiveTransform(np.float32(src), np.float32(dst)).astype(np.float64)


def polygon_bbox(poly: np.ndarray, h: int, w: int) -> Optional[Tuple[int, int, int, int]]:
    """Integer pixel box ``(x0, y0, x1, y1)`` (exclusive ends) holding every pixel centre of ``poly``, clipped to the
    image; ``None`` if the polygon misses the image."""
    x0 = max(int(np.floor(poly[:, 0].min() - 0.5)), 0)
    y0 = max(int(np.floor(poly[:, 1].min() - 0.5)), 0)
    x1 = min(int(np.ceil(poly[:, 0].max() + 0.5)), w)
    y1 = min(int(np.ceil(poly[:, 1].max() + 0.5)), h)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def convex_polygon_mask(poly: np.ndarray, h: int, w: int) -> np.ndarray:
    """Rasterise a convex polygon (any orientation) into an ``h×w`` bool mask by the pixel-centre rule.

    Only the polygon's bounding box is evaluated, so small polygons are cheap in large images.
    """
    poly = np.asarray(poly, dtype=np.float64)
    mask = np.zeros((h, w), dtype=bool)
    box = polygon_bbox(poly, h, w)
    if box is None:
        return mask
    x0, y0, x1, y1 = box
    xs = np.arange(x0, x1, dtype=np.float64) + 0.5
    ys = np.arange(y0, y1, dtype=np.float64) + 0.5
    # Signed area decides the winding; inside means "left of every edge" for the matching orientation.
    area = 0.5 * np.sum(poly[:, 0] * np.roll(poly[:, 1], -1) - np.roll(poly[:, 0], -1) * poly[:, 1])
    sign = 1.0 if area >= 0 else -1.0
    inside = np.ones((y1 - y0, x1 - x0), dtype=bool)
    n = len(poly)
    for i in range(n):
        ax, ay = poly[i]
        bx, by = poly[(i + 1) % n]
        ex, ey = bx - ax, by - ay
        # cross(e, p - a) separable in x and y: ex*(py-ay) - ey*(px-ax)
        cy = ex * (ys - ay)
        cx = ey * (xs - ax)
        inside &= (sign * (cy[:, None] - cx[None, :])) >= -1e-9
    mask[y0:y1, x0:x1] = inside
    return mask


def canonical_coords(Hinv: np.ndarray, box: Tuple[int, int, int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Canonical ``(u, v)`` of every pixel centre inside ``box`` (two ``float32`` arrays of the box's shape)."""
    x0, y0, x1, y1 = box
    xs = np.arange(x0, x1, dtype=np.float64) + 0.5
    ys = np.arange(y0, y1, dtype=np.float64) + 0.5
    a = Hinv
    # Separable products keep this at a few array ops for the whole box.
    nu = a[0, 0] * xs[None, :] + (a[0, 1] * ys + a[0, 2])[:, None]
    nv = a[1, 0] * xs[None, :] + (a[1, 1] * ys + a[1, 2])[:, None]
    nw = a[2, 0] * xs[None, :] + (a[2, 1] * ys + a[2, 2])[:, None]
    return (nu / nw).astype(np.float32), (nv / nw).astype(np.float32)


@dataclass
class Camera:
    """A pinhole camera at the origin looking down +z (x right, y down), focal length in pixels."""

    width: int
    height: int
    focal: float

    @property
    def K(self) -> np.ndarray:
        return np.array(
            [[self.focal, 0.0, self.width / 2.0], [0.0, self.focal, self.height / 2.0], [0.0, 0.0, 1.0]]
        )


def rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Rotation matrix from yaw (about y), pitch (about x) and roll (about z), in degrees."""
    y, p, r = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
    Ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    Rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    Rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return Rz @ Rx @ Ry


@dataclass
class PlanePose:
    """A canonical plane placed in camera space: ``X(u, v) = origin + u·axis_u + v·axis_v`` (camera coordinates).

    ``A = [axis_u, axis_v, origin]`` maps homogeneous canonical coordinates to camera-space points, so the image
    homography is ``K·A`` and the viewing angle at any canonical point is available for Fresnel reflectance.
    """

    origin: np.ndarray
    axis_u: np.ndarray
    axis_v: np.ndarray

    @property
    def A(self) -> np.ndarray:
        return np.stack([self.axis_u, self.axis_v, self.origin], axis=1)

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.axis_u, self.axis_v)
        return n / np.linalg.norm(n)

    def homography(self, cam: Camera) -> np.ndarray:
        return cam.K @ self.A

    def depth_ok(self, rect: Rect, min_depth: float = 0.05) -> bool:
        """True if every corner of ``rect`` is in front of the camera (so its image is a convex quad)."""
        pts = quad_of_rect(rect)
        X = self.A @ np.concatenate([pts.T, np.ones((1, 4))], axis=0)
        return bool(np.all(X[2] > min_depth))

    def view_cosine(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """|cos| of the angle between the viewing ray and the plane normal at canonical ``(u, v)``."""
        n = self.normal
        X = (self.origin[0] + u * self.axis_u[0] + v * self.axis_v[0],
             self.origin[1] + u * self.axis_u[1] + v * self.axis_v[1],
             self.origin[2] + u * self.axis_u[2] + v * self.axis_v[2])
        dot = np.abs(X[0] * n[0] + X[1] * n[1] + X[2] * n[2])
        norm = np.sqrt(X[0] ** 2 + X[1] ** 2 + X[2] ** 2) + 1e-9
        return (dot / norm).astype(np.float32)


def pose_facing_camera(
    cam: Camera,
    size: Tuple[float, float],
    center_px: Tuple[float, float],
    width_px: float,
    yaw: float,
    pitch: float,
    roll: float,
) -> PlanePose:
    """Place a ``size = (W, H)`` rectangle (canonical units) so that its centre projects to ``center_px`` and its
    width appears roughly ``width_px`` pixels wide when seen head-on, then rotate it by yaw/pitch/roll about its
    centre. Units: one canonical unit = one metre-ish; depth follows from the requested apparent width."""
    W, Hh = size
    depth = cam.focal * W / max(width_px, 1.0)
    cx, cy = center_px
    center = np.array([(cx - cam.width / 2) * depth / cam.focal, (cy - cam.height / 2) * depth / cam.focal, depth])
    R = rotation(yaw, pitch, roll)
    axis_u = R @ np.array([1.0, 0.0, 0.0])
    axis_v = R @ np.array([0.0, 1.0, 0.0])
    origin = center - axis_u * (W / 2) - axis_v * (Hh / 2)
    return PlanePose(origin=origin, axis_u=axis_u, axis_v=axis_v)


def pose_from_quad(cam: Camera, quad_px: np.ndarray, size: Tuple[float, float]) -> "FixedPose":
    """A pose given directly by the image quad of the canonical rectangle ``(0, 0, W, H)`` (used by tests and for
    exact, hand-specified configurations). Viewing angles are taken as head-on."""
    W, Hh = size
    H = homography_from_quads(quad_of_rect((0.0, 0.0, W, Hh)), np.asarray(quad_px, dtype=np.float64))
    return FixedPose(H)


@dataclass
class FixedPose:
    """A plane known only by its image homography (no 3-D information; Fresnel falls back to head-on)."""

    H: np.ndarray

    def homography(self, cam: Camera) -> np.ndarray:  # noqa: ARG002 - same interface as PlanePose
        return self.H

    def depth_ok(self, rect: Rect, min_depth: float = 0.05) -> bool:  # noqa: ARG002
        pts = quad_of_rect(rect)
        w = np.concatenate([pts, np.ones((4, 1))], axis=1) @ self.H[2]
        return bool(np.all(w > 0) or np.all(w < 0))

    def view_cosine(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:  # noqa: ARG002
        return np.ones_like(u, dtype=np.float32)


@dataclass
class Surface:
    """One glass structure on one plane.

    ``extent`` is the outer rectangle of the structure (frame outline included); ``panes`` are the glass
    rectangles, ``solid`` are opaque members drawn over everything on the plane (mullions, rails, kick plates,
    spandrels, handles) in the frame's colour, ``infill`` are opaque cells of the grid (covered, boarded or panelled
    cells) in a material of their own, ``wall`` an optional larger rectangle painted as wall around the structure. Anything
    inside ``extent`` that is not a pane is frame (opaque, label 0); if ``open_frame`` the panes are absent (a hard
    negative: an open doorway or an empty window frame).
    """

    kind: str
    pose: object  # PlanePose | FixedPose
    extent: Rect
    panes: List[Rect]
    solid: List[Rect] = field(default_factory=list)
    infill: List[Rect] = field(default_factory=list)
    wall: Optional[Rect] = None
    framed: bool = True
    open_frame: bool = False
    label: int = 1  # 1 = glass; mirrors may use 0 or 255
    mirror: bool = False
    through: str = "scene"  # "scene": sees what is behind in the same image; "other": another image (outdoors)

    def image_quad(self, cam: Camera, rect: Rect) -> np.ndarray:
        return apply_homography(self.pose.homography(cam), quad_of_rect(rect))


def grid_panes(extent: Rect, cols: int, rows: int, frame: float, mullion: float,
               col_weights: Optional[Sequence[float]] = None,
               row_weights: Optional[Sequence[float]] = None) -> List[Rect]:
    """Split ``extent`` inset by ``frame`` into a ``cols×rows`` grid of panes separated by ``mullion``-wide bars."""
    u0, v0, u1, v1 = extent
    iu0, iv0, iu1, iv1 = u0 + frame, v0 + frame, u1 - frame, v1 - frame
    cw = np.asarray(col_weights if col_weights is not None else [1.0] * cols, dtype=np.float64)
    rw = np.asarray(row_weights if row_weights is not None else [1.0] * rows, dtype=np.float64)
    avail_u = (iu1 - iu0) - mullion * (cols - 1)
    avail_v = (iv1 - iv0) - mullion * (rows - 1)
    ws = avail_u * cw / cw.sum()
    hs = avail_v * rw / rw.sum()
    panes: List[Rect] = []
    v = iv0
    for r in range(rows):
        u = iu0
        for c in range(cols):
            panes.append((float(u), float(v), float(u + ws[c]), float(v + hs[r])))
            u += ws[c] + mullion
        v += hs[r] + mullion
    return panes
