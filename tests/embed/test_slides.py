"""Whole slides cut into tissue tiles and embedded: on real pyramidal TIFF slides the tests write
(Aperio-style, stating 20×, and generic tiled TIFF, stating nothing), read through OpenSlide.

The slide is white glass with a little noise and two textured rectangles of stain, so which
tiles are tissue, and what each tile holds, is known from the painted image itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from polyfuse.data.readers import read_file, read_patch_coords
from polyfuse.errors import ConfigError, DataError, MissingDependencyError

tifffile = pytest.importorskip("tifffile")
pytest.importorskip("openslide")
h5py = pytest.importorskip("h5py")

from polyfuse.embed import slides  # noqa: E402  (after the skips: needs OpenSlide)
from polyfuse.embed.slides import (  # noqa: E402
    SlideTiling,
    embed_slide,
    open_slide,
    read_slide_link,
    slide_thumbnail,
    tile_grid,
    tissue_mask,
)

HEIGHT, WIDTH = 1536, 2048
PINK, PURPLE = (225, 140, 195), (125, 60, 165)
# (top, bottom, left, right) in level-0 pixels; edges on multiples of 4 (the thumbnail's pixel)
# and no 128- or 256-pixel grid cell near a tissue share tested, so the expected tiles are clear
BLOBS = [((236, 796, 344, 1052), PINK), ((852, 1316, 1192, 1880), PURPLE)]
TILE = 128


def painted() -> tuple[np.ndarray, np.ndarray]:
    """The level-0 image (glass with noise, two textured stains) and its true tissue mask."""
    rng = np.random.default_rng(0)
    image = 255 - rng.integers(0, 6, (HEIGHT, WIDTH, 3))
    truth = np.zeros((HEIGHT, WIDTH), bool)
    for (top, bottom, left, right), colour in BLOBS:
        texture = rng.integers(-15, 16, (bottom - top, right - left, 3))
        image[top:bottom, left:right] = np.asarray(colour) + texture
        truth[top:bottom, left:right] = True
    return image.astype(np.uint8), truth


def pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """Level 0 and its halvings (2 × 2 means), as a scanner's pyramid."""
    out = [image]
    for _ in range(levels - 1):
        a = out[-1].astype(np.float64)
        half = a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2, 3).mean(axis=(1, 3))
        out.append(np.round(half).astype(np.uint8))
    return out


def write_slide(
    path: Path, image: np.ndarray, *, power: float | None = 20, compression: str | None = None
) -> Path:
    """A tiled pyramidal TIFF, one page per level. With `power`, an Aperio SVS: the first page's
    description starts 'Aperio Image Library' and states `AppMag`, which OpenSlide reads as the
    objective power. Without, a generic tiled TIFF, whose power OpenSlide cannot know."""
    h, w = image.shape[:2]
    aperio = f"Aperio Image Library v12.0.15\n{w}x{h} [0,0 {w}x{h}] (256x256) |AppMag = {power}"
    with tifffile.TiffWriter(path) as tif:
        for i, level in enumerate(pyramid(image, 3)):
            tif.write(
                level,
                tile=(256, 256),
                photometric="rgb",
                compression=compression,
                description=aperio if power and i == 0 else None,
                subfiletype=0 if i == 0 else 1,
                metadata=None,
            )
    return path


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    return write_slide(tmp_path_factory.mktemp("slides") / "case.svs", painted()[0])


@pytest.fixture(autouse=True)
def small_thumbnail(monkeypatch):
    """Tissue found on a quarter-size thumbnail (read from level 2), as on a real slide, where
    the thumbnail is far smaller than level 0."""
    monkeypatch.setattr(slides, "TISSUE_SIDE", WIDTH // 4)


def expected_tiles(side: int, min_tissue: float = 0.5) -> set[tuple[int, int]]:
    """The grid cells of `side` level-0 pixels that are at least `min_tissue` stain, counted on
    the painted image itself (not on any thumbnail)."""
    truth = painted()[1]
    cells = set()
    for y in range(0, HEIGHT - side + 1, side):
        for x in range(0, WIDTH - side + 1, side):
            share = truth[y : y + side, x : x + side].mean()
            assert abs(share - min_tissue) > 0.03, "the test's blobs make an ambiguous cell"
            if share >= min_tissue:
                cells.add((x, y))
    return cells


def mean_rgb(tiles: np.ndarray) -> np.ndarray:
    return tiles.reshape(len(tiles), -1, 3).mean(axis=1).astype(np.float32)


def test_tiles_cover_the_stain_and_hold_its_pixels(slide, tmp_path):
    image, truth = painted()
    out = tmp_path / "bag.h5"
    n = embed_slide(slide, mean_rgb, out, SlideTiling(tile_size=TILE))
    with h5py.File(out, "r") as f:
        coords, features = f["coords"][()], f["features"][()]
        attrs = dict(f.attrs)
    assert coords.dtype == np.int64 and features.dtype == np.float32
    assert n == len(coords) == len(features) == 38
    assert {tuple(c) for c in coords} == expected_tiles(TILE)
    for x, y in coords:  # every tile mostly stain: none over bare glass
        assert truth[y : y + TILE, x : x + TILE].mean() >= 0.5
    truth_means = [image[y : y + TILE, x : x + TILE].reshape(-1, 3).mean(0) for x, y in coords]
    np.testing.assert_allclose(features, np.asarray(truth_means), atol=1e-3)
    assert attrs["tile_size_level0"] == TILE and attrs["tile_size"] == TILE
    assert attrs["magnification"] == 20 and attrs["source"] == "case.svs"
    assert tuple(attrs["level0_dimensions"]) == (WIDTH, HEIGHT)
    assert read_slide_link(out) == ("case.svs", float(TILE))


def test_min_tissue_decides_which_edge_tiles_are_kept(slide):
    loose = tile_grid(slide, SlideTiling(tile_size=TILE, min_tissue=0.1))
    assert {tuple(c) for c in loose.coords} == expected_tiles(TILE, 0.1)
    assert len(loose.coords) > 38


def test_a_lower_magnification_covers_more_of_the_slide_per_tile(slide, tmp_path):
    image = painted()[0]
    out = tmp_path / "bag10.h5"
    n = embed_slide(slide, mean_rgb, out, SlideTiling(magnification=10, tile_size=TILE))
    grid = tile_grid(slide, SlideTiling(magnification=10, tile_size=TILE))
    assert (grid.tile_size_level0, grid.level, grid.read_size) == (2 * TILE, 1, TILE)
    with h5py.File(out, "r") as f:
        coords, features = f["coords"][()], f["features"][()]
        assert f.attrs["tile_size_level0"] == 2 * TILE and f.attrs["magnification"] == 10
    assert n == len(coords) and {tuple(c) for c in coords} == expected_tiles(2 * TILE)
    side = 2 * TILE  # a tile read from level 1 holds the mean of 2 × 2 level-0 pixels
    truth_means = [image[y : y + side, x : x + side].reshape(-1, 3).mean(0) for x, y in coords]
    np.testing.assert_allclose(features, np.asarray(truth_means), atol=0.6)


def test_a_magnification_between_levels_is_resized_to_the_tile_size(slide, tmp_path):
    shapes = []

    def embed(tiles: np.ndarray) -> np.ndarray:
        shapes.append(tiles.shape[1:])
        return mean_rgb(tiles)

    tiling = SlideTiling(magnification=15, tile_size=96)  # 128 level-0 pixels, read at level 0
    embed_slide(slide, embed, tmp_path / "bag15.h5", tiling)
    grid = tile_grid(slide, tiling)
    assert (grid.tile_size_level0, grid.level, grid.read_size) == (128, 0, 128)
    assert set(shapes) == {(96, 96, 3)}


def test_tiles_are_embedded_in_batches_of_at_most_batch_size(slide, tmp_path):
    calls = []

    def embed(tiles: np.ndarray) -> np.ndarray:
        assert tiles.dtype == np.uint8 and tiles.shape[1:] == (TILE, TILE, 3)
        calls.append(len(tiles))
        return mean_rgb(tiles)

    n = embed_slide(slide, embed, tmp_path / "bag.h5", SlideTiling(tile_size=TILE, batch_size=8))
    assert calls == [8, 8, 8, 8, 6] and sum(calls) == n


def test_the_bag_is_read_by_the_projects_reader(slide, tmp_path):
    out = tmp_path / "bag.h5"
    n = embed_slide(slide, mean_rgb, out, SlideTiling(tile_size=TILE))
    bag = read_file(out, "bag")
    coords = read_patch_coords(out)
    assert isinstance(bag, np.ndarray) and bag.shape == (n, 3)
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(coords, f["coords"][()])
        np.testing.assert_array_equal(bag, f["features"][()])


def test_a_failed_run_leaves_no_bag(slide, tmp_path):
    calls = []

    def failing(tiles: np.ndarray) -> np.ndarray:
        calls.append(len(tiles))
        if len(calls) == 2:
            raise RuntimeError("encoder crashed")
        return mean_rgb(tiles)

    out = tmp_path / "bags" / "bag.h5"
    with pytest.raises(RuntimeError, match="encoder crashed"):
        embed_slide(slide, failing, out, SlideTiling(tile_size=TILE, batch_size=8))
    assert len(calls) == 2
    assert list(out.parent.iterdir()) == []  # neither the bag nor its temporary file


# bare glass as scanners give it: white, tinted (too pale to be stain, yet saturated), dim grey
GLASS = {"white": (252, 252, 252), "tinted": (252, 226, 246), "grey": (200, 200, 200)}


@pytest.mark.parametrize("glass", GLASS)
def test_a_blank_slide_is_an_error_naming_it_and_tissue(tmp_path, glass):
    rng = np.random.default_rng(1)
    pixels = np.asarray(GLASS[glass]) + rng.integers(-3, 4, (512, 768, 3))
    blank = write_slide(tmp_path / "blank.svs", pixels.astype(np.uint8))
    with pytest.raises(DataError, match=r"blank\.svs.*no tissue"):
        embed_slide(blank, mean_rgb, tmp_path / "bag.h5", SlideTiling(tile_size=TILE))
    assert not (tmp_path / "bag.h5").exists()


def test_a_truncated_slide_is_an_error_naming_it(slide, tmp_path):
    cut = tmp_path / "cut.svs"
    cut.write_bytes(slide.read_bytes()[: slide.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut\.svs: OpenSlide cannot open"):
        open_slide(cut)
    with pytest.raises(DataError, match=r"cut\.svs"):
        embed_slide(cut, mean_rgb, tmp_path / "bag.h5", SlideTiling(tile_size=TILE))


def test_a_damaged_tile_is_an_error_naming_the_slide_and_leaves_no_bag(tmp_path):
    path = write_slide(tmp_path / "damaged.svs", painted()[0][:768, :1024], compression="zlib")
    with tifffile.TiffFile(path) as tif:  # a level-0 tile under the pink stain
        page = tif.pages[0]
        tile = (300 // 256) * page.chunked[1] + 500 // 256
        offset, size = page.dataoffsets[tile], page.databytecounts[tile]
    data = bytearray(path.read_bytes())
    data[offset : offset + size] = b"\xff" * size
    path.write_bytes(bytes(data))
    out = tmp_path / "bag.h5"
    with pytest.raises(DataError, match=r"damaged\.svs: OpenSlide cannot read"):
        embed_slide(path, mean_rgb, out, SlideTiling(tile_size=TILE))
    assert not out.exists()


@pytest.mark.parametrize("name", ["scan.png", "scan.xyz", "scan"])
def test_a_format_openslide_does_not_read_is_an_error_naming_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(DataError, match=rf"{name}: unsupported format.*\.svs, \.tif"):
        open_slide(path)


def test_a_missing_slide_is_an_error_naming_it(tmp_path):
    with pytest.raises(DataError, match=r"gone\.svs: file not found"):
        open_slide(tmp_path / "gone.svs")


def test_a_slide_without_its_power_needs_base_magnification(tmp_path):
    generic = write_slide(tmp_path / "plain.tif", painted()[0], power=None)
    with open_slide(generic) as handle:
        assert handle.properties.get("openslide.objective-power") is None
    with pytest.raises(DataError, match=r"plain\.tif: .*set base_magnification"):
        tile_grid(generic, SlideTiling(tile_size=TILE))
    grid = tile_grid(generic, SlideTiling(magnification=10, tile_size=TILE, base_magnification=20))
    assert grid.tile_size_level0 == 2 * TILE
    assert {tuple(c) for c in grid.coords} == expected_tiles(2 * TILE)


def test_a_stated_power_wins_and_cannot_be_exceeded(slide):
    grid = tile_grid(slide, SlideTiling(tile_size=TILE, base_magnification=40))
    assert grid.base_magnification == 20 and grid.tile_size_level0 == TILE
    with pytest.raises(DataError, match=r"case\.svs: the slide was scanned at 20×"):
        tile_grid(slide, SlideTiling(magnification=40, tile_size=TILE))


@pytest.mark.parametrize(
    "option",
    [
        {"magnification": 0},
        {"tile_size": 0},
        {"min_tissue": 0},
        {"min_tissue": 1.5},
        {"base_magnification": -20},
        {"batch_size": 0},
    ],
)
def test_a_tiling_that_cannot_work_is_refused_by_name(option):
    with pytest.raises(ConfigError, match=rf"{next(iter(option))} must be"):
        SlideTiling(**option)


def test_without_openslide_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "openslide", None)  # `import openslide` fails
    with pytest.raises(MissingDependencyError, match=r"polyfuse\[slides\]"):
        open_slide(tmp_path / "case.svs")


@pytest.mark.parametrize("glass", [None, (232, 212, 228)])
def test_tissue_is_the_stain_not_the_glass(glass):
    """Also on glass tinted as dark and saturated as some scanners leave it: no fixed floor
    tells it from stain, Otsu's threshold on the slide's own saturations does."""
    image, truth = painted()
    if glass is not None:
        noise = np.random.default_rng(2).integers(-3, 4, image.shape)
        image = np.where(truth[..., None], image, np.asarray(glass) + noise).astype(np.uint8)
    mask = tissue_mask(image)
    assert not (mask & ~truth).any()  # no glass pixel
    # Otsu's cut lies about midway between the glass's and the stain's mean saturations: on
    # tinted glass it loses the palest tail of the textured pink (1.8 % of the stain here)
    assert (mask & truth).sum() > 0.97 * truth.sum()


def test_the_thumbnail_is_the_slide_shrunk_with_its_scale(slide):
    thumbnail, scale = slide_thumbnail(slide, max_size=512)
    assert thumbnail.dtype == np.uint8 and thumbnail.shape == (384, 512, 3)
    assert scale == 0.25
    (top, bottom, left, right), colour = BLOBS[0]
    inside = thumbnail[round(top * scale) + 2 : round(bottom * scale) - 2]
    inside = inside[:, round(left * scale) + 2 : round(right * scale) - 2]
    np.testing.assert_allclose(inside.reshape(-1, 3).mean(0), colour, atol=2)
    assert thumbnail[:20, :20].min() >= 245  # glass


def test_a_thumbnail_read_in_strips_is_the_same(slide, monkeypatch):
    """A slide without a small level is read in strips, not whole: the strips fit together."""
    whole, scale = slide_thumbnail(slide, max_size=1024)
    monkeypatch.setattr(slides, "_STRIP_PIXELS", 1024 * 100)  # 8 strips of level 1
    strips, same_scale = slide_thumbnail(slide, max_size=1024)
    assert scale == same_scale == 0.5
    np.testing.assert_array_equal(strips, whole)


def test_attention_is_drawn_over_the_thumbnail(slide, tmp_path):
    from PIL import Image

    from polyfuse.explain.maps import plot_slide_attention

    out = tmp_path / "bag.h5"
    embed_slide(slide, mean_rgb, out, SlideTiling(tile_size=TILE))
    coords = read_patch_coords(out)
    attention = np.linspace(0, 1, len(coords))
    thumb = slide_thumbnail(slide, max_size=512)
    side = read_slide_link(out)[1]
    png = plot_slide_attention(
        [coords, coords],
        [attention, attention],
        ["with slide", "without"],
        "attention",
        tmp_path / "map.png",
        thumbnails=[thumb, None],
        tile_size_level0=[side, None],
    )
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert pixels.std() > 20
    one = plot_slide_attention(
        [coords[:1]], [attention[:1]], ["s"], "t", tmp_path / "one.png", [thumb], [side]
    )

    def blue(path: Path) -> int:  # the thumbnail is grey: blue is the overlay and its colour bar
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
        return int((rgb[..., 2] - rgb[..., 0] > 25).sum())

    assert blue(png) - blue(one) > 30 * 15**2  # 37 more tiles, each ~19 pixels wide on the figure
    with pytest.raises(ValueError, match="tile_size_level0"):
        plot_slide_attention([coords], [attention], ["s"], "t", tmp_path / "x.png", [thumb])
