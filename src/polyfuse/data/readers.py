"""Read one modality file per sample into the layout its kind expects, or say exactly why not.

Readers know files, not models: they return a float32 NumPy array (or a ``str`` for text) in the
canonical per-sample layout of DESIGN.md §2, and every problem of a file becomes a `DataError`
that names the file and its format; a failure of polyfuse's own, after the file was decoded,
stays the bug it is (see `read_file`). The imaging libraries (Pillow, nibabel, pydicom) are
optional and imported only when a file of their format is read, so the core install stays light.

Layouts returned by `read_file`:

* image: ``(C, H, W)`` or ``(C, D, H, W)``, channels first.
  - PNG/JPEG: grayscale ``C=1``, gray+alpha ``C=2``, RGB ``C=3``, RGBA ``C=4``; palette images
    are expanded to RGB(A). Raw pixel values (0-255, or 0-65535 for 16-bit PNG), not rescaled:
    intensity normalisation is a preprocessing choice fitted per fold, not a reading choice.
  - NIfTI: voxel axes are kept in the order stored in the file, with no reorientation, and a
    channel axis is put first: 3-D ``(X, Y, Z)`` -> ``(1, X, Y, Z)``; 4-D ``(X, Y, Z, C)`` ->
    ``(C, X, Y, Z)``; 2-D ``(X, Y)`` -> ``(1, X, Y)``; a 5-D vector image ``(X, Y, Z, 1, C)``
    is treated as 4-D. The header's ``scl_slope``/``scl_inter`` are applied. Volumes from
    different scanners may differ in orientation: reorient them (e.g. to RAS) before training.
  - DICOM: ``pixel_array`` with RescaleSlope/RescaleIntercept applied (CT in Hounsfield units);
    2-D ``(H, W)`` -> ``(1, H, W)``; multi-frame ``(F, H, W)`` -> ``(1, F, H, W)``; colour
    ``(H, W, S)`` -> ``(S, H, W)`` and ``(F, H, W, S)`` -> ``(S, F, H, W)``; PALETTE COLOR is
    expanded to RGB. MONOCHROME1 is returned as stored (not inverted).
  - NPY: must already be ``(C, H, W)`` or ``(C, D, H, W)``; nothing is transposed.
* bag: ``(N, D)`` with ``N >= 1``: an ``.npy`` array, or a CLAM HDF5 file whose ``features``
  dataset is ``(N, D)`` or ``(1, N, D)`` (other datasets are ignored by the model;
  ``read_patch_coords`` reads ``coords`` for attention drawn on the slide).
* tabular: a 1-D ``(F,)`` ``.npy`` vector; NaN is allowed there (imputed later), ±inf is not.
* text: a UTF-8 ``.txt`` file (a leading byte-order mark is dropped) as ``str``.

Images and bags must be finite: a NaN or ±inf there would silently poison a whole batch.
"""

from __future__ import annotations

import functools
import gzip
import os
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from polyfuse.errors import DataError, DataWarning, PolyfuseError, require

SUPPORTED_SUFFIXES: tuple[str, ...] = (
    ".npy",
    ".png",
    ".jpg",
    ".jpeg",
    ".nii",
    ".nii.gz",
    ".dcm",
    ".h5",
    ".hdf5",
    ".txt",
)
"""File extensions `read_file` understands (matched case-insensitively)."""

SUFFIXES_BY_KIND: dict[str, tuple[str, ...]] = {
    "image": (".npy", ".png", ".jpg", ".jpeg", ".nii", ".nii.gz", ".dcm"),
    "bag": (".npy", ".h5", ".hdf5"),
    "tabular": (".npy",),
    "text": (".txt",),
}
"""Which extensions may hold which modality kind; a mismatch is reported before any reading."""

READABLE_KINDS: tuple[str, ...] = tuple(SUFFIXES_BY_KIND)

CACHE_SIZE: int = 128
"""How many decoded files each process keeps (LRU); 0 disables the cache.

Why a cache: a lazily-read dataset asks for the same files every epoch, and decoding a PNG, a
gzipped NIfTI or a DICOM costs far more than copying the array. Why a bound, counted in files
and not bytes: memory. 128 small images or bags cost little, but 128 CT volumes of 300 MB would
not fit, so lower it for large volumes, or set 0. The cache lives in each process: DataLoader
workers each hold their own, and they keep it across epochs only with
``persistent_workers=True``. Assign a new value to ``polyfuse.data.readers.CACHE_SIZE`` at any
time; the next `read_file` call rebuilds the cache with that size (dropping its contents).
"""

_NPY_MAGIC = b"\x93NUMPY"
_GZIP_MAGIC = b"\x1f\x8b"


class _FileProblem(Exception):
    """What is wrong with a file, worded to follow its path; `read_file` makes it a DataError."""


def read_file(path: Path | str, kind: str) -> np.ndarray | str:
    """Read one sample's file for a modality of `kind`, checked against that kind's layout.

    Dispatches on the file name's extension (see `SUPPORTED_SUFFIXES`). Arrays come back as
    writable float32 copies, so callers may modify them without corrupting the cache.
    """
    path = Path(path)
    suffix = _suffix_for(path, kind)
    resolved, mtime_ns = _regular_file(path)
    try:
        if CACHE_SIZE <= 0:
            return _read_checked(resolved, kind, suffix)
        value = _cached_reader()(resolved, mtime_ns, kind, suffix)
    except _FileProblem as problem:
        raise DataError(f"{path}: {problem}") from problem.__cause__
    except (PolyfuseError, MemoryError):  # a missing optional dependency, a file too large
        raise
    except Exception as exc:
        # Every decoding step turns its failure into a _FileProblem, so this is polyfuse failing
        # on a file it could decode, not the file's fault: the exception keeps its type and
        # traceback, which a bug report needs, and gains a note naming the file. A DataError
        # here would send the user to fix a file that is fine.
        exc.add_note(f"polyfuse failed on {path} ({kind}) after decoding it: a polyfuse bug")
        raise
    return value.copy() if isinstance(value, np.ndarray) else value


def _suffix_for(path: Path, kind: str) -> str:
    """The file's extension, once it is known to be one that can hold `kind`."""
    if kind not in SUFFIXES_BY_KIND:
        raise DataError(
            f"{path}: cannot read a file for modality kind '{kind}'; "
            f"files can hold kinds {', '.join(READABLE_KINDS)}"
        )
    suffix = file_suffix(path)
    if suffix not in SUPPORTED_SUFFIXES:
        shown = f"'{suffix}'" if suffix else "(none)"
        raise DataError(
            f"{path}: unknown file extension {shown}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if suffix not in SUFFIXES_BY_KIND[kind]:
        raise DataError(
            f"{path}: a {suffix} file cannot hold {kind} data; "
            f"for {kind} use {', '.join(SUFFIXES_BY_KIND[kind])}"
        )
    return suffix


def _regular_file(path: Path) -> tuple[str, int]:
    """The resolved path and modification time (the cache key) of an existing regular file."""
    try:
        info = path.stat()
        resolved = path.resolve(strict=True)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except (OSError, ValueError) as exc:  # permissions, a NUL byte in the name, ...
        raise DataError(f"{path}: cannot access the file ({exc})") from exc
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"{path}: not a regular file (is it a directory?)")
    return str(resolved), info.st_mtime_ns


def resolve_path(root: Path | str, relative: str, *, sample_id: str, column: str) -> Path:
    """Join a manifest's file entry to the data root, refusing paths that leave the root.

    A manifest is user data: an entry such as ``../../etc/passwd``, an absolute path elsewhere,
    or a symlink out of the root must not make polyfuse read (and later report on) files
    outside the data set. The returned path is the joined one, not the symlink target, so the
    file keeps its own name (and extension) when it links into a content-addressed store
    inside the root; the fully resolved target is what is checked.
    """
    where = f"sample '{sample_id}', column '{column}'"
    if not isinstance(relative, str | os.PathLike) or not str(relative).strip():
        raise DataError(f"{where}: empty or missing file path ({relative!r})")
    root_resolved = Path(root).resolve()
    joined = root_resolved / relative
    try:
        target = joined.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte, ...
        raise DataError(f"{where}: cannot resolve file path '{relative}' ({exc})") from exc
    if not target.is_relative_to(root_resolved):
        raise DataError(
            f"{where}: file path '{relative}' leads outside the data root {root_resolved} "
            f"(to {target}); paths must stay inside the root"
        )
    try:
        exists, regular = target.exists(), target.is_file()
    except OSError as exc:  # a name too long for the file system, ...
        raise DataError(f"{where}: cannot access file path '{relative}' ({exc.strerror})") from exc
    if not exists:
        raise DataError(f"{where}: file '{relative}' does not exist under {root_resolved}")
    if not regular:
        raise DataError(f"{where}: '{relative}' under {root_resolved} is not a regular file")
    return joined


def file_suffix(path: Path | str) -> str:
    """The lower-cased extension used for dispatch, ``.nii.gz`` counted as one."""
    name = Path(path).name.lower()
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return Path(name).suffix


def clear_cache() -> None:
    """Forget every cached file (e.g. after files were rewritten within one mtime tick)."""
    if _cache is not None:
        _cache.cache_clear()


def cache_info() -> functools._CacheInfo | None:
    """Hits, misses and size of the read cache, or None when it has not been built yet."""
    return _cache.cache_info() if _cache is not None else None


# --- cache --------------------------------------------------------------------------------

_cache: Any = None  # the lru_cache-wrapped reader, rebuilt when CACHE_SIZE changes
_cache_size: int = -1


def _cached_reader() -> Callable[[str, int, str, str], np.ndarray | str]:
    """The LRU-cached reader for the current `CACHE_SIZE`, keyed on (path, mtime_ns, kind)."""
    global _cache, _cache_size
    if _cache is None or _cache_size != CACHE_SIZE:
        _cache = functools.lru_cache(maxsize=CACHE_SIZE)(_read_frozen)
        _cache_size = CACHE_SIZE
    return _cache


def _read_frozen(resolved: str, mtime_ns: int, kind: str, suffix: str) -> np.ndarray | str:
    """Read for the cache; the cached array is made read-only so nothing can alter it."""
    del mtime_ns  # only part of the cache key: a rewritten file is read again
    value = _read_checked(resolved, kind, suffix)
    if isinstance(value, np.ndarray):
        value.setflags(write=False)
    return value


def _read_checked(resolved: str, kind: str, suffix: str) -> np.ndarray | str:
    value = _READERS[suffix](resolved)
    if isinstance(value, np.ndarray):  # text needs no more than being valid UTF-8
        _check_layout(value, kind, suffix)
        _check_values(value, kind)
    return value


# --- validation ---------------------------------------------------------------------------


def _check_layout(value: np.ndarray, kind: str, suffix: str) -> None:
    """The decoded array has the number of axes its modality kind needs, none of them empty."""
    shape = tuple(value.shape)
    if kind == "image" and value.ndim not in (3, 4):
        hint = " (store .npy images channels first)" if suffix == ".npy" else ""
        raise _FileProblem(
            f"an image must be 3-D (C, H, W) or 4-D (C, D, H, W), but this one is "
            f"{value.ndim}-D with shape {shape}{hint}"
        )
    if kind == "bag" and value.ndim != 2:
        raise _FileProblem(
            f"a bag must be 2-D (N instances, D features), but this one is {value.ndim}-D "
            f"with shape {shape}"
        )
    if kind == "bag" and shape[0] == 0:
        raise _FileProblem(f"the bag is empty: 0 instances (shape {shape})")
    if kind == "tabular" and value.ndim != 1:
        raise _FileProblem(
            f"a tabular vector must be 1-D (F,), but this one is {value.ndim}-D with shape {shape}"
        )
    if 0 in shape:
        raise _FileProblem(f"the array has an empty axis (shape {shape})")


def _check_values(value: np.ndarray, kind: str) -> None:
    """Images and bags are finite; a tabular vector may hold NaN (imputed later), not ±inf."""
    if kind == "tabular":
        n_inf = int(np.isinf(value).sum())
        if n_inf:
            raise _FileProblem(f"{n_inf} infinite values (±inf) in a tabular vector")
        return
    finite = np.isfinite(value)
    if not finite.all():
        n_bad = int(value.size - finite.sum())
        n_nan = int(np.isnan(value).sum())
        article = "an" if kind == "image" else "a"
        raise _FileProblem(
            f"{n_bad} non-finite values ({n_nan} NaN, {n_bad - n_nan} ±inf) in {article} {kind} "
            f"of shape {tuple(value.shape)}; fix or drop them before training"
        )


def _as_float32(array: np.ndarray, what: str) -> np.ndarray:
    """Numbers as contiguous float32; strings, objects or complex values are refused."""
    if array.dtype.kind not in "biuf":
        raise _FileProblem(f"{what} has dtype {array.dtype}; numbers (bool/int/float) expected")
    with np.errstate(over="ignore"):  # beyond float32 range: ±inf, which _check_values reports
        return np.ascontiguousarray(array, dtype=np.float32)


# --- one reader per format ----------------------------------------------------------------


def _read_npy(path: str) -> np.ndarray:
    """A NumPy array, never unpickled: a manifest's files must not run code on load."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(_NPY_MAGIC))
        if magic != _NPY_MAGIC:
            raise _FileProblem("not a NumPy .npy file (bad magic bytes; corrupt or mislabelled)")
        array = np.load(path, allow_pickle=False)
    except _FileProblem:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise _FileProblem(
                "the .npy file holds Python objects, which are not loaded for safety; "
                "save a numeric array"
            ) from exc
        raise _FileProblem(f"not a readable .npy file ({exc})") from exc
    except Exception as exc:  # numpy raises several types for truncated files
        raise _FileProblem(f"not a readable .npy file ({exc})") from exc
    return _as_float32(array, "the .npy array")


_PIL_SINGLE_BAND = {"L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_PIL_KEPT = _PIL_SINGLE_BAND | {"LA", "RGB", "RGBA"}


def _read_pil(path: str) -> np.ndarray:
    """A PNG/JPEG as (C, H, W): the image's own bands, channels first, raw values."""
    image_module = require("PIL.Image", "imaging")
    try:
        with image_module.open(path) as image:
            image.load()  # decodes every pixel: what can fail because of the file fails here
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ... when corrupt
        raise _FileProblem(f"not a readable PNG/JPEG image ({type(exc).__name__}: {exc})") from exc
    return _pil_to_array(image)


def _pil_to_array(image: Any) -> np.ndarray:
    """A decoded Pillow image → (C, H, W) float32; palettes and exotic modes become RGB(A)."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "PA":
        image = image.convert("RGBA")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode not in _PIL_KEPT:  # CMYK, YCbCr, LAB, ... : to plain RGB
        image = image.convert("RGB")
    array = np.asarray(image)
    array = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    return _as_float32(array, "the image")


def _read_nifti(path: str) -> np.ndarray:
    """A NIfTI-1/2 volume, scaled by scl_slope/scl_inter, channel axis first."""
    nib = require("nibabel", "imaging")
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == _GZIP_MAGIC
        # Read from a stream rather than nib.load(path): nibabel dispatches on the file name,
        # and the resolved target of a symlink may not carry the .nii/.nii.gz name.
        with (gzip.open if gzipped else open)(path, "rb") as handle:
            head = handle.read(4)
            sizes = {int.from_bytes(head, "little"), int.from_bytes(head, "big")}
            if 348 in sizes:
                image_class = nib.Nifti1Image
            elif 540 in sizes:
                image_class = nib.Nifti2Image
            else:
                raise _FileProblem("not a NIfTI file (header size is neither 348 nor 540)")
            handle.seek(0)
            image = image_class.from_stream(handle)
            volume = np.asarray(image.get_fdata(dtype=np.float32))
    except _FileProblem:
        raise
    except Exception as exc:  # gzip, nibabel and numpy errors for truncated/corrupt files
        raise _FileProblem(f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    if volume.ndim == 5 and volume.shape[3] == 1:  # NIfTI vector images: (X, Y, Z, 1, C)
        volume = volume[:, :, :, 0, :]
    if volume.ndim in (2, 3):
        volume = volume[None]
    elif volume.ndim == 4:
        volume = np.moveaxis(volume, -1, 0)
    else:
        raise _FileProblem(
            f"a NIfTI image of shape {volume.shape} is not supported; expected 2-D, 3-D "
            f"(X, Y, Z) or 4-D (X, Y, Z, C)"
        )
    return np.ascontiguousarray(volume, dtype=np.float32)


def _read_dicom(path: str) -> np.ndarray:
    """One DICOM file's pixels in physical units (modality rescale), channel axis first."""
    pydicom = require("pydicom", "imaging")
    dataset = _dcmread(pydicom, path)
    if not _has_pixels(dataset):
        raise _FileProblem("the DICOM file has no pixel data (e.g. a report or structure set)")
    palette = dataset.get("PhotometricInterpretation") == "PALETTE COLOR"
    try:
        pixels = dataset.pixel_array
        if palette:
            pixels = _apply_color_lut(pixels, dataset)
    except Exception as exc:  # missing decoder plugin, truncated pixel data, ...
        raise _FileProblem(
            f"the DICOM pixel data cannot be decoded ({type(exc).__name__}: {exc})"
        ) from exc
    pixels = _as_float32(pixels, "the DICOM pixel data")
    colour = palette or int(dataset.get("SamplesPerPixel", 1) or 1) > 1
    if not colour:
        slope, intercept = _rescale(dataset)
        if slope != 1.0 or intercept != 0.0:
            pixels = pixels * np.float32(slope) + np.float32(intercept)
    if colour and pixels.ndim in (3, 4):  # (H, W, S) or (F, H, W, S)
        pixels = np.moveaxis(pixels, -1, 0)
    elif pixels.ndim in (2, 3):  # (H, W) or (F, H, W)
        pixels = pixels[None]
    else:
        raise _FileProblem(f"unexpected DICOM pixel array shape {pixels.shape}")
    return np.ascontiguousarray(pixels, dtype=np.float32)


def _has_pixels(dataset: Any) -> bool:
    return any(key in dataset for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _dcmread(pydicom: Any, path: str) -> Any:
    """Parse a DICOM file, also a bare dataset without the 'DICM' preamble (older exports)."""
    try:
        return pydicom.dcmread(path)
    except pydicom.errors.InvalidDicomError:
        pass  # no preamble/'DICM' prefix: maybe a bare dataset, tried below
    except Exception as exc:  # EOFError, struct errors, ... for cut or damaged files
        raise _FileProblem(f"not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
    try:
        dataset = pydicom.dcmread(path, force=True)
        has_pixels = _has_pixels(dataset)
    except Exception as exc:
        raise _FileProblem(f"not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
    if not has_pixels:  # forced parsing accepts almost any bytes: demand pixels as evidence
        raise _FileProblem(
            "not a readable DICOM file (no 'DICM' header, and read without it there is no "
            "pixel data)"
        )
    meta = getattr(dataset, "file_meta", None)
    if meta is None:
        meta = dataset.file_meta = pydicom.dataset.FileMetaDataset()
    if "TransferSyntaxUID" not in meta:  # a bare dataset is uncompressed; say how it was read
        implicit, little = getattr(dataset, "original_encoding", (None, None))
        if implicit is None:  # pydicom 2.x
            implicit, little = dataset.is_implicit_VR, dataset.is_little_endian
        uid = pydicom.uid
        meta.TransferSyntaxUID = (
            uid.ImplicitVRLittleEndian
            if implicit
            else (uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian)
        )
        warnings.warn(
            f"{path}: no DICOM 'DICM' header; read as a bare dataset, its encoding guessed as "
            f"{meta.TransferSyntaxUID.name} (check its pixel values if they look wrong)",
            DataWarning,
            stacklevel=2,
        )
    return dataset


def _rescale(dataset: Any) -> tuple[float, float]:
    """RescaleSlope/Intercept, top level or (enhanced multi-frame) in the shared groups."""
    source = dataset
    if "RescaleSlope" not in dataset and "RescaleIntercept" not in dataset:
        try:
            groups = dataset.SharedFunctionalGroupsSequence[0]
            source = groups.PixelValueTransformationSequence[0]
        except (AttributeError, IndexError, KeyError):
            return 1.0, 0.0
    slope = source.get("RescaleSlope", 1.0)
    intercept = source.get("RescaleIntercept", 0.0)
    try:
        return float(1.0 if slope in (None, "") else slope), float(
            0.0 if intercept in (None, "") else intercept
        )
    except (TypeError, ValueError) as exc:
        raise _FileProblem(f"bad RescaleSlope/RescaleIntercept ({slope!r}, {intercept!r})") from exc


def _apply_color_lut(pixels: np.ndarray, dataset: Any) -> np.ndarray:
    """Palette indices to RGB, with whichever pydicom version is installed."""
    try:
        from pydicom.pixels import apply_color_lut  # pydicom >= 3
    except ImportError:
        from pydicom.pixel_data_handlers.util import apply_color_lut  # pydicom 2.x
    return apply_color_lut(pixels, dataset)


def _read_hdf5(path: str) -> np.ndarray:
    """A CLAM patch-feature bag: dataset ``features`` (N, D) or (1, N, D); the rest ignored."""
    import h5py

    try:
        with h5py.File(path, "r") as store:
            node = store.get("features")
            if not isinstance(node, h5py.Dataset):
                names: list[str] = []
                store.visititems(
                    lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
                )
                found = ", ".join(f"'{name}'" for name in names) or "none"
                raise _FileProblem(
                    f"no 'features' dataset (CLAM layout: features (N, D)); datasets found: {found}"
                )
            shape = tuple(node.shape)
            if len(shape) == 3 and shape[0] == 1:
                features = node[0]
            elif len(shape) == 2:
                features = node[()]
            else:
                raise _FileProblem(f"'features' must be (N, D) or (1, N, D), but has shape {shape}")
    except _FileProblem:
        raise
    except Exception as exc:  # OSError for non-HDF5 or truncated files, ...
        raise _FileProblem(f"not a readable HDF5 file ({type(exc).__name__}: {exc})") from exc
    return _as_float32(np.asarray(features), "the 'features' dataset")


def read_patch_coords(path: str | os.PathLike[str]) -> np.ndarray | None:
    """A CLAM bag's patch coordinates, dataset ``coords`` (N, 2) or (1, N, 2) as (x, y) at
    level 0; None for an ``.npy`` bag or an HDF5 file without them. For drawing attention
    where the patches lie on the slide; the model never reads them."""
    import h5py

    if not str(path).endswith((".h5", ".hdf5")):
        return None
    with h5py.File(path, "r") as store:
        node = store.get("coords")
        if not isinstance(node, h5py.Dataset):
            return None
        coords = np.asarray(node[()])
    coords = coords[0] if coords.ndim == 3 else coords
    return coords.astype(float) if coords.ndim == 2 and coords.shape[1] == 2 else None


def _read_text(path: str) -> str:
    """UTF-8 text; a byte-order mark is dropped, invalid bytes are an error, not replaced."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _FileProblem(
            f"not valid UTF-8 text (bad byte at offset {exc.start}); re-save it as UTF-8"
        ) from exc
    except OSError as exc:
        raise _FileProblem(f"cannot read the text file ({exc.strerror or exc})") from exc


_READERS: dict[str, Callable[[str], np.ndarray | str]] = {
    ".npy": _read_npy,
    ".png": _read_pil,
    ".jpg": _read_pil,
    ".jpeg": _read_pil,
    ".nii": _read_nifti,
    ".nii.gz": _read_nifti,
    ".dcm": _read_dicom,
    ".h5": _read_hdf5,
    ".hdf5": _read_hdf5,
    ".txt": _read_text,
}
