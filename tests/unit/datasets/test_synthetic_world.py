"""The randomised synthetic world: each scene element and sensor effect is deterministic per tile,
continuous where it should be, and the truth mask is exactly the building footprints."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from looking_glass.datasets import synthetic, synthetic_randomised
from looking_glass.datasets.synthetic_buildings import Layers, place_buildings
from looking_glass.datasets.synthetic_ground import ground_albedo, road_mask
from looking_glass.datasets.synthetic_noise import noise_grid, value_noise
from looking_glass.datasets.synthetic_randomised import PAD, build_layers, metres_per_pixel, render_tile
from looking_glass.datasets.synthetic_scene import SCENE_TILES, scene_for_tile
from looking_glass.datasets.synthetic_sensor import cast_shadows, expose, illuminate
from looking_glass.datasets.synthetic_trees import add_trees

Z = 18
X, Y = 100_004, 90_004  # a tile inside one scene block


def _find_scene(**want):
    """A tile whose scene has the wanted attributes (scenes are drawn at random per block)."""
    for i in range(400):
        x, y = 100_000 + SCENE_TILES * i, 90_000
        scene = scene_for_tile(Z, x, y)
        if all(pred(getattr(scene, k)) for k, pred in want.items()):
            return x, y, scene
    raise AssertionError(f"no scene with {want}")


def _empty_layers(size=64, pad=8, m=0.5):
    w = size + 2 * pad
    return Layers(height=np.zeros((w, w), np.float32), albedo=np.full((w, w, 4), 0.2, np.float32),
                  ground=np.ones((w, w), bool), blocked=np.zeros((w, w), bool), clear=np.zeros((w, w), bool),
                  truth=np.zeros((size, size), bool), pad=pad, m_per_px=m)


# --- noise, scenes ------------------------------------------------------------------------------

def test_noise_grid_is_value_noise_at_pixel_centres():
    gx, gy = np.meshgrid(np.arange(300, 340) + 0.5, np.arange(-20, 10) + 0.5)
    np.testing.assert_allclose(noise_grid(300, -20, 40, 30, 7.0, 5), value_noise(gx, gy, 7.0, 5), atol=1e-5)


def test_scenes_are_shared_by_a_block_of_tiles_and_differ_between_blocks():
    x0, y0 = 100_000, 90_000  # multiples of SCENE_TILES
    a = scene_for_tile(Z, x0, y0)
    assert scene_for_tile(Z, x0 + SCENE_TILES - 1, y0 + SCENE_TILES - 1) == a
    others = [scene_for_tile(Z, x0 + SCENE_TILES * i, y0) for i in range(1, 40)]
    assert any(s != a for s in others)
    assert {s.pan for s in others} == {True, False}  # both sensors occur
    scales = [s.gsd_scale for s in others]
    assert min(scales) < 0.9 and max(scales) > 1.15  # GSD varies around the zoom-18 resolution
    assert any(s.jpeg for s in others) and not all(s.jpeg for s in others)


def test_tiles_are_deterministic_and_truth_is_boolean():
    a, b = render_tile(Z, X, Y), render_tile(Z, X, Y)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].dtype == np.uint8 and a[0].shape == (256, 256, 3) and a[1].dtype == bool


def test_metres_per_pixel_follows_the_scene_gsd():
    scene = scene_for_tile(Z, X, Y)
    plain = metres_per_pixel(dataclasses.replace(scene, gsd_scale=1.0), Z, X, Y)
    assert 0.3 < plain < 0.6
    assert math.isclose(metres_per_pixel(scene, Z, X, Y), plain * scene.gsd_scale)


# --- ground ---------------------------------------------------------------------------------------

def test_roads_continue_across_tile_edges():
    scene = scene_for_tile(Z, X, Y)
    left, _ = road_mask(scene, X * 256, Y * 256, 256, 0.5)
    wide, _ = road_mask(scene, X * 256 - 128, Y * 256, 512, 0.5)  # a window over two tiles
    assert np.array_equal(wide[:256, 128:384], left)


def test_ground_has_roads_and_lawns_and_no_buildings():
    x, y, scene = _find_scene(road_curve=lambda v: v >= 0)
    found = False
    for i in range(20):
        albedo, road, sidewalk = ground_albedo(scene, (x + i) * 256, y * 256, 256, 0.5)
        assert albedo.shape == (256, 256, 4) and albedo.dtype == np.float32
        assert not (road & sidewalk).any()
        if road.any() and (~road).any():
            found = True
            assert albedo[road].mean() != pytest.approx(albedo[~road].mean(), abs=1e-3)
    assert found


# --- buildings ----------------------------------------------------------------------------------

def test_truth_is_the_union_of_footprints_inside_the_tile():
    scene, layers = build_layers(Z, X, Y)
    truth = layers.truth
    assert truth.any()
    # every footprint is raised in the height field and nothing outside the truth is a building
    inner = layers.height[PAD:-PAD, PAD:-PAD]
    assert (inner[truth] > 2.5).mean() > 0.95  # roofs, except where tree crowns are taller
    # buildings keep a margin from the tile edge, so the per-tile truth is exact
    assert not truth[:2].any() and not truth[-2:].any() and not truth[:, :2].any() and not truth[:, -2:].any()


def test_a_single_house_has_the_footprint_area_it_was_given():
    scene = scene_for_tile(Z, X, Y)
    layers = _empty_layers(size=128, pad=16, m=0.5)
    rng = np.random.default_rng(3)
    placed = place_buildings(dataclasses.replace(scene, building_density=0.05, big_buildings=0.0), layers, rng, 0.0)
    if placed == 0:
        pytest.skip("no house placed with this seed")
    # footprint pixels == pixels under roofs (height >= wall height 3 m) inside the tile
    roofs = layers.height[16:-16, 16:-16] >= 3.0
    assert np.array_equal(roofs, layers.truth)


def test_houses_get_driveways_pools_fences_and_cars_that_are_not_truth():
    scene = dataclasses.replace(scene_for_tile(Z, X, Y), building_density=1.5, big_buildings=0.3)
    extras = 0
    for s in range(6):
        layers = _empty_layers(size=256, pad=32, m=0.5)
        place_buildings(scene, layers, np.random.default_rng(s), 1.0)
        inner = layers.albedo[32:-32, 32:-32]
        painted = np.abs(inner - 0.2).sum(-1) > 1e-6  # anything drawn on the plain ground
        extras += int((painted & ~layers.truth).sum())
        low = (layers.height[32:-32, 32:-32] > 0) & (layers.height[32:-32, 32:-32] < 2.0)  # cars, fences
        assert not (low & layers.truth).any()
    assert extras > 500


def test_dark_roofs_occur():
    roofs = []
    for i in range(30):
        scene, layers = build_layers(Z, 100_000 + 3 * i, 90_000 + 5 * i)
        inner = layers.albedo[PAD:-PAD, PAD:-PAD, :3].mean(-1)
        if layers.truth.any():
            roofs.append(np.median(inner[layers.truth]))
    assert min(roofs) < 0.08 and max(roofs) > 0.25


# --- trees --------------------------------------------------------------------------------------

def test_trees_continue_across_tile_edges_and_avoid_cleared_ground():
    x, y, scene = _find_scene(tree_cover=lambda v: v > 0.5)
    m = 0.5
    a = _empty_layers(size=256, pad=0, m=m)
    b = _empty_layers(size=512, pad=0, m=m)
    add_trees(scene, a, x * 256, y * 256)
    add_trees(scene, b, x * 256 - 256, y * 256)
    assert a.height.max() > 3
    np.testing.assert_allclose(b.height[:256, 256:], a.height, atol=1e-2)  # float32 round-off only
    cleared = _empty_layers(size=256, pad=0, m=m)
    cleared.clear[48:208, 48:208] = True  # no tree may stand here; crowns from outside reach in < 10 m
    add_trees(scene, cleared, x * 256, y * 256)
    assert cleared.height[70:186, 70:186].max() == 0 and cleared.height.max() > 3


def test_crowns_overhang_roofs_but_truth_keeps_the_whole_footprint():
    hidden = 0
    for i in range(40):
        scene, layers = build_layers(Z, 100_000 + 7 * i, 90_000 + 3 * i)
        inner_base = layers.base[PAD:-PAD, PAD:-PAD]
        hidden += int((layers.truth & (inner_base > 0)).sum())  # roof pixels under a crown
    assert hidden > 0


def test_leaf_off_crowns_carry_a_fine_twig_texture_that_leaf_on_crowns_lack():
    _, _, scene = _find_scene(tree_cover=lambda v: v > 0.5)

    def fine_contrast(season):
        layers = _empty_layers(size=256, pad=0, m=0.5)
        canopy = add_trees(dataclasses.replace(scene, season=season, conifer_share=0.0), layers, 0, 0)
        grey = layers.albedo[..., 3] / layers.albedo[..., 3][canopy].mean()
        step = np.abs(np.diff(grey, axis=1))[canopy[:, 1:] & canopy[:, :-1]]  # neighbour-to-neighbour change
        return float(step.mean())

    assert fine_contrast(1.0) > 1.5 * fine_contrast(0.0)


# --- light and sensor ---------------------------------------------------------------------------

def test_shadows_fall_away_from_the_sun():
    scene = dataclasses.replace(scene_for_tile(Z, X, Y), sun_azimuth=0.0, sun_elevation=math.radians(45))
    h = np.zeros((64, 64), np.float32)
    h[28:36, 28:36] = 6.0  # a 6 m box, sun towards +x at 45 degrees: a 6 m (12 px) shadow at -x
    shadow = cast_shadows(h, scene, 0.5, 40)
    assert shadow[30:34, 18:26].mean() > 0.8 and shadow[30:34, :12].max() == 0
    assert shadow[30:34, 38:50].max() == 0


def test_roof_slopes_facing_the_sun_are_brighter():
    scene = dataclasses.replace(scene_for_tile(Z, X, Y), sun_azimuth=0.0, sun_elevation=math.radians(40))
    x = np.arange(64, dtype=np.float32)
    h = np.tile(np.maximum(6 - np.abs(x - 32) * 0.2, 0), (64, 1))  # a ridge along y, faces to -x and +x
    rad = illuminate(h, np.full((64, 64, 4), 0.3, np.float32), scene, 0.5, 0)
    assert rad[32, 40, 0] > rad[32, 24, 0]


def test_panchromatic_images_are_grey_and_rgb_are_not():
    _, _, pan = _find_scene(pan=lambda v: v, jpeg=lambda v: v == 0)
    _, _, rgb = _find_scene(pan=lambda v: not v, jpeg=lambda v: v == 0)
    rad = np.random.default_rng(0).uniform(0, 0.5, (64, 64, 4)).astype(np.float32)
    grey = expose(rad, pan, np.random.default_rng(1))
    colour = expose(rad, rgb, np.random.default_rng(1))
    assert grey.shape == colour.shape == (64, 64, 3)
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    assert not np.array_equal(colour[..., 0], colour[..., 1])


def test_sensor_stretch_saturates_the_extreme_percentiles():
    _, _, scene = _find_scene(jpeg=lambda v: v == 0)
    scene = dataclasses.replace(scene, stretch=(2.0, 98.0), haze=0.0)
    rad = np.random.default_rng(0).uniform(0, 0.5, (128, 128, 4)).astype(np.float32)
    out = expose(rad, scene, np.random.default_rng(1))[..., 0]
    assert 0.005 < (out == 0).mean() < 0.05 and 0.005 < (out == 255).mean() < 0.05


def test_sensor_effects_blur_noise_haze_and_jpeg():
    _, _, scene = _find_scene(jpeg=lambda v: v == 0)
    base = dataclasses.replace(scene, blur=0.3, noise=0.3, haze=0.0, stretch=(0.0, 100.0))
    rad = np.zeros((64, 64, 4), np.float32)
    rad[:, 32:] = 0.4
    sharp = expose(rad, base, np.random.default_rng(1)).astype(float)[..., 0]
    blurred = expose(rad, dataclasses.replace(base, blur=1.4), np.random.default_rng(1)).astype(float)[..., 0]
    assert np.abs(np.diff(blurred, axis=1)).max() < np.abs(np.diff(sharp, axis=1)).max()
    noisy = expose(rad, dataclasses.replace(base, noise=2.0), np.random.default_rng(1)).astype(float)[..., 0]
    assert noisy[:, :28].std() > sharp[:, :28].std()
    packed = expose(rad, dataclasses.replace(base, jpeg=30), np.random.default_rng(1))
    assert packed.dtype == np.uint8 and not np.array_equal(packed, expose(rad, base, np.random.default_rng(1)))
    # haze: airlight lifts the dark side before the stretch, so less contrast survives
    hazy_scene = dataclasses.replace(base, haze=0.3, stretch=(2.0, 98.0))
    clear_scene = dataclasses.replace(base, haze=0.0, stretch=(2.0, 98.0))
    rad2 = np.random.default_rng(2).uniform(0, 0.4, (64, 64, 4)).astype(np.float32)
    hazy = expose(rad2, hazy_scene, np.random.default_rng(1)).astype(float)
    clear = expose(rad2, clear_scene, np.random.default_rng(1)).astype(float)
    assert np.corrcoef(hazy.ravel(), clear.ravel())[0, 1] > 0.9


def test_render_is_fast_enough_for_the_demo():
    import time

    render_tile(Z, X, Y)
    start = time.perf_counter()
    for i in range(5):
        render_tile(Z, X + i, Y)
    assert (time.perf_counter() - start) / 5 < 5.0  # ~40-150 ms measured; only catches gross regressions


def test_worlds_of_the_facade():
    assert synthetic_randomised.WORLD_VERSION == 4
    a = synthetic.render_world_tile("randomised", Z, X, Y)
    assert np.array_equal(a[0], render_tile(Z, X, Y)[0])
    demo = synthetic.render_world_tile("demo", Z, X, Y)
    assert np.array_equal(demo[0], synthetic.render_tile(Z, X, Y)[0]) and not np.array_equal(demo[0], a[0])
    with pytest.raises(ValueError, match="world must be one of"):
        synthetic.render_world_tile("mars", Z, X, Y)


def test_synth_data_mixes_the_worlds_per_cluster():
    from looking_glass.datasets.synthdata import CLUSTER, cluster_world, synthetic_tiles

    tiles = synthetic_tiles(400, seed=0)
    worlds = {(x // CLUSTER, y // CLUSTER): cluster_world("mixed", x, y, 0) for x, y, _ in tiles}
    for x, y, _ in tiles:  # one world per cluster
        assert cluster_world("mixed", x, y, 0) == worlds[(x // CLUSTER, y // CLUSTER)]
    share = sum(w == "demo" for w in worlds.values()) / len(worlds)
    assert 0.1 < share < 0.5
    assert cluster_world("randomised", 5, 5, 0) == "randomised" and cluster_world("demo", 5, 5, 0) == "demo"
    with pytest.raises(ValueError):
        cluster_world("mars", 5, 5, 0)
