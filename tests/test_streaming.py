"""tf1tune.data streaming: the tf.data batches are the in-memory batches, resume exactly, and never load a source whole."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import tensorflow as tf

from tf1tune.data import (
    Augment,
    BatchStream,
    Skipped,
    eval_batches,
    load_dataset,
    open_source,
    split,
    train_batches,
)
from tf1tune.errors import DataError

H, W = 12, 10


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)


def _example(encoded: bytes, label: int, key: str = "image/class/label", text: bytes | None = None) -> bytes:
    feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
               key: tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}
    if text is not None:
        feature["image/class/text"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[text]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """20 images in 3 classes as a class folder, 2 TFRecord shards (Object Detection API keys) and an .npz."""
    root = tmp_path_factory.mktemp("stream")
    labels = [i % 3 for i in range(20)]
    for i, label in enumerate(labels):
        folder = root / "folder" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:02d}.png").write_bytes(tf.io.encode_png(_image(i)).numpy())
    (root / "records").mkdir()
    for shard in range(2):
        with tf.io.TFRecordWriter(str(root / "records" / f"train-{shard:05d}-of-00002.tfrecord")) as writer:
            for i in range(shard * 10, shard * 10 + 10):
                writer.write(_example(tf.io.encode_png(_image(i)).numpy(), labels[i], "image/object/class/label",
                                      f"name{labels[i]}".encode()))
    x = np.stack([_image(i) for i in range(20)])
    np.savez(root / "plain.npz", x=x, y=np.array(labels))
    np.savez_compressed(root / "packed.npz", x=x, y=np.array(labels))
    return {"folder": str(root / "folder"), "records": str(root / "records"), "npz": str(root / "plain.npz"),
            "packed": str(root / "packed.npz")}


@pytest.mark.parametrize("kind", ["folder", "records", "npz", "packed"])
def test_streamed_batches_are_the_in_memory_batches_and_resume_exactly(sources, kind):
    source = open_source(sources[kind])
    assert sorted(np.bincount(source.labels).tolist()) == [6, 7, 7]
    memory = load_dataset(source, (8, 9), 3)
    augment = Augment(flip=True, pad=2, brightness=0.2)
    streamed = list(train_batches(source, BatchStream(source, 6, seed=3, augment=augment), (8, 9), 3, stop=8))
    reference = BatchStream(memory, 6, seed=3, augment=augment)
    for batch in streamed:
        images, labels = reference.batch(batch.step)
        np.testing.assert_array_equal(batch.images, images)
        np.testing.assert_array_equal(batch.labels, labels)
    resumed = list(train_batches(source, BatchStream(source, 6, seed=3, augment=augment), (8, 9), 3, start=5, stop=8))
    assert [b.step for b in resumed] == [5, 6, 7]  # a new process after kill -9 at step 5: the very same batches
    for a, b in zip(resumed, streamed[5:]):
        np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(streamed[0].images, streamed[1].images)


def test_validation_batches_in_order_and_never_augmented(sources):
    source = open_source(sources["folder"])
    memory = load_dataset(source, (H, W), 3)
    got = list(eval_batches(source, 8, (H, W), 3))
    assert [len(b.labels) for b in got] == [8, 8, 4]
    np.testing.assert_array_equal(np.concatenate([b.images for b in got]), memory.images)
    # PNG is lossless and the size is native: the pixels come back exactly
    with open(source.files[0], "rb") as f:
        np.testing.assert_array_equal(memory.images[0], tf.io.decode_png(f.read()).numpy())


def test_npz_is_memory_mapped_not_copied(sources):
    assert isinstance(open_source(sources["npz"]).array, np.memmap)
    packed = open_source(sources["packed"])  # deflated: unpacked once to a temporary .npy, then mapped
    assert isinstance(packed.array, np.memmap)
    with zipfile.ZipFile(sources["packed"]) as archive:
        assert archive.getinfo("x.npy").compress_type == zipfile.ZIP_DEFLATED


def test_object_detection_keys_and_class_text(sources):
    source = open_source(sources["records"])
    assert source.kind == "tfrecord" and len(source) == 20 and source.image_key == "image/encoded"
    assert source.class_names == ["name0", "name1", "name2"]
    assert source.describe(13) == f"record 3 of {source.files[1]}"


def test_split_is_stratified_seeded_and_decodes_nothing(sources):
    source = open_source(sources["records"])
    train, val = split(source, 0.3, seed=1)
    assert sorted(np.bincount(val.labels).tolist()) == [2, 2, 2]
    assert sorted(train.rows.tolist() + val.rows.tolist()) == list(range(20))
    again, _ = split(source, 0.3, seed=1)
    assert again.rows.tolist() == train.rows.tolist()
    # a split source streams the rows it names
    memory = load_dataset(source, (H, W), 3)
    np.testing.assert_array_equal(load_dataset(val, (H, W), 3).images, memory.images[val.rows])


def test_undecodable_image_one_line_or_skipped_and_counted(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            (tmp_path / cls / f"{i}.png").write_bytes(tf.io.encode_png(_image(i)).numpy())
    (tmp_path / "b" / "1.png").write_bytes(b"\x89PNG broken")
    source = open_source(tmp_path)  # indexing decodes nothing
    stream = BatchStream(source, 4, seed=0)
    with pytest.raises(DataError, match=r"^cannot decode image .*b/1\.png: [^\n]*--skip-bad-images[^\n]*$"):
        list(train_batches(source, stream, (8, 8), 3, stop=3))
    skipped = Skipped(allowed=True)
    got = list(train_batches(source, stream, (8, 8), 3, stop=6, skipped=skipped))
    assert list(skipped.files) == [str(tmp_path / "b" / "1.png")]
    bad = source.files.index(str(tmp_path / "b" / "1.png"))
    for batch in got:  # the bad image never contributes; every other sample of the batch is there
        expected = [i for i in stream.indices(batch.step) if i != bad]
        assert batch.indices.tolist() == expected and len(batch.labels) == len(expected)
    assert sum(len(b.labels) for b in eval_batches(source, 4, (8, 8), 3, skipped)) == 5


def test_slim_labels_file_orders_class_folders(tmp_path):
    for cls in ("tulip", "daisy"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "a.png").write_bytes(tf.io.encode_png(_image(0)).numpy())
    assert open_source(tmp_path).class_names == ["daisy", "tulip"]  # sorted folder names without labels.txt
    (tmp_path / "labels.txt").write_text("0:tulip\n1:daisy\n")
    source = open_source(tmp_path)
    assert source.class_names == ["tulip", "daisy"]
    assert dict(zip(source.files, source.labels.tolist())) == {
        str(tmp_path / "daisy" / "a.png"): 1, str(tmp_path / "tulip" / "a.png"): 0}
