"""Real reads of every supported format, and every way a file can be wrong."""

from __future__ import annotations

import gzip
import os
import re
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from polyfuse.data import readers
from polyfuse.data.readers import SUPPORTED_SUFFIXES, read_file, resolve_path
from polyfuse.errors import DataError, DataWarning, MissingDependencyError

nib = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch):
    """Each test starts with an empty cache of the default size."""
    monkeypatch.setattr(readers, "CACHE_SIZE", 128)
    readers.clear_cache()
    yield
    readers.clear_cache()


def _junk(path: Path, seed: int = 0) -> Path:
    """Random bytes under a real-looking name: what a truncated download looks like."""
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    return path


def _testdata_dicom(name: str) -> Path:
    """A DICOM file shipped inside pydicom (looked up locally: nothing is downloaded)."""
    path = Path(pydicom.__file__).parent / "data" / "test_files" / name
    assert path.is_file(), f"{name} is not shipped with pydicom {pydicom.__version__}"
    return path


# --- NPY ----------------------------------------------------------------------------------


def test_npy_image_and_volume_round_trip(tmp_path):
    image = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    volume = np.arange(1 * 2 * 3 * 4, dtype=np.int16).reshape(1, 2, 3, 4)
    np.save(tmp_path / "img.npy", image)
    np.save(tmp_path / "vol.npy", volume)
    out = read_file(tmp_path / "img.npy", "image")
    assert out.dtype == np.float32 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, image.astype(np.float32))
    out = read_file(str(tmp_path / "vol.npy"), "image")
    assert out.shape == (1, 2, 3, 4) and out[0, 1, 2, 3] == 23.0


def test_npy_bag_and_tabular(tmp_path):
    bag = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.save(tmp_path / "bag.npy", bag)
    np.testing.assert_array_equal(read_file(tmp_path / "bag.npy", "bag"), bag)
    vector = np.array([1.5, np.nan, 3.0])  # NaN is a missing value in a table: allowed
    np.save(tmp_path / "row.npy", vector)
    out = read_file(tmp_path / "row.npy", "tabular")
    assert out.shape == (3,) and out[0] == 1.5 and np.isnan(out[1])


def test_npy_refuses_pickled_objects(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"obj\.npy.*Python objects"):
        read_file(tmp_path / "obj.npy", "tabular")


def test_npy_non_numeric_dtype(tmp_path):
    np.save(tmp_path / "words.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(DataError, match=r"words\.npy.*dtype <U1"):
        read_file(tmp_path / "words.npy", "bag")


# --- PNG / JPEG ---------------------------------------------------------------------------


def test_png_gray_is_one_channel(tmp_path):
    gray = np.arange(6 * 5, dtype=np.uint8).reshape(6, 5) * 8
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    out = read_file(tmp_path / "gray.png", "image")
    assert out.dtype == np.float32 and out.shape == (1, 6, 5)
    np.testing.assert_array_equal(out[0], gray.astype(np.float32))  # raw values, not rescaled


def test_png_rgb_and_rgba_are_channels_first(tmp_path):
    rgb = np.zeros((4, 7, 3), dtype=np.uint8)
    rgb[1, 2] = (10, 20, 30)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "rgb.png")
    out = read_file(tmp_path / "rgb.png", "image")
    assert out.shape == (3, 4, 7)
    np.testing.assert_array_equal(out[:, 1, 2], [10, 20, 30])
    np.testing.assert_array_equal(np.moveaxis(out, 0, -1), rgb)

    rgba = np.dstack([rgb, np.full((4, 7), 200, dtype=np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.PNG")  # upper-case suffix
    out = read_file(tmp_path / "rgba.PNG", "image")
    assert out.shape == (4, 4, 7)
    np.testing.assert_array_equal(out[:, 1, 2], [10, 20, 30, 200])


def test_png_16_bit_and_palette(tmp_path):
    deep = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    out = read_file(tmp_path / "deep.png", "image")
    assert out.shape == (1, 3, 4) and out.max() == 55000.0  # full 16-bit range kept

    palette = Image.new("P", (3, 2))
    palette.putpalette([0, 0, 0, 255, 128, 7] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "pal.png")
    out = read_file(tmp_path / "pal.png", "image")
    assert out.shape == (3, 2, 3)  # palette indices expanded to RGB
    np.testing.assert_array_equal(out[:, 0, 1], [255, 128, 7])
    np.testing.assert_array_equal(out[:, 0, 0], [0, 0, 0])


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg"])
def test_jpeg_rgb(tmp_path, suffix):
    rgb = np.full((16, 16, 3), (200, 100, 50), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / f"photo{suffix}", quality=95)
    out = read_file(tmp_path / f"photo{suffix}", "image")
    assert out.shape == (3, 16, 16)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), [200, 100, 50], atol=3)  # lossy


# --- NIfTI --------------------------------------------------------------------------------


def test_nifti_3d_keeps_voxel_order_and_applies_scaling(tmp_path):
    stored = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    image = nib.Nifti1Image(stored, np.eye(4))
    image.header.set_data_dtype(np.int16)
    image.header.set_slope_inter(2.0, 1.0)
    nib.save(image, tmp_path / "vol.nii")
    out = read_file(tmp_path / "vol.nii", "image")
    assert out.dtype == np.float32 and out.shape == (1, 2, 3, 4)  # (1, X, Y, Z)
    np.testing.assert_array_equal(out[0], stored * 2.0 + 1.0)
    assert out[0, 1, 2, 3] == 23 * 2 + 1


def test_nifti_gz_4d_puts_channels_first(tmp_path):
    stored = np.random.default_rng(1).normal(size=(3, 4, 5, 2)).astype(np.float32)
    nib.save(nib.Nifti1Image(stored, np.eye(4)), tmp_path / "multi.nii.gz")
    assert (tmp_path / "multi.nii.gz").read_bytes()[:2] == b"\x1f\x8b"  # really gzipped
    out = read_file(tmp_path / "multi.nii.gz", "image")
    assert out.shape == (2, 3, 4, 5)  # (C, X, Y, Z)
    np.testing.assert_array_equal(out[1], stored[..., 1])


def test_nifti_shipped_with_nibabel():
    from nibabel.testing import data_path

    anatomical = Path(data_path) / "anatomical.nii"
    nifti2 = Path(data_path) / "example_nifti2.nii.gz"
    out = read_file(anatomical, "image")
    expected = nib.load(anatomical).get_fdata(dtype=np.float32)
    assert out.shape == (1, *expected.shape) == (1, 33, 41, 25)
    np.testing.assert_array_equal(out[0], expected)
    out = read_file(nifti2, "image")  # NIfTI-2 header, 4-D
    expected = nib.load(nifti2).get_fdata(dtype=np.float32)
    assert out.shape == (2, 32, 20, 12)
    np.testing.assert_array_equal(out[1], expected[..., 1])


def test_nifti_through_symlink_without_extension(tmp_path):
    """The file name, not the symlink target's, decides the format."""
    stored = np.ones((2, 2, 2), dtype=np.float32) * 7
    nib.save(nib.Nifti1Image(stored, np.eye(4)), tmp_path / "blob.nii.gz")
    (tmp_path / "blob.nii.gz").rename(tmp_path / "3f9ac2")
    (tmp_path / "scan.nii.gz").symlink_to(tmp_path / "3f9ac2")
    out = read_file(tmp_path / "scan.nii.gz", "image")
    assert out.shape == (1, 2, 2, 2) and (out == 7).all()


# --- DICOM --------------------------------------------------------------------------------


def test_dicom_ct_small_rescaled_to_hounsfield():
    path = _testdata_dicom("CT_small.dcm")
    assert Path(pydicom.data.get_testdata_file("CT_small.dcm")) == path
    out = read_file(path, "image")
    assert out.dtype == np.float32 and out.shape == (1, 128, 128)
    # stored value 175, RescaleSlope 1, RescaleIntercept -1024
    assert out[0, 0, 0] == 175 - 1024
    raw = pydicom.dcmread(path).pixel_array
    np.testing.assert_array_equal(out[0], raw.astype(np.float32) - 1024)


def test_dicom_mr_small_without_rescale():
    path = _testdata_dicom("MR_small.dcm")
    assert Path(pydicom.data.get_testdata_file("MR_small.dcm")) == path
    out = read_file(path, "image")
    assert out.shape == (1, 64, 64)
    assert out[0, 0, 0] == 905  # MR_small has no RescaleSlope/Intercept: values as stored
    np.testing.assert_array_equal(out[0], pydicom.dcmread(path).pixel_array)


def test_dicom_slope_is_applied(tmp_path):
    dataset = pydicom.dcmread(_testdata_dicom("CT_small.dcm"))
    dataset.RescaleSlope = 2
    dataset.RescaleIntercept = 10
    dataset.save_as(tmp_path / "slope.dcm")
    out = read_file(tmp_path / "slope.dcm", "image")
    assert out[0, 0, 0] == 175 * 2 + 10


@pytest.mark.parametrize("implicit", [True, False])
def test_dicom_bare_dataset_without_preamble(tmp_path, implicit):
    """Older exports hold the dataset alone, without the 128-byte preamble and 'DICM'."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    dataset = pydicom.dcmread(_testdata_dicom("CT_small.dcm"))
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, implicit
    write_dataset(buffer, dataset)
    (tmp_path / "bare.dcm").write_bytes(buffer.getvalue())
    encoding = "Implicit" if implicit else "Explicit"
    with pytest.warns(DataWarning, match=rf"bare\.dcm: no DICOM 'DICM' header.*{encoding} VR"):
        out = read_file(tmp_path / "bare.dcm", "image")
    assert out.shape == (1, 128, 128) and out[0, 0, 0] == 175 - 1024


def test_dicom_multiframe_and_colour():
    out = read_file(_testdata_dicom("rtdose.dcm"), "image")  # 15 frames of 10 x 10
    assert out.shape == (1, 15, 10, 10)
    raw = pydicom.dcmread(_testdata_dicom("rtdose.dcm")).pixel_array
    np.testing.assert_array_equal(out[0, 7], raw[7])
    out = read_file(_testdata_dicom("SC_rgb_rle_2frame.dcm"), "image")  # RGB, 2 frames
    assert out.shape == (3, 2, 100, 100)
    raw = pydicom.dcmread(_testdata_dicom("SC_rgb_rle_2frame.dcm")).pixel_array
    np.testing.assert_array_equal(out[:, 1, 50, 50], raw[1, 50, 50])


# --- HDF5 bags ----------------------------------------------------------------------------


def test_hdf5_clam_bag(tmp_path):
    features = np.random.default_rng(2).normal(size=(7, 4)).astype(np.float32)
    with h5py.File(tmp_path / "slide.h5", "w") as store:
        store["features"] = features
        store["coords"] = np.arange(14).reshape(7, 2)
    out = read_file(tmp_path / "slide.h5", "bag")
    assert out.dtype == np.float32 and out.shape == (7, 4)
    np.testing.assert_array_equal(out, features)


def test_hdf5_bag_with_leading_batch_axis(tmp_path):
    features = np.arange(3 * 2, dtype=np.float64).reshape(1, 3, 2)
    with h5py.File(tmp_path / "slide.hdf5", "w") as store:
        store["features"] = features
    out = read_file(tmp_path / "slide.hdf5", "bag")
    assert out.shape == (3, 2) and out[2, 1] == 5.0


# --- text ---------------------------------------------------------------------------------


def test_text_utf8_and_bom(tmp_path):
    (tmp_path / "report.txt").write_text("Größe 3 cm\nkein Befund", encoding="utf-8")
    assert read_file(tmp_path / "report.txt", "text") == "Größe 3 cm\nkein Befund"
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfnote")
    assert read_file(tmp_path / "bom.txt", "text") == "note"


def test_text_not_utf8(tmp_path):
    (tmp_path / "latin.txt").write_bytes("Größe".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.txt.*UTF-8"):
        read_file(tmp_path / "latin.txt", "text")


# --- errors -------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nowhere\.npy: file not found"):
        read_file(tmp_path / "nowhere.npy", "image")


def test_directory_is_not_a_file(tmp_path):
    (tmp_path / "dir.npy").mkdir()
    with pytest.raises(DataError, match=r"dir\.npy: not a regular file"):
        read_file(tmp_path / "dir.npy", "image")


def test_unknown_extension_lists_supported(tmp_path):
    (tmp_path / "scan.tif").write_bytes(b"II*\x00")
    with pytest.raises(DataError, match=r"scan\.tif: unknown file extension '\.tif'") as info:
        read_file(tmp_path / "scan.tif", "image")
    for suffix in SUPPORTED_SUFFIXES:
        assert suffix in str(info.value)
    (tmp_path / "noext").write_bytes(b"")
    with pytest.raises(DataError, match=r"noext: unknown file extension \(none\)"):
        read_file(tmp_path / "noext", "image")


def test_extension_that_cannot_hold_the_kind(tmp_path):
    Image.new("L", (2, 2)).save(tmp_path / "x.png")
    with pytest.raises(DataError, match=r"x\.png: a \.png file cannot hold bag.*\.h5"):
        read_file(tmp_path / "x.png", "bag")


def test_unknown_kind(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(DataError, match=r"a\.npy.*kind 'sequence'"):
        read_file(tmp_path / "a.npy", "sequence")


@pytest.mark.parametrize(
    ("name", "kind", "what"),
    [
        ("broken.png", "image", "not a readable PNG/JPEG image"),
        ("broken.jpg", "image", "not a readable PNG/JPEG image"),
        ("broken.nii.gz", "image", "not a NIfTI file"),
        ("broken.nii", "image", "not a NIfTI file"),
        ("broken.h5", "bag", "not a readable HDF5"),
        ("broken.dcm", "image", "not a readable DICOM"),
        ("broken.npy", "bag", "not a NumPy .npy file"),
    ],
)
def test_corrupt_files(tmp_path, name, kind, what):
    _junk(tmp_path / name)
    with pytest.raises(DataError, match=re.escape(name)) as info:
        read_file(tmp_path / name, kind)
    assert what in str(info.value)


def test_corrupt_errors_chain_the_library_exception(tmp_path):
    _junk(tmp_path / "cut.h5")
    with pytest.raises(DataError) as info:
        read_file(tmp_path / "cut.h5", "bag")
    assert isinstance(info.value.__cause__, OSError)


def test_truncated_gzip_nifti_and_png(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), tmp_path / "v.nii.gz")
    whole = gzip.decompress((tmp_path / "v.nii.gz").read_bytes())
    (tmp_path / "cut.nii.gz").write_bytes(gzip.compress(whole[:600]))
    with pytest.raises(DataError, match=r"cut\.nii\.gz: not a readable NIfTI"):
        read_file(tmp_path / "cut.nii.gz", "image")
    Image.fromarray(np.zeros((64, 64), np.uint8) + 9).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:60])
    with pytest.raises(DataError, match=r"cut\.png: not a readable PNG/JPEG image"):
        read_file(tmp_path / "cut.png", "image")


def test_a_bad_file_is_a_data_error_but_a_polyfuse_failure_is_not(tmp_path, monkeypatch):
    """Issue #16: a failure after the file was decoded (polyfuse converting it) was reported
    as "not a readable image", sending the user to fix a file that is fine."""
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "fine.png")
    (tmp_path / "bad.png").write_bytes((tmp_path / "fine.png").read_bytes()[:40])
    with pytest.raises(DataError, match=r"bad\.png: not a readable PNG/JPEG image"):
        read_file(tmp_path / "bad.png", "image")

    def conversion_bug(image):
        raise ValueError("polyfuse's own conversion failed")

    monkeypatch.setattr(readers, "_pil_to_array", conversion_bug)
    for size in (128, 0):  # through the cache and without it
        monkeypatch.setattr(readers, "CACHE_SIZE", size)
        with pytest.raises(ValueError, match="own conversion failed") as info:
            read_file(tmp_path / "fine.png", "image")
        assert f"{tmp_path / 'fine.png'} (image) after decoding it: a polyfuse bug" in "".join(
            info.value.__notes__
        )


def test_dicom_truncated_pixels_and_no_pixels():
    with pytest.raises(DataError, match=r"MR_truncated\.dcm.*cannot be decoded"):
        read_file(_testdata_dicom("MR_truncated.dcm"), "image")
    with pytest.raises(DataError, match=r"rtplan\.dcm.*no pixel data"):
        read_file(_testdata_dicom("rtplan.dcm"), "image")
    with pytest.raises(DataError, match=r"rtstruct\.dcm.*no 'DICM' header.*no pixel data"):
        read_file(_testdata_dicom("rtstruct.dcm"), "image")  # bare dataset, no pixels


def test_hdf5_without_features_lists_datasets(tmp_path):
    with h5py.File(tmp_path / "odd.h5", "w") as store:
        store["coords"] = np.zeros((3, 2))
        store["tiles/feats"] = np.zeros((3, 4))
    with pytest.raises(DataError, match=r"odd\.h5: no 'features'.*'coords', 'tiles/feats'"):
        read_file(tmp_path / "odd.h5", "bag")


@pytest.mark.parametrize(
    ("shape", "message"),
    [((2, 3, 4), r"\(N, D\) or \(1, N, D\).*\(2, 3, 4\)"), ((0, 4), "empty: 0 instances")],
)
def test_hdf5_bag_bad_shape(tmp_path, shape, message):
    with h5py.File(tmp_path / "bad.h5", "w") as store:
        store["features"] = np.zeros(shape)
    with pytest.raises(DataError, match=r"bad\.h5: .*" + message):
        read_file(tmp_path / "bad.h5", "bag")


@pytest.mark.parametrize(
    ("shape", "kind", "message"),
    [
        ((4, 5), "image", r"image must be 3-D .* 2-D with shape \(4, 5\) \(store .npy images"),
        ((1, 2, 3, 4, 5), "image", r"5-D"),
        ((3,), "bag", r"bag must be 2-D .* 1-D"),
        ((2, 3), "tabular", r"tabular vector must be 1-D .* 2-D"),
        ((3, 0, 4), "image", r"empty axis"),
    ],
)
def test_wrong_dimensions_for_kind(tmp_path, shape, kind, message):
    np.save(tmp_path / "arr.npy", np.zeros(shape))
    with pytest.raises(DataError, match=r"arr\.npy: .*" + message):
        read_file(tmp_path / "arr.npy", kind)


def test_nifti_with_too_many_dimensions(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 2, 2), np.float32), np.eye(4)), tmp_path / "5d.nii")
    with pytest.raises(DataError, match=r"5d\.nii: a NIfTI image of shape \(2, 2, 2, 2, 2\)"):
        read_file(tmp_path / "5d.nii", "image")


def test_non_finite_values_are_counted(tmp_path):
    image = np.zeros((1, 4, 4), np.float32)
    image[0, 0, :2] = np.nan
    image[0, 3, 3] = np.inf
    np.save(tmp_path / "nan_img.npy", image)
    with pytest.raises(DataError, match=r"nan_img\.npy: 3 non-finite values \(2 NaN, 1 ±inf\)"):
        read_file(tmp_path / "nan_img.npy", "image")
    with h5py.File(tmp_path / "inf_bag.h5", "w") as store:
        store["features"] = np.array([[1.0, -np.inf], [0.0, 1.0]])
    with pytest.raises(DataError, match=r"inf_bag\.h5: 1 non-finite values \(0 NaN, 1 ±inf\)"):
        read_file(tmp_path / "inf_bag.h5", "bag")
    np.save(tmp_path / "inf_row.npy", np.array([1.0, np.inf]))
    with pytest.raises(DataError, match=r"inf_row\.npy: 1 infinite"):
        read_file(tmp_path / "inf_row.npy", "tabular")


def test_nifti_nan_voxels(tmp_path):
    volume = np.ones((3, 3, 3), np.float32)
    volume[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "holes.nii.gz")
    with pytest.raises(DataError, match=r"holes\.nii\.gz: 1 non-finite values \(1 NaN"):
        read_file(tmp_path / "holes.nii.gz", "image")


def test_missing_optional_dependency_names_the_extra(tmp_path, monkeypatch):
    nib.save(nib.Nifti1Image(np.ones((2, 2, 2), np.float32), np.eye(4)), tmp_path / "v.nii")
    monkeypatch.setitem(sys.modules, "nibabel", None)  # import nibabel now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"polyfuse\[imaging\]"):
        read_file(tmp_path / "v.nii", "image")


# --- resolve_path -------------------------------------------------------------------------


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    np.save(root / "images" / "p1.npy", np.zeros((1, 2, 2)))
    np.save(tmp_path / "secret.npy", np.zeros(3))
    return root


def test_resolve_path_inside_root(data_root):
    path = resolve_path(data_root, "images/p1.npy", sample_id="p1", column="ct")
    assert path == data_root.resolve() / "images" / "p1.npy"
    assert read_file(path, "image").shape == (1, 2, 2)
    absolute = str(data_root / "images" / "p1.npy")  # an absolute path inside the root is fine
    assert resolve_path(data_root, absolute, sample_id="p1", column="ct").samefile(path)
    inner = resolve_path(data_root, "images/../images/p1.npy", sample_id="p1", column="ct")
    assert inner.samefile(path)


@pytest.mark.parametrize("relative", ["../secret.npy", "images/../../secret.npy"])
def test_resolve_path_refuses_dotdot(data_root, relative):
    with pytest.raises(DataError, match=r"sample 'p7', column 'ct'.*leads outside the data root"):
        resolve_path(data_root, relative, sample_id="p7", column="ct")


def test_resolve_path_refuses_absolute_outside(data_root, tmp_path):
    with pytest.raises(DataError, match=r"sample 'p2', column 'wsi'.*outside"):
        resolve_path(data_root, str(tmp_path / "secret.npy"), sample_id="p2", column="wsi")
    with pytest.raises(DataError, match=r"sample 'p2', column 'wsi'.*outside"):
        resolve_path(data_root, "/etc/passwd", sample_id="p2", column="wsi")


def test_resolve_path_refuses_symlink_outside(data_root, tmp_path):
    (data_root / "images" / "link.npy").symlink_to(tmp_path / "secret.npy")
    (data_root / "escape").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(DataError, match=r"sample 'p3', column 'ct'.*outside"):
        resolve_path(data_root, "images/link.npy", sample_id="p3", column="ct")
    with pytest.raises(DataError, match=r"sample 'p3', column 'ct'.*outside"):
        resolve_path(data_root, "escape/secret.npy", sample_id="p3", column="ct")


def test_resolve_path_keeps_symlink_name_inside_root(data_root):
    (data_root / "store").mkdir()
    os.replace(data_root / "images" / "p1.npy", data_root / "store" / "ab12cd")
    (data_root / "images" / "p1.npy").symlink_to(data_root / "store" / "ab12cd")
    path = resolve_path(data_root, "images/p1.npy", sample_id="p1", column="ct")
    assert path.name == "p1.npy"
    assert read_file(path, "image").shape == (1, 2, 2)


def test_resolve_path_missing_file_and_empty_entry(data_root):
    with pytest.raises(DataError, match=r"sample 'p9', column 'ct': file 'images/p9.npy' does"):
        resolve_path(data_root, "images/p9.npy", sample_id="p9", column="ct")
    with pytest.raises(DataError, match=r"sample 'p9', column 'ct': empty"):
        resolve_path(data_root, "  ", sample_id="p9", column="ct")
    with pytest.raises(DataError, match=r"sample 'p9', column 'ct': .*not a regular file"):
        resolve_path(data_root, "images", sample_id="p9", column="ct")
    with pytest.raises(DataError, match=r"sample 'p9', column 'ct': cannot resolve"):
        resolve_path(data_root, "images/p\x00.npy", sample_id="p9", column="ct")


# --- cache --------------------------------------------------------------------------------


def test_cache_hits_and_returns_independent_copies(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((1, 2, 2)))
    first = read_file(tmp_path / "a.npy", "image")
    first[:] = -5  # a caller's in-place change must not reach the cache
    second = read_file(tmp_path / "a.npy", "image")
    info = readers.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    assert second.flags.writeable and (second == 1).all()


def test_cache_rereads_a_rewritten_file(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.ones((1, 2, 2)))
    assert read_file(path, "image")[0, 0, 0] == 1
    np.save(path, np.full((1, 2, 2), 2.0))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later mtime
    assert read_file(path, "image")[0, 0, 0] == 2


def test_cache_size_follows_the_module_constant(tmp_path, monkeypatch):
    for index in range(3):
        np.save(tmp_path / f"{index}.npy", np.full(2, index))
    monkeypatch.setattr(readers, "CACHE_SIZE", 2)
    for index in (0, 1, 2, 0):
        assert read_file(tmp_path / f"{index}.npy", "tabular")[0] == index
    info = readers.cache_info()
    assert info.maxsize == 2 and info.currsize == 2 and info.hits == 0  # 0 was evicted
    monkeypatch.setattr(readers, "CACHE_SIZE", 0)  # disabled: read every time
    assert read_file(tmp_path / "2.npy", "tabular")[0] == 2
