"""The procedural engine's masks are exactly the visible glass pixels of known configurations."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from gemseg.synthesis.appearance import GlassLook
from gemseg.synthesis.geometry import (
    Camera,
    Surface,
    apply_homography,
    convex_polygon_mask,
    pose_facing_camera,
    pose_from_quad,
    quad_of_rect,
)
from gemseg.synthesis.procedural import ProceduralEngine, RenderedSurface, Scene, SynthOptions

W, H = 160, 120
GREY = np.float32(0.5)


def reference_mask(poly: np.ndarray, h: int = H, w: int = W) -> np.ndarray:
    """Independent rasteriser: OpenCV's point-in-polygon test on every pixel centre (inside or on the edge)."""
    contour = np.asarray(poly, np.float32).reshape(-1, 1, 2)
    out = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            out[y, x] = cv2.pointPolygonTest(contour, (x + 0.5, y + 0.5), False) >= 0
    return out


def engine() -> ProceduralEngine:
    return ProceduralEngine(SynthOptions(width=W, height=H, bundled_backgrounds=False))


def scene_with(surfaces, occluders=(), background=None) -> Scene:
    cam = Camera(W, H, focal=150.0)
    bg = np.full((H, W, 3), GREY, np.float32) if background is None else background
    rs = [RenderedSurface(surface=s, look=GlassLook(displace_px=0.0, offset_px=(0.0, 0.0)),
                          frame_rgb=np.array([0.9, 0.1, 0.1], np.float32), frame_kind="painted") for s in surfaces]
    return Scene(camera=cam, background=bg, reflection=np.zeros((H, W, 3), np.float32), surfaces=rs,
                 occluders=list(occluders), camera_effects=False)


def test_rasteriser_matches_independent_reference_on_random_convex_quads():
    rng = np.random.default_rng(0)
    cam = Camera(W, H, focal=140.0)
    for _ in range(6):
        pose = pose_facing_camera(cam, (2.0, 1.5), (rng.uniform(40, 120), rng.uniform(30, 90)),
                                  rng.uniform(40, 150), rng.uniform(-60, 60), rng.uniform(-30, 30),
                                  rng.uniform(-10, 10))
        quad = apply_homography(pose.homography(cam), quad_of_rect((0.0, 0.0, 2.0, 1.5)))
        got = convex_polygon_mask(quad, H, W)
        assert got.any()
        np.testing.assert_array_equal(got, reference_mask(quad))
        # orientation must not matter
        np.testing.assert_array_equal(convex_polygon_mask(quad[::-1], H, W), got)


def test_axis_aligned_frameless_pane_is_exactly_its_rectangle():
    quad = np.array([[20, 30], [100, 30], [100, 90], [20, 90]], np.float64)
    s = Surface("window", pose_from_quad(None, quad, (80.0, 60.0)), (0, 0, 80, 60), [(0, 0, 80, 60)],
                framed=False)
    img, label, _ = engine().render_scene(scene_with([s]))
    expected = np.zeros((H, W), np.uint8)
    expected[30:90, 20:100] = 1
    np.testing.assert_array_equal(label, expected)
    # outside the pane the background is untouched; inside, the glass changed it (reflection/tint)
    assert (img[~expected.astype(bool)] == 128).all()


def test_framed_pane_frame_pixels_are_not_glass():
    quad = np.array([[20, 30], [100, 30], [100, 90], [20, 90]], np.float64)
    s = Surface("window", pose_from_quad(None, quad, (80.0, 60.0)), (0, 0, 80, 60), [(5, 5, 75, 55)], framed=True)
    img, label, _ = engine().render_scene(scene_with([s]))
    expected = np.zeros((H, W), np.uint8)
    expected[35:85, 25:95] = 1
    np.testing.assert_array_equal(label, expected)
    frame = np.zeros((H, W), bool)
    frame[30:90, 20:100] = True
    frame[35:85, 25:95] = False
    # the frame is painted (reddish) and labelled background
    assert (label[frame] == 0).all()
    assert (img[frame][:, 0].astype(int) - img[frame][:, 1].astype(int) > 100).all()


def test_mullions_between_panes_are_not_glass():
    quad = np.array([[10, 10], [150, 10], [150, 110], [10, 110]], np.float64)
    panes = [(0, 0, 60, 100), (80, 0, 140, 100)]  # a 20-px mullion between two panes
    s = Surface("window", pose_from_quad(None, quad, (140.0, 100.0)), (0, 0, 140, 100), panes, framed=True)
    _, label, _ = engine().render_scene(scene_with([s]))
    expected = np.zeros((H, W), np.uint8)
    expected[10:110, 10:70] = 1
    expected[10:110, 90:150] = 1
    np.testing.assert_array_equal(label, expected)


def test_homography_pane_matches_polygon_rasterisation():
    # a perspective quad (trapezoid with slanted sides), canonical pane = the whole extent
    quad = np.array([[30.3, 20.7], [130.2, 35.1], [125.6, 95.4], [25.1, 105.9]], np.float64)
    pose = pose_from_quad(None, quad, (2.0, 1.0))
    s = Surface("window", pose, (0, 0, 2.0, 1.0), [(0.2, 0.1, 1.8, 0.9)], framed=True)
    _, label, _ = engine().render_scene(scene_with([s]))
    pane_img_quad = apply_homography(pose.H, quad_of_rect((0.2, 0.1, 1.8, 0.9)))
    np.testing.assert_array_equal(label.astype(bool), reference_mask(pane_img_quad))


def test_3d_pose_pane_and_occluder_in_front():
    cam = Camera(W, H, focal=150.0)
    pose = pose_facing_camera(cam, (2.0, 1.5), (80, 60), 110, 35.0, -10.0, 3.0)
    s = Surface("door", pose, (0, 0, 2.0, 1.5), [(0.1, 0.1, 1.9, 1.4)], framed=True)
    occ = np.zeros((H, W), np.uint8)
    cv2.circle(occ, (70, 65), 18, 1, -1)
    occ = occ.astype(bool)
    occ_rgb = np.zeros((H, W, 3), np.float32)
    occ_rgb[..., 1] = 1.0
    _, label, _ = engine().render_scene(scene_with([s], occluders=[(occ, occ_rgb)]))
    pane = reference_mask(apply_homography(pose.homography(cam), quad_of_rect((0.1, 0.1, 1.9, 1.4))))
    assert (pane & occ).sum() > 500  # the occluder really covers glass
    np.testing.assert_array_equal(label.astype(bool), pane & ~occ)


def test_surface_in_front_hides_glass_behind_and_open_frame_is_not_glass():
    back = Surface("window", pose_from_quad(None, np.array([[10, 10], [90, 10], [90, 90], [10, 90]], float),
                                            (80.0, 80.0)), (0, 0, 80, 80), [(0, 0, 80, 80)], framed=False)
    # an empty frame (open doorway) in front of part of the window: no glass inside it
    front = Surface("door", pose_from_quad(None, np.array([[60, 40], [140, 40], [140, 115], [60, 115]], float),
                                           (80.0, 75.0)), (0, 0, 80, 75), [(4, 4, 76, 71)], open_frame=True,
                    through="other")
    _, label, _ = engine().render_scene(scene_with([back, front]))
    expected = np.zeros((H, W), np.uint8)
    expected[10:90, 10:90] = 1
    expected[40:115, 60:140] = 0
    np.testing.assert_array_equal(label, expected)


@pytest.mark.parametrize("mirror_label,value", [("background", 0), ("ignore", 255), ("glass", 1)])
def test_mirror_label_option(mirror_label, value):
    quad = np.array([[20, 30], [100, 30], [100, 90], [20, 90]], np.float64)
    s = Surface("window", pose_from_quad(None, quad, (80.0, 60.0)), (0, 0, 80, 60), [(0, 0, 80, 60)],
                framed=False, mirror=True)
    eng = ProceduralEngine(SynthOptions(width=W, height=H, bundled_backgrounds=False, mirror_label=mirror_label))
    _, label, _ = eng.render_scene(scene_with([s]))
    assert set(np.unique(label[30:90, 20:100])) == {value}
    assert (label[:30] == 0).all()


def test_random_scenes_labels_are_consistent_with_their_description():
    """For random seeds: labels only 0/1, glass lies inside the union of the described surfaces' outlines."""
    eng = ProceduralEngine(SynthOptions(width=W, height=H))
    for seed in range(8):
        img, label, params = eng.render(seed)
        assert img.shape == (H, W, 3) and label.shape == (H, W)
        assert set(np.unique(label)) <= {0, 1}
        union = np.zeros((H, W), bool)
        for s in params["surfaces"]:
            union |= convex_polygon_mask(np.array(s["quad"]), H, W)
        # quads are rounded to 0.01 px in the manifest: allow a 1-px tolerance at their borders
        union = cv2.dilate(union.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert not (label.astype(bool) & ~union).any()
        assert params["glass_fraction"] == pytest.approx((label == 1).mean(), abs=1e-5)


def test_objects_behind_glass_stay_glass_and_change_the_transmitted_image():
    quad = np.array([[20, 30], [100, 30], [100, 90], [20, 90]], np.float64)
    s = Surface("door", pose_from_quad(None, quad, (80.0, 60.0)), (0, 0, 80, 60), [(0, 0, 80, 60)], framed=False)
    behind = np.zeros((H, W), bool)
    behind[50:70, 40:60] = True  # a dark object standing behind the pane
    rgb = np.zeros((H, W, 3), np.float32)
    plain_img, plain_label, _ = engine().render_scene(scene_with([s]))
    sc = scene_with([s])
    sc.behind_objects = [(behind, rgb)]
    img, label, _ = engine().render_scene(sc)
    np.testing.assert_array_equal(label, plain_label)  # still glass: it is seen through the pane
    assert img[55:65, 45:55].mean() < plain_img[55:65, 45:55].mean() - 40  # but visible through it
