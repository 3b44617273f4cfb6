"""Session-scoped fixtures: the tiny model in every format, and the shared legacy corpus."""

from __future__ import annotations

import os

import pytest

import tf1tune  # noqa: F401  (installs the compat shim before tests build nets)
from tests import model_factory, tf1_style

LEGACY = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "legacy-models")
DIGITS = os.path.join(os.path.dirname(__file__), "..", "checkpoints", "digits_cnn")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> model_factory.TinyModels:
    """The tiny model written in every format (see tests/model_factory.py)."""
    return model_factory.write_all(str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="session")
def tf1_cnn(tmp_path_factory: pytest.TempPathFactory) -> tf1_style.Tf1Cnn:
    """A CNN in the style of TF 1.x scripts: tf.cond batch norm on an `is_training` placeholder (tests/tf1_style.py)."""
    return tf1_style.write_tf1_cnn(str(tmp_path_factory.mktemp("tf1_cnn")))


@pytest.fixture(scope="session")
def legacy_dir() -> str:
    """`../shared/legacy-models`; tests using it skip when the folder is absent."""
    path = os.path.abspath(LEGACY)
    if not os.path.isdir(path):
        pytest.skip("../shared/legacy-models is not present")
    return path


@pytest.fixture
def truncated_digits(tmp_path: "os.PathLike[str]") -> str:
    """A copy of the shipped checkpoints/digits_cnn whose data file is cut to 1000 bytes."""
    import glob
    import shutil

    bad = os.path.join(str(tmp_path), "truncated_digits")
    shutil.copytree(DIGITS, bad)
    with open(glob.glob(os.path.join(bad, "*.data-00000-of-00001"))[0], "r+b") as f:
        f.truncate(1000)
    return bad
