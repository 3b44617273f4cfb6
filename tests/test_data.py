"""tf1tune.data: every source loads to the same Dataset; batches are reproducible; validation is never augmented."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

import tf1tune
from tf1tune.data import Augment, BatchStream, Dataset, eval_batches, list_tasks, load_dataset, load_digits_split, split
from tf1tune.errors import DataError

H, W = 10, 12  # fixture image size: not square, so height/width mix-ups show


def _image(seed: int, channels: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(H, W, channels), dtype=np.uint8)


def _png(image: np.ndarray) -> bytes:
    return tf.io.encode_png(image).numpy()


def _jpeg(image: np.ndarray) -> bytes:
    return tf.io.encode_jpeg(image).numpy()


@pytest.fixture(scope="session")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One tiny seeded data set in every format: class folders (PNG+JPEG, RGB+gray), .npz, TFRecord."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "folder"
    for label, cls in enumerate(["cat", "dog"]):
        (folder / cls).mkdir(parents=True)
        (folder / cls / "a.png").write_bytes(_png(_image(10 * label, 3)))
        (folder / cls / "b.jpg").write_bytes(_jpeg(_image(10 * label + 1, 3)))
        (folder / cls / "c.png").write_bytes(_png(_image(10 * label + 2, 1)))
        (folder / cls / "notes.txt").write_text("ignored")
    npz = root / "data.npz"
    x = np.stack([_image(i, 1)[..., 0] for i in range(12)]).astype(np.float32)  # [N, H, W]
    np.savez(npz, x=x, y=np.arange(12) % 3, class_names=np.array(["a", "b", "c"]))
    records = root / "records"
    records.mkdir()
    with tf.io.TFRecordWriter(str(records / "train-00000.tfrecord")) as writer:
        for i in range(6):
            feature = {
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_png(_image(100 + i, 3))])),
                "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"png"])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    (records / "labels.txt").write_text("0:daisy\n1:rose\n")
    return {"root": str(root), "folder": str(folder), "npz": str(npz), "records": str(records),
            "record_file": str(records / "train-00000.tfrecord")}


def _check(data: Dataset, n: int, size: tuple[int, int], channels: int) -> None:
    assert data.images.shape == (n, *size, channels)
    assert data.images.dtype == np.float32 and data.labels.dtype == np.int64
    assert data.labels.shape == (n,)
    assert 0.0 <= data.images.min() and data.images.max() <= 255.0
    assert data.images.max() > 50  # real pixel values, not [0, 1]
    assert not data.images.flags.writeable


def test_public_api():
    assert tf1tune.load_dataset is load_dataset
    assert issubclass(tf1tune.DataError, tf1tune.Tf1tuneError)


def test_class_folder_native_size(sources):
    data = load_dataset(sources["folder"], (H, W), 3)
    _check(data, 6, (H, W), 3)
    assert data.class_names == ["cat", "dog"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    # PNG is lossless: the first file (cat/a.png) comes back exactly
    np.testing.assert_array_equal(data.images[0], _image(0, 3).astype(np.float32))
    # grayscale PNG becomes RGB by repetition
    np.testing.assert_array_equal(data.images[2], np.repeat(_image(2, 1), 3, axis=-1).astype(np.float32))


def test_class_folder_resize_and_gray(sources):
    data = load_dataset(sources["folder"], (7, 5), 1)
    _check(data, 6, (7, 5), 1)
    expected = tf.image.resize(tf.image.rgb_to_grayscale(_image(0, 3).astype(np.float32)), (7, 5)).numpy()
    np.testing.assert_allclose(data.images[0], expected, atol=0.05)


def test_npz(sources):
    data = load_dataset(sources["npz"], (H, W), 3)
    _check(data, 12, (H, W), 3)
    assert data.class_names == ["a", "b", "c"]
    assert data.labels.tolist() == [i % 3 for i in range(12)]
    np.testing.assert_array_equal(data.images[1, ..., 2], _image(1, 1)[..., 0].astype(np.float32))
    _check(load_dataset(sources["npz"], (4, 6), 1), 12, (4, 6), 1)


@pytest.mark.parametrize("key", ["records", "record_file", "glob"])
def test_tfrecord(sources, key):
    source = os.path.join(sources["records"], "*.tfrecord") if key == "glob" else sources[key]
    data = load_dataset(source, (5, 6), 3)
    _check(data, 6, (5, 6), 3)
    assert data.labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert data.class_names == ["daisy", "rose"]  # from slim's labels.txt


def test_tfrecord_plain_keys(tmp_path):
    path = tmp_path / "plain.tfrecords"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(3):
            feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_jpeg(_image(i, 1))])),
                       "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    data = load_dataset(path, (H, W), 1)
    _check(data, 3, (H, W), 1)
    assert data.class_names == ["0", "1", "2"]


def test_digits_tasks_match_shipped_split():
    x_train, y_train, x_val, y_val = load_digits_split(seed=0, val_fraction=0.2)
    train = load_dataset("digits:train", (8, 8), 1)
    val = load_dataset("digits:val", (8, 8), 1)
    assert (len(train), len(val), len(load_dataset("digits", (8, 8), 1))) == (1437, 360, 1797)
    np.testing.assert_array_equal(train.images, x_train)
    np.testing.assert_array_equal(train.labels, y_train)
    np.testing.assert_array_equal(val.images, x_val)
    np.testing.assert_array_equal(val.labels, y_val)
    assert train.class_names == [str(d) for d in range(10)]
    _check(load_dataset("digits:val", (16, 16), 3), 360, (16, 16), 3)


def test_digits_parity_task():
    parity = load_dataset("digits-parity:val", (8, 8), 1)
    assert parity.class_names == ["even", "odd"]
    _, _, _, y_val = load_digits_split(seed=0, val_fraction=0.2)
    np.testing.assert_array_equal(parity.labels, y_val % 2)
    assert "digits-parity:train" in list_tasks()


def _toy(n_per_class: tuple[int, ...] = (10, 20, 30)) -> Dataset:
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)]).astype(np.int64)
    images = np.random.default_rng(0).uniform(0, 255, size=(len(labels), 6, 6, 1)).astype(np.float32)
    images[:, 0, 0, 0] = np.arange(len(labels))  # a sample id, to track samples through batches
    return Dataset(images, labels, [str(c) for c in range(len(n_per_class))], "toy")


def test_split_stratified_and_seeded():
    data = _toy()
    train, val = split(data, 0.2, seed=3)
    assert np.bincount(val.labels).tolist() == [2, 4, 6]
    assert np.bincount(train.labels).tolist() == [8, 16, 24]
    ids = np.concatenate([train.images[:, 0, 0, 0], val.images[:, 0, 0, 0]])
    assert sorted(ids.tolist()) == list(range(len(data)))  # a partition
    again, _ = split(data, 0.2, seed=3)
    np.testing.assert_array_equal(again.images, train.images)
    other, _ = split(data, 0.2, seed=4)
    assert not np.array_equal(other.images, train.images)


def test_batch_stream_resumes_exactly():
    data = _toy()
    augment = Augment(flip=True, pad=1, brightness=0.1)
    first = BatchStream(data, 8, seed=5, augment=augment)
    run = [first.batch(step) for step in range(20)]
    resumed = BatchStream(data, 8, seed=5, augment=augment)  # a new process after kill -9 at step 13
    for step in (13, 14, 19):
        images, labels = resumed.batch(step)
        np.testing.assert_array_equal(images, run[step][0])
        np.testing.assert_array_equal(labels, run[step][1])
    assert not np.array_equal(first.indices(0), first.indices(1))  # different steps, different samples
    assert not np.array_equal(run[0][0], run[1][0])
    other_seed = BatchStream(data, 8, seed=6, augment=augment).batch(0)
    assert not np.array_equal(other_seed[0], run[0][0])


def test_epochs_cover_every_sample_once():
    data = _toy()  # 60 samples, 6 batches of 10 per epoch
    stream = BatchStream(data, 10, seed=1)
    epoch0 = np.concatenate([stream.indices(s) for s in range(6)])
    epoch1 = np.concatenate([stream.indices(s) for s in range(6, 12)])
    assert sorted(epoch0.tolist()) == sorted(epoch1.tolist()) == list(range(60))
    assert not np.array_equal(epoch0, epoch1)  # reshuffled each epoch
    images, labels = stream.batch(7)  # unaugmented batches are the raw samples
    np.testing.assert_array_equal(images, data.images[stream.indices(7)])
    np.testing.assert_array_equal(labels, data.labels[stream.indices(7)])
    # batch_size not dividing N: batches stay full, every window of N positions is a permutation
    odd = BatchStream(data, 7, seed=1)
    stream_ids = np.concatenate([odd.indices(s) for s in range(18)])  # 126 positions
    assert sorted(stream_ids[60:120].tolist()) == list(range(60))
    assert np.array_equal(BatchStream(data, 10, shuffle=False).indices(6), np.arange(10))


def test_validation_never_augmented():
    data = _toy((5, 6))
    got = list(eval_batches(data, 4))
    assert [len(b.labels) for b in got] == [4, 4, 3]  # last partial batch included
    np.testing.assert_array_equal(np.concatenate([b.images for b in got]), data.images)
    np.testing.assert_array_equal(np.concatenate([b.labels for b in got]), data.labels)
    with pytest.raises(TypeError):
        eval_batches(data, 4, augment=Augment())  # type: ignore[call-arg]
    augmented, _ = BatchStream(data, 11, seed=0, augment=Augment(pad=2, brightness=0.2), shuffle=False).batch(0)
    assert augmented.dtype == np.float32 and augmented.shape == data.images.shape
    assert 0.0 <= augmented.min() and augmented.max() <= 255.0
    assert not np.array_equal(augmented, data.images)
    np.testing.assert_array_equal(next(eval_batches(data, 11)).images, data.images)  # data untouched


def test_flip_flag():
    data = _toy((8,))
    flipped, _ = BatchStream(data, 8, augment=Augment(flip=True, pad=0, brightness=0), shuffle=False).batch(0)
    is_flip = [np.array_equal(f, d[:, ::-1]) and not np.array_equal(f, d) for f, d in zip(flipped, data.images)]
    assert 0 < sum(is_flip) < 8
    plain, _ = BatchStream(data, 8, augment=Augment(flip=False, pad=0, brightness=0), shuffle=False).batch(0)
    np.testing.assert_array_equal(plain, data.images)


# --- errors: each one line, saying what was wrong and how to fix it


def _write_npz(tmp_path, **arrays) -> str:
    path = str(tmp_path / "bad.npz")
    np.savez(path, **arrays)
    return path


def test_error_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"does not exist; give a class-folder tree"):
        load_dataset(tmp_path / "nope", (8, 8), 1)
    with pytest.raises(DataError, match=r"did you mean digits:train"):
        load_dataset("digits:trian", (8, 8), 1)
    with pytest.raises(DataError, match=r"no files match the pattern"):
        load_dataset(str(tmp_path / "*.tfrecord"), (8, 8), 1)


def test_error_folders(tmp_path):
    with pytest.raises(DataError, match=r"is empty of data .*one subfolder of images per class"):
        load_dataset(tmp_path, (8, 8), 1)
    (tmp_path / "loose.png").write_bytes(_png(_image(0, 1)))
    with pytest.raises(DataError, match=r"holds images but no class subfolders"):
        load_dataset(tmp_path, (8, 8), 1)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.png").write_bytes(_png(_image(0, 1)))
    (tmp_path / "dog").mkdir()
    with pytest.raises(DataError, match=r"class folder '.*dog' has no images"):
        load_dataset(tmp_path, (8, 8), 1)
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match=r"cannot decode image .*broken\.jpg: [^{]*; replace or remove the file$"):
        load_dataset(tmp_path, (8, 8), 1)
    with pytest.raises(DataError, match=r"is a single image; give the folder above the class folders"):
        load_dataset(tmp_path / "cat" / "a.png", (8, 8), 1)


def test_error_npz(tmp_path):
    x = np.full((4, 3, 3), 100.0, np.float32)
    with pytest.raises(DataError, match=r"has no array y \(it has: images, x\)"):
        load_dataset(_write_npz(tmp_path, x=x, images=x), (3, 3), 1)
    with pytest.raises(DataError, match=r"x has 4 images but y has 3 labels"):
        load_dataset(_write_npz(tmp_path, x=x, y=np.arange(3)), (3, 3), 1)
    with pytest.raises(DataError, match=r"labels must be >= 0, found -1"):
        load_dataset(_write_npz(tmp_path, x=x, y=np.array([0, 1, -1, 0])), (3, 3), 1)
    with pytest.raises(DataError, match=r"label 5 is out of range for 2 class names"):
        load_dataset(_write_npz(tmp_path, x=x, y=np.array([0, 1, 5, 0]), class_names=np.array(["a", "b"])), (3, 3), 1)
    with pytest.raises(DataError, match=r"y must hold integer labels"):
        load_dataset(_write_npz(tmp_path, x=x, y=np.zeros(4)), (3, 3), 1)
    with pytest.raises(DataError, match=r"looks scaled to \[0, 1\]"):
        load_dataset(_write_npz(tmp_path, x=x / 255, y=np.zeros(4, int)), (3, 3), 1)
    with pytest.raises(DataError, match=r"holds no samples"):
        load_dataset(_write_npz(tmp_path, x=x[:0], y=np.zeros(0, int)), (3, 3), 1)


def test_error_tfrecord(tmp_path):
    garbage = tmp_path / "garbage.tfrecord"
    garbage.write_bytes(os.urandom(300))
    with pytest.raises(DataError, match=r"cannot read '.*garbage\.tfrecord' as a TFRecord file"):
        load_dataset(garbage, (8, 8), 1)
    path = tmp_path / "nolabel.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_png(_image(0, 1))]))}
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    with pytest.raises(DataError, match=r"record 0 of .* has no label feature \(it has: image/encoded\)"):
        load_dataset(path, (8, 8), 1)


def test_error_arguments():
    data = _toy((1, 5))
    with pytest.raises(DataError, match=r"class\(es\) 0 \(1\) have fewer than 2 samples"):
        split(data, 0.2, seed=0)
    with pytest.raises(DataError, match=r"val_fraction must be strictly between 0 and 1"):
        split(data, 1.0, seed=0)
    with pytest.raises(DataError, match=r"channels must be 1 \(grayscale\) or 3 \(RGB\), got 2"):
        load_dataset("digits", (8, 8), 2)
    with pytest.raises(DataError, match=r"image_size must be \(height, width\)"):
        load_dataset("digits", (8, 0), 1)
    with pytest.raises(DataError, match=r"batch_size must be an integer >= 1"):
        BatchStream(data, 0)
    with pytest.raises(DataError, match=r"step must be an integer >= 0"):
        BatchStream(data, 2).batch(-1)
    with pytest.raises(DataError, match=r"Augment.pad must be an integer >= 0"):
        Augment(pad=-1)


def test_error_messages_are_one_line(tmp_path):
    for call in (lambda: load_dataset(tmp_path / "nope", (8, 8), 1),
                 lambda: load_dataset(_write_npz(tmp_path, x=np.ones((2, 3, 3)) * 9), (3, 3), 1)):
        with pytest.raises(DataError) as info:
            call()
        assert "\n" not in str(info.value)
