import io
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from ganforge.data import (
    BUILTINS,
    DatasetError,
    ImageDataset,
    inspect_source,
    load_dataset,
)
from ganforge.data import builtin as builtin_module

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not (FASHION_DIR / "t10k-images-idx3-ubyte.gz").exists(), reason="dataset-fashion-mnist not installed"
)
RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    # Never touch ~/.cache, never inherit a user's settings.
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GANFORGE_MAX_MEMORY_MB", raising=False)
    monkeypatch.delenv("GANFORGE_FASHION_MNIST", raising=False)


def save(path: Path, image: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def noise(size=(12, 10), mode="RGB", seed=0) -> Image.Image:
    channels = {"RGB": 3, "L": 1}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels)


def make_classes(root: Path) -> Path:
    save(root / "cats" / "a.png", noise(seed=1))
    save(root / "cats" / "b.jpg", noise(seed=2))
    save(root / "dogs" / "c.PNG", noise(seed=3))
    save(root / "dogs" / "deep" / "d.png", noise(seed=4))  # recursive: still class "dogs"
    (root / "dogs" / "notes.txt").write_text("not an image")
    return root


# --- folders, classes, labels ----------------------------------------------------------------------------


def test_class_subfolders_give_labels_recursively(tmp_path):
    ds = load_dataset(make_classes(tmp_path / "Pets Set!"), resolution=8)
    assert isinstance(ds, ImageDataset)
    assert ds.images.shape == (4, 3, 8, 8) and ds.images.dtype == np.uint8
    assert ds.class_names == ["cats", "dogs"] and ds.num_classes == 2 and len(ds) == 4
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.report.class_counts == {"cats": 2, "dogs": 2}
    assert ds.report.files_found == 4 and ds.report.other_files == 1
    assert ds.name == "pets-set"
    assert ds.describe()["num_classes"] == 2


def test_labels_off_when_files_sit_beside_class_folders_or_one_class(tmp_path):
    root = make_classes(tmp_path / "mixed")
    save(root / "top.png", noise())
    ds = load_dataset(root, resolution=8)
    assert ds.labels is None and ds.num_classes == 0 and ds.class_names == []
    assert any("top level" in note for note in ds.report.notes)
    with pytest.raises(DatasetError, match="use_labels=True"):
        load_dataset(root, resolution=8, use_labels=True)

    single = tmp_path / "single"
    save(single / "only" / "a.png", noise())
    assert load_dataset(single, resolution=8).labels is None
    with pytest.raises(DatasetError, match="only one class folder"):
        load_dataset(single, resolution=8, use_labels=True)

    assert load_dataset(make_classes(tmp_path / "off"), resolution=8, use_labels=False).labels is None


def test_hidden_files_are_ignored_and_split_folders_select_the_split(tmp_path):
    save(tmp_path / "d" / "train" / "a.png", noise())
    save(tmp_path / "d" / "train" / ".hidden.png", noise())
    save(tmp_path / "d" / "test" / "b.png", noise())
    save(tmp_path / "d" / "test" / "c.png", noise())
    assert len(load_dataset(tmp_path / "d", resolution=8)) == 1
    assert len(load_dataset(tmp_path / "d", resolution=8, split="test")) == 2
    with pytest.raises(DatasetError, match="train/ and test/"):
        load_dataset(tmp_path / "d" / "test", resolution=8, split="test")


# --- modes and channels ----------------------------------------------------------------------------------


def test_pil_modes_convert_to_target_channels(tmp_path):
    folder = tmp_path / "modes"
    save(folder / "l.png", Image.new("L", (4, 4), 77))
    save(folder / "one.png", Image.new("1", (4, 4), 1))
    save(folder / "i16.png", Image.fromarray(np.full((4, 4), 100 * 257, dtype=np.uint16)))
    save(folder / "la.png", Image.new("LA", (4, 4), (200, 255)))
    gray = load_dataset(folder, resolution=4)
    assert gray.channels == 1 and gray.images.shape == (4, 1, 4, 4)
    assert gray.images[:, 0, 0, 0].tolist() == [100, 77, 200, 255]  # sorted: i16, l, la, one
    assert gray.report.modes["I;16"] + gray.report.modes["I"] == 1

    save(folder / "rgba.png", Image.new("RGBA", (4, 4), (200, 100, 50, 0)))
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    save(folder / "p.png", palette, transparency=0)
    save(folder / "cmyk.tif", Image.new("CMYK", (4, 4), (0, 255, 255, 0)))
    color = load_dataset(folder, resolution=4)
    assert color.channels == 3  # one color file makes the whole dataset RGB
    names = sorted(p.name for p in folder.iterdir())
    by_name = dict(zip(names, color.images[:, :, 0, 0].tolist(), strict=True))
    assert by_name["cmyk.tif"] == [255, 0, 0]
    assert by_name["p.png"] == [10, 20, 30]
    assert by_name["rgba.png"] == [0, 0, 0]  # fully transparent -> black when alpha is dropped
    assert by_name["l.png"] == [77, 77, 77]

    rgba = load_dataset(folder, resolution=4, channels=4)
    alpha = dict(zip(names, rgba.images[:, 3, 0, 0].tolist(), strict=True))
    assert alpha["rgba.png"] == 0 and alpha["l.png"] == 255 and alpha["la.png"] == 255
    assert load_dataset(folder, resolution=4, channels=1).images.shape == (7, 1, 4, 4)


# --- resizing ----------------------------------------------------------------------------------------------


def wide_image() -> Image.Image:
    # 40x20: green, red and blue vertical bands, 10, 20 and 10 px wide.
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :10] = GREEN
    pixels[:, 10:30] = RED
    pixels[:, 30:] = BLUE
    return Image.fromarray(pixels)


def test_crop_pad_stretch(tmp_path):
    save(tmp_path / "w" / "wide.png", wide_image())
    crop = load_dataset(tmp_path / "w", resolution=10, resize="crop").images[0]
    assert crop.shape == (3, 10, 10)
    # The center square is the red band; only the filter's edge pixels see the neighbouring bands.
    assert (crop.transpose(1, 2, 0)[:, 3:7] == RED).all() and crop[0].min() > 200

    stretch = load_dataset(tmp_path / "w", resolution=8, resize="stretch").images[0].transpose(1, 2, 0)
    assert tuple(stretch[4, 0]) == GREEN and tuple(stretch[4, -1]) == BLUE

    pad = load_dataset(tmp_path / "w", resolution=16, resize="pad").images[0]  # content 16x8 at rows 4..11
    assert (pad[:, :4] == 0).all() and (pad[:, 12:] == 0).all()
    assert tuple(pad[:, 8, 8]) == RED
    pad4 = load_dataset(tmp_path / "w", resolution=16, resize="pad", channels=4).images[0]
    assert (pad4[3, :4] == 0).all() and (pad4[3, 4:12] == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: the stored 20x10 image displays as 10x20
    save(tmp_path / "e" / "rot.png", Image.new("RGB", (20, 10), WHITE), exif=exif)
    image = load_dataset(tmp_path / "e", resolution=20, resize="pad").images[0]
    assert (image[:, :, :5] == 0).all() and (image[:, :, 5:15] == 255).all()


# --- bad files ---------------------------------------------------------------------------------------------


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def make_bad_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrupt.png").write_bytes(np.random.default_rng(0).bytes(300))
    (folder / "empty.png").write_bytes(b"")
    full = png_bytes(noise((32, 32), seed=5))
    (folder / "truncated.png").write_bytes(full[: len(full) // 2])


def test_bad_files_are_skipped_with_reasons(tmp_path):
    folder = tmp_path / "bad"
    make_bad_files(folder)
    save(folder / "good1.png", noise())
    save(folder / "good2.png", noise(seed=9))
    ds = load_dataset(folder, resolution=8)
    assert len(ds) == 2 and ds.report.files_found == 5 and ds.report.files_loaded == 2
    reasons = {s.path: s.reason for s in ds.report.skipped}
    assert reasons["truncated.png"] == "truncated"
    assert "empty" in reasons["empty.png"]
    assert "not a readable image" in reasons["corrupt.png"]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert any("truncated.png: truncated" in line for line in ds.report.summary_lines())


def test_refuses_to_run_with_load_truncated_images(tmp_path, monkeypatch):
    save(tmp_path / "t" / "a.png", noise())
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(DatasetError, match="LOAD_TRUNCATED_IMAGES"):
        load_dataset(tmp_path / "t", resolution=8)


def test_pixel_limit_from_header(tmp_path, monkeypatch):
    save(tmp_path / "p" / "big.png", noise((40, 40)))
    save(tmp_path / "p" / "small.png", noise((8, 8)))
    ds = load_dataset(tmp_path / "p", resolution=8, max_pixels=100)
    assert len(ds) == 1 and "too large (40x40" in ds.report.skipped[0].reason
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL's own guard: 40x40 is over twice its limit
    ds = load_dataset(tmp_path / "p", resolution=8)
    assert len(ds) == 1 and "decompression bomb" in ds.report.skipped[0].reason


def test_empty_and_all_bad_sources_raise(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty.*found 0 image files \(the folder is empty\)"):
        load_dataset(tmp_path / "empty", resolution=8)
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"found 0 image files \(1 other files: a.txt\)"):
        load_dataset(tmp_path / "texts", resolution=8)
    make_bad_files(tmp_path / "allbad")
    with pytest.raises(DatasetError, match="all 3 image files were unreadable") as info:
        load_dataset(tmp_path / "allbad", resolution=8)
    assert str(tmp_path / "allbad") in str(info.value) and "truncated.png (truncated)" in str(info.value)


def test_unknown_source_lists_builtins(tmp_path):
    with pytest.raises(DatasetError, match="fashion-mnist, digits, shapes"):
        load_dataset("no-such-dataset", resolution=8)
    with pytest.raises(DatasetError, match="takes no path"):
        load_dataset("digits:/somewhere", resolution=8)
    with pytest.raises(DatasetError, match="resize must be one of"):
        load_dataset("digits", resolution=8, resize="squash")


# --- zip archives ------------------------------------------------------------------------------------------


def test_zip_matches_folder(tmp_path):
    folder = make_classes(tmp_path / "pets")
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(folder.rglob("*")):
            zf.write(file, "wrapped/" + file.relative_to(folder).as_posix())  # adds directory entries too
        zf.writestr("__MACOSX/wrapped/cats/._a.png", b"resource fork")
        zf.writestr("wrapped/.DS_Store", b"junk")
    from_folder = load_dataset(folder, resolution=8)
    from_zip = load_dataset(archive, resolution=8)
    np.testing.assert_array_equal(from_zip.images, from_folder.images)
    np.testing.assert_array_equal(from_zip.labels, from_folder.labels)
    assert from_zip.class_names == ["cats", "dogs"] and from_zip.name == "pets"
    assert from_zip.fingerprint() == from_folder.fingerprint()
    assert not (tmp_path / "wrapped").exists()  # read in place, never extracted


# --- subsets, fingerprints, memmap cache ------------------------------------------------------------------


def make_flat(folder: Path, n: int) -> Path:
    for i in range(n):
        save(folder / f"{i:02d}.png", noise((6, 6), seed=i))
    return folder


def test_max_images_is_deterministic(tmp_path):
    folder = make_flat(tmp_path / "many", 12)
    a = load_dataset(folder, resolution=6, max_images=5, seed=3)
    b = load_dataset(folder, resolution=6, max_images=5, seed=3)
    c = load_dataset(folder, resolution=6, max_images=5, seed=4)
    assert len(a) == 5 and a.report.files_found == 12
    np.testing.assert_array_equal(a.images, b.images)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_fingerprint_tracks_pixels_and_labels(tmp_path):
    ds = load_dataset(make_classes(tmp_path / "fp"), resolution=8)
    assert ds.fingerprint() == load_dataset(tmp_path / "fp", resolution=8).fingerprint()
    assert len(ds.fingerprint()) == 16
    changed = ds.images.copy()
    changed[2, 1, 3, 3] ^= 1
    fields = dict(labels=ds.labels, class_names=ds.class_names, name="x", resolution=8, channels=3)
    assert ImageDataset(images=changed, report=ds.report, **fields).fingerprint() != ds.fingerprint()
    same = ImageDataset(images=ds.images.copy(), report=ds.report, **fields)
    assert same.fingerprint() == ds.fingerprint()
    fields["labels"] = ds.labels[::-1].copy()
    assert ImageDataset(images=ds.images, report=ds.report, **fields).fingerprint() != ds.fingerprint()


def test_memmap_cache_when_over_memory_limit(tmp_path, monkeypatch):
    folder = make_flat(tmp_path / "big", 6)
    (folder / "broken.png").write_bytes(png_bytes(noise((16, 16)))[:60])  # decode fails after header
    in_memory = load_dataset(folder, resolution=8)
    monkeypatch.setenv("GANFORGE_MAX_MEMORY_MB", "0.0001")  # 104 bytes
    mapped = load_dataset(folder, resolution=8)
    assert isinstance(mapped.images, np.memmap)
    np.testing.assert_array_equal(np.asarray(mapped.images), in_memory.images)
    assert [s.path for s in mapped.report.skipped] == ["broken.png"]
    assert mapped.fingerprint() == in_memory.fingerprint()
    cached = sorted((tmp_path / "cache" / "images").glob("*.npy"))
    assert len(cached) == 1 and cached[0].name.startswith("big-")
    mtime = cached[0].stat().st_mtime_ns
    again = load_dataset(folder, resolution=8)  # reused, not rewritten
    assert cached[0].stat().st_mtime_ns == mtime and again.fingerprint() == in_memory.fingerprint()
    assert [s.path for s in again.report.skipped] == ["broken.png"]


# --- inspect -----------------------------------------------------------------------------------------------


def test_inspect_source_reports_classes_and_bad_files(tmp_path):
    root = make_classes(tmp_path / "ins")
    (root / "cats" / "bad.png").write_bytes(b"\x89PNG nope")
    report = inspect_source(root)
    assert report.class_counts == {"cats": 2, "dogs": 2}
    assert [s.path for s in report.skipped] == ["cats/bad.png"]
    assert report.files_found == 5 and report.files_loaded == 4 and report.other_files == 1
    assert report.sizes[(12, 10)] == 4 and report.modes["RGB"] == 4
    assert "cats/bad.png" in "\n".join(report.summary_lines())
    assert not (tmp_path / "cache").exists()


# --- built-ins ---------------------------------------------------------------------------------------------


def test_builtin_registry_is_explicit():
    assert list(BUILTINS) == ["fashion-mnist", "digits", "shapes"]


def test_digits_builtin():
    train = load_dataset("digits", resolution=8)
    test = load_dataset("digits", resolution=16, split="test")
    assert train.images.shape == (1437, 1, 8, 8) and test.images.shape == (360, 1, 16, 16)
    assert train.class_names == [str(d) for d in range(10)] and set(test.labels.tolist()) == set(range(10))
    assert train.images.max() == 255 and train.name == "digits"
    padded = load_dataset("digits", resolution=12, resize="pad", max_images=10)
    assert padded.images.shape == (10, 1, 12, 12) and (padded.images[:, :, :2] == 0).all()


def test_digits_without_sklearn(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "sklearn.datasets", None)
    with pytest.raises(DatasetError, match="pip install scikit-learn"):
        load_dataset("digits", resolution=8)


def test_shapes_builtin():
    ds = load_dataset("shapes", resolution=64)
    assert ds.images.shape == (3000, 3, 64, 64) and ds.class_names == ["circle", "square", "triangle"]
    assert np.bincount(ds.labels).tolist() == [1000, 1000, 1000]
    test = load_dataset("shapes", resolution=32, split="test", channels=1)
    assert test.images.shape == (600, 1, 32, 32)
    assert test.fingerprint() == load_dataset("shapes", resolution=32, split="test", channels=1).fingerprint()


@needs_fashion
def test_fashion_mnist_builtin():
    ds = load_dataset("fashion-mnist", resolution=32, split="test", resize="pad")
    assert ds.images.shape == (10000, 1, 32, 32)
    assert np.bincount(ds.labels).tolist() == [1000] * 10
    assert ds.class_names[0] == "T-shirt/top" and ds.name == "fashion-mnist"
    assert (ds.images[:, :, :2] == 0).all()  # 28 -> 32 is a 2-pixel zero border


def fake_urlopen(serve):
    def urlopen(url, timeout=None):
        return io.BytesIO(serve(url.rsplit("/", 1)[1]))

    return urlopen


@pytest.fixture
def no_local_fashion(tmp_path, monkeypatch):
    monkeypatch.setattr(builtin_module, "_FASHION_SYSTEM_DIR", tmp_path / "nowhere")


@needs_fashion
def test_fashion_mnist_download_is_verified(tmp_path, monkeypatch, no_local_fashion):
    official = fake_urlopen(lambda name: (FASHION_DIR / name).read_bytes())
    monkeypatch.setattr("urllib.request.urlopen", official)
    ds = load_dataset("fashion-mnist", resolution=28, split="test", max_images=50)
    assert ds.images.shape == (50, 1, 28, 28)
    assert (tmp_path / "cache" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").exists()


def test_fashion_mnist_download_failures(tmp_path, monkeypatch, no_local_fashion):
    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen(lambda name: b"not the file"))
    with pytest.raises(DatasetError, match="SHA-256"):
        load_dataset("fashion-mnist", resolution=28, split="test")

    def offline(url, timeout=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", resolution=28, split="test")
    assert not list((tmp_path / "cache" / "fashion-mnist").iterdir())  # nothing half-written


def test_fashion_mnist_explicit_folder_is_checked(tmp_path):
    with pytest.raises(DatasetError, match="lacks"):
        load_dataset(f"fashion-mnist:{tmp_path}", resolution=28, split="test")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 8)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 8)
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte: not an IDX file"):
        load_dataset(f"fashion-mnist:{tmp_path}", resolution=28, split="test")
