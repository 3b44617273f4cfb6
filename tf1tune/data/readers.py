"""One reader per data format, each indexing its source without decoding an image (`open_source`).

Why indexing only: real data sets are tens of thousands of photos; fine-tuning streams them through
`tf.data` (`tf1tune.data.streaming`), so a reader only finds what there is and what label each sample has:

* a folder with one subfolder of JPEG/PNG images per class (names from slim's `labels.txt` when it names
  every subfolder, else the sorted subfolder names);
* TFRecord files of `tf.train.Example` with slim's or the Object Detection API's keys (`image/encoded`,
  `image/class/label`, `image/object/class/label` with one object, or `image` and `label`); each record's
  byte offset is indexed so that any record is read on its own;
* an `.npz` file with `x` and `y`, `x` memory-mapped (a compressed archive is unpacked once to a temporary
  `.npy` first), never copied into memory;
* a built-in task (`digits:train`, ...), small arrays in memory.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterator

import numpy as np

from tf1tune.data.digits import TASKS, list_tasks, task_arrays
from tf1tune.data.source import Source, check_labels
from tf1tune.errors import DataError
from tf1tune.names import closest

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
TFRECORD_EXTENSIONS = (".tfrecord", ".tfrecords")
IMAGE_KEYS = ("image/encoded", "image")
LABEL_KEYS = ("image/class/label", "label", "image/object/class/label")
TEXT_KEYS = ("image/class/text", "image/object/class/text")
_CHUNK = 4096  # rows per chunk when scanning an array


def open_source(source: str | os.PathLike[str]) -> Source:
    """Index `source` (see the module docstring) without decoding its images.

    Raises:
        DataError: The source does not exist, is empty, or its records or labels do not fit.
    """
    name = os.fspath(source)
    if name in TASKS:
        images, labels, names = task_arrays(name)
        labels, names = check_labels(labels, names, name)
        images.flags.writeable = False
        return Source(kind="array", labels=labels, class_names=names, name=name, array=images)
    if any(c in name for c in "*?["):
        files = sorted(f for f in glob.glob(name) if os.path.isfile(f))
        if not files:
            raise DataError(f"no files match the pattern '{name}'; check the path and the pattern")
        return _tfrecords(files, name)
    if not os.path.exists(name):
        hint = "give a class-folder tree, an .npz file, TFRecord files or a built-in name (" + ", ".join(
            list_tasks()) + ")"
        near = closest(name, TASKS)
        if near and not os.path.dirname(name):
            hint = f"did you mean {near[0]}? built-in data sets: " + ", ".join(list_tasks())
        raise DataError(f"data source '{name}' does not exist; {hint}")
    if os.path.isdir(name):
        subdirs = _visible(name, dirs=True)
        if subdirs:
            return _folder(name, subdirs)
        files = _visible(name, dirs=False)
        records = [os.path.join(name, f) for f in files if f.lower().endswith(TFRECORD_EXTENSIONS)]
        if records:
            return _tfrecords(records, name)
        if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
            example = os.path.join(name, "cat", "1.jpg")
            raise DataError(f"folder '{name}' holds images but no class subfolders; put the images of each class "
                            f"in a subfolder named for the class (e.g. {example})")
        raise DataError(f"folder '{name}' is empty of data (no class subfolders, no *.tfrecord files); "
                        "give a folder with one subfolder of images per class")
    if name.lower().endswith(".npz"):
        return _npz(name)
    if name.lower().endswith(IMAGE_EXTENSIONS):
        raise DataError(f"'{name}' is a single image; give the folder above the class folders (root/<class>/<image>)")
    return _tfrecords([name], name)


def _visible(folder: str, dirs: bool) -> list[str]:
    """Sorted names of the non-hidden subfolders (dirs=True) or files (dirs=False) of `folder`."""
    names = [n for n in os.listdir(folder) if not n.startswith(".")]
    return sorted(n for n in names if os.path.isdir(os.path.join(folder, n)) == dirs)


def slim_label_file(folder: str) -> list[str] | None:
    """Class names from slim's `labels.txt` (`<label>:<name>` lines) in `folder`, if there is one."""
    path = os.path.join(folder, "labels.txt")
    if not os.path.isfile(path):
        return None
    table = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            label, sep, name = line.strip().partition(":")
            if sep and label.strip().isdigit():
                table[int(label)] = name.strip()
    if not table:
        return None
    return [table.get(i, str(i)) for i in range(max(table) + 1)]


def _folder(root: str, classes: list[str]) -> Source:
    names = slim_label_file(root)
    if names is None or not set(classes) <= set(names):
        names = list(classes)
    files: list[str] = []
    labels: list[int] = []
    for cls in classes:
        folder = os.path.join(root, cls)
        images = [f for f in _visible(folder, dirs=False) if f.lower().endswith(IMAGE_EXTENSIONS)]
        if not images:
            raise DataError(f"class folder '{folder}' has no images (.jpg, .jpeg, .png); add images or remove "
                            "the folder")
        files += [os.path.join(folder, f) for f in images]
        labels += [names.index(cls)] * len(images)
    label_array, names = check_labels(np.asarray(labels), names, root)
    return Source(kind="folder", labels=label_array, class_names=names, name=root, files=tuple(files))


def _records(path: str) -> Iterator[tuple[int, int, bytes]]:
    """Yield `(offset of the data, length, data)` of each record of a TFRecord file (framing checked)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        offset = 0
        while offset < size:
            header = f.read(12)
            if len(header) < 12:
                raise ValueError(f"truncated record header at byte {offset}")
            (length,) = struct.unpack("<Q", header[:8])
            if offset + 16 + length > size:
                raise ValueError(f"record at byte {offset} claims {length} bytes, past the end of the file")
            data = f.read(length)
            f.read(4)
            yield offset + 12, length, data
            offset += 16 + length


def _tfrecords(files: list[str], source: str) -> Source:
    import tensorflow as tf

    locations: list[tuple[int, int, int]] = []
    labels: list[int] = []
    texts: dict[int, str] = {}
    image_key = None
    for shard, path in enumerate(files):
        try:
            for i, (offset, length, raw) in enumerate(_records(path)):
                where = f"record {i} of {path}"
                try:
                    example = tf.train.Example.FromString(raw)
                except Exception as e:  # google.protobuf.message.DecodeError
                    raise DataError(f"{where} is not a tf.train.Example ({e}); write records with "
                                    "tf.train.Example(...).SerializeToString()") from e
                feature = example.features.feature
                key = next((k for k in IMAGE_KEYS if k in feature), None)
                label_key = next((k for k in LABEL_KEYS if k in feature), None)
                if key is None or label_key is None:
                    raise DataError(f"{where} has no {'image' if key is None else 'label'} feature (it has: "
                                    f"{', '.join(sorted(feature)) or 'none'}); expected "
                                    f"{' or '.join(IMAGE_KEYS)} and {' or '.join(LABEL_KEYS[:2])}")
                if image_key is not None and key != image_key:
                    raise DataError(f"{where} holds its image in '{key}' but earlier records in '{image_key}'; "
                                    "write every record with the same keys")
                image_key = key
                value = feature[label_key].int64_list.value
                if len(feature[key].bytes_list.value) != 1 or len(value) != 1:
                    raise DataError(f"{where}: '{key}' must hold one encoded image (bytes) and '{label_key}' "
                                    "one int64 label (one object for image/object/class/label)")
                text = next((feature[k].bytes_list.value for k in TEXT_KEYS if k in feature), None)
                if text and len(text) == 1:
                    texts.setdefault(int(value[0]), text[0].decode("utf-8", "replace"))
                locations.append((shard, offset, length))
                labels.append(int(value[0]))
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read '{path}' as a TFRecord file ({e}); give an .npz file, a "
                            "class-folder tree or TFRecord files of tf.train.Example") from e
    if not labels:
        raise DataError(f"'{source}' holds no records; write tf.train.Example records with image/encoded and "
                        "image/class/label")
    names = slim_label_file(os.path.dirname(os.path.abspath(files[0])))
    if names is None and texts:
        names = [texts.get(i, str(i)) for i in range(max(labels) + 1)]
    label_array, names = check_labels(np.asarray(labels), names, source)
    return Source(kind="tfrecord", labels=label_array, class_names=names, name=source, files=tuple(files),
                  locations=np.asarray(locations, dtype=np.int64), image_key=image_key)


def _npz(path: str) -> Source:
    try:
        with zipfile.ZipFile(path) as archive:
            members = {n.removesuffix(".npy"): n for n in archive.namelist()}
            missing = [k for k in ("x", "y") if k not in members]
            if missing:
                have = ", ".join(sorted(members)) or "none"
                raise DataError(f"'{path}' has no array {' or '.join(missing)} (it has: {have}); "
                                "save it with numpy.savez(path, x=images, y=labels)")
            with np.load(path, allow_pickle=False) as loaded:
                y = loaded["y"]
                names = [str(n) for n in np.asarray(loaded["class_names"]).reshape(-1)] \
                    if "class_names" in members else None
            x = _map_member(path, archive, members["x"])
    except DataError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError (object arrays), OSError ...
        raise DataError(f"cannot read '{path}' as an .npz file ({type(e).__name__}: {e}); save it with "
                        "numpy.savez(path, x=images, y=labels)") from e
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"'{path}': x must be [N, H, W, C] or [N, H, W], got shape {x.shape}")
    if y.ndim != 1:
        raise DataError(f"'{path}': y must be [N] integer labels, got shape {y.shape}")
    if len(x) != len(y):
        raise DataError(f"'{path}': x has {len(x)} images but y has {len(y)} labels; they must have the same length")
    if y.dtype.kind not in "iu":
        raise DataError(f"'{path}': y must hold integer labels, got dtype {y.dtype}; save y.astype('int64')")
    if x.dtype.kind not in "iuf" or x.dtype.kind == "b":
        raise DataError(f"'{path}': x must be numeric pixel values in [0, 255], got dtype {x.dtype}")
    if len(x):
        low = min(float(x[i:i + _CHUNK].min()) for i in range(0, len(x), _CHUNK))
        high = max(float(x[i:i + _CHUNK].max()) for i in range(0, len(x), _CHUNK))
        if low < 0 or high > 255:
            raise DataError(f"'{path}': x values must be in [0, 255], got [{low:g}, {high:g}]; rescale the images")
        if x.dtype.kind == "f" and 0 < high <= 1.0:
            raise DataError(f"'{path}': x looks scaled to [0, 1] (max {high:g}) but tf1tune expects pixel values "
                            "in [0, 255]; save x * 255")
    labels, names = check_labels(y, names, path)
    return Source(kind="array", labels=labels, class_names=names, name=path, files=(path,), array=x)


def _map_member(path: str, archive: zipfile.ZipFile, member: str) -> np.ndarray:
    """The array `member` of the .npz `path`, memory-mapped in place (stored) or from a temporary copy (deflated)."""
    info = archive.getinfo(member)
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            f.seek(start)
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            data_offset = f.tell()
        if dtype.hasobject:
            raise ValueError("x holds Python objects")
        return np.memmap(path, dtype=dtype, mode="r", offset=data_offset, shape=shape,
                         order="F" if fortran else "C")
    folder = tempfile.mkdtemp(prefix="tf1tune-npz-")
    atexit.register(shutil.rmtree, folder, True)
    target = os.path.join(folder, "x.npy")
    with archive.open(member) as stream, open(target, "wb") as out:
        shutil.copyfileobj(stream, out, 1 << 20)
    return np.load(target, mmap_mode="r", allow_pickle=False)
