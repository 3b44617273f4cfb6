"""Variable selection: boundary-matched scopes, regexes, trainability, graph position, optimizer state."""

from __future__ import annotations

import pytest
import tensorflow as tf

import tf1tune
from tf1tune.errors import SelectionError
from tf1tune.selection import (
    exclude,
    include,
    is_optimizer_state,
    rename_map,
    scope_matches,
    select,
    trainable_only,
    upstream_of,
    without_optimizer_state,
)


def _names(variables):
    return [v.op.name for v in variables]


def _vars(*names: str, trainable: bool = True) -> list[tf.Variable]:
    """Variables with the given op names in the current graph."""
    out = []
    for name in names:
        scope, _, leaf = name.rpartition("/")
        with tf.compat.v1.variable_scope(scope or tf.compat.v1.get_variable_scope()):
            out.append(tf.compat.v1.get_variable(leaf, shape=[1], trainable=trainable))
    return out


@pytest.mark.parametrize("name,scope,expected", [
    ("logits", "logits", True),
    ("logits/weights", "logits", True),
    ("logits/weights", "logits/", True),
    ("resnet_v1_50/logits/biases", "resnet_v1_50/logits", True),
    ("logits_new/w", "logits", False),
    ("net/logits/w", "logits", False),
    ("resnet_v1_50/logits/biases", "resnet_v1_50/log", False),
])
def test_scope_matches_at_slash_boundaries(name, scope, expected):
    assert scope_matches(name, scope) is expected


def test_include_exclude_boundary_and_regex():
    with tf.Graph().as_default():
        vs = _vars("net/conv1/weights", "net/logits/weights", "net/logits_new/weights", "logits/biases")
        assert _names(include(vs, "net/logits")) == ["net/logits/weights"]
        assert _names(include(vs, ["logits", "net/conv1"])) == ["net/conv1/weights", "logits/biases"]
        assert _names(exclude(vs, "net/logits")) == ["net/conv1/weights", "net/logits_new/weights", "logits/biases"]
        assert _names(include(vs, r"logits(_new)?/weights$", regex=True)) == [
            "net/logits/weights", "net/logits_new/weights"]
        assert _names(exclude(vs, "^net/", regex=True)) == ["logits/biases"]


def test_selector_matching_nothing_lists_scopes():
    with tf.Graph().as_default():
        vs = _vars("DigitsCNN/Logits/weights", "DigitsCNN/Conv2d_1/weights", "global_step")
        with pytest.raises(SelectionError, match=r"include scope 'Logits' matches no variable \(top-level scopes: "
                                                 r"DigitsCNN, global_step; closest: DigitsCNN/Logits"):
            include(vs, "Logits")
        with pytest.raises(SelectionError, match="exclude scope 'DigitsCNN/Logit' matches no variable"):
            select(vs, exclude_scopes=["DigitsCNN/Logit"])
        with pytest.raises(SelectionError, match="matches no variable"):
            include(vs, "^nothing", regex=True)
        with pytest.raises(SelectionError, match=r"'\(' is not a valid regular expression"):
            exclude(vs, "(", regex=True)
        with pytest.raises(SelectionError, match="selection is empty"):
            select(vs, include_scopes="global_step")  # only optimizer state left, which is dropped by default


def test_trainable_only_and_optimizer_state_left_out_by_default():
    with tf.Graph().as_default():
        w = tf.compat.v1.get_variable("net/w", shape=[3, 2])
        stat = tf.compat.v1.get_variable("net/bn/moving_mean", shape=[2], trainable=False)
        step = tf.compat.v1.train.get_or_create_global_step()
        loss = tf.reduce_sum(tf.matmul(tf.ones([1, 3]), w) + stat)
        tf.compat.v1.train.MomentumOptimizer(0.1, 0.9).minimize(loss, global_step=step)
        tf.compat.v1.train.AdamOptimizer().minimize(loss)
        everything = tf.compat.v1.global_variables()
        assert {"net/w/Momentum", "net/w/Adam", "net/w/Adam_1", "beta1_power", "beta2_power", "global_step"} <= set(
            _names(everything))
        assert _names(select(everything)) == ["net/w", "net/bn/moving_mean"]
        assert _names(without_optimizer_state(everything)) == ["net/w", "net/bn/moving_mean"]
        assert set(_names(select(everything, keep_optimizer_state=True))) == set(_names(everything))
        assert _names(select(everything, trainable_only=True)) == ["net/w"]
        assert _names(trainable_only(everything)) == ["net/w"]
        assert is_optimizer_state(step) and not is_optimizer_state(w)


def test_global_step_recognised_by_collection():
    with tf.Graph().as_default():
        step = tf.compat.v1.Variable(0, trainable=False, name="Variable")  # slim-era unnamed int step
        tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.GLOBAL_STEP, step)
        plain = tf.compat.v1.Variable(1, trainable=False, name="Variable")
        assert is_optimizer_state(step) and not is_optimizer_state(plain)


def test_up_to_includes_batch_norm_moving_statistics():
    with tf.Graph().as_default():
        images = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1], name="input")
        _, end_points = tf1tune.build_net("digits_cnn", images, num_classes=5, is_training=False)
        everything = tf.compat.v1.global_variables()
        upstream = _names(select(everything, up_to=end_points["Conv2d_2"]))
        assert upstream == [n for n in _names(everything) if n.startswith(("DigitsCNN/Conv2d_1/", "DigitsCNN/Conv2d_2/"))]
        assert "DigitsCNN/Conv2d_2/BatchNorm/moving_mean" in upstream
        assert "DigitsCNN/Conv2d_2/BatchNorm/moving_variance" in upstream
        by_name = _names(upstream_of(everything, end_points["Conv2d_1"].name))
        assert by_name == [n for n in _names(everything) if n.startswith("DigitsCNN/Conv2d_1/")]
        assert len(by_name) == 5  # weights, gamma, beta, moving_mean, moving_variance
        # combined with scopes: the classifier is downstream anyway, Conv2d_1 excluded explicitly
        combined = select(everything, exclude_scopes="DigitsCNN/Conv2d_1", up_to=end_points["Conv2d_2"])
        assert all(n.startswith("DigitsCNN/Conv2d_2/") for n in _names(combined))
        with pytest.raises(SelectionError, match="up_to tensor 'DigitsCNN/Conv2d_9/Relu:0' is not in the graph"):
            select(everything, up_to="DigitsCNN/Conv2d_9/Relu:0")
        with pytest.raises(SelectionError, match="no variable of the selection is upstream of 'input'"):
            select(everything, up_to=images)


def test_rename_map_checkpoint_scope_to_graph_scope():
    with tf.Graph().as_default():
        vs = _vars("encoder/resnet_v1_50/conv1/weights", "encoder/resnet_v1_50_extra/w", "head/logits/weights")
        mapping = rename_map(vs, {"resnet_v1_50/": "encoder/resnet_v1_50/"})
        assert {k: v.op.name for k, v in mapping.items()} == {
            "resnet_v1_50/conv1/weights": "encoder/resnet_v1_50/conv1/weights",
            "encoder/resnet_v1_50_extra/w": "encoder/resnet_v1_50_extra/w",  # not at a boundary: unchanged
            "head/logits/weights": "head/logits/weights",
        }
        with pytest.raises(SelectionError, match="graph scope 'encoder/resnet' matches no variable"):
            rename_map(vs, {"resnet": "encoder/resnet"})
