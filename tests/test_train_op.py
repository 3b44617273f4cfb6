"""Tests of tf1tune.train.train_op and tf1tune.train.batchnorm: what a training step changes, and what it must leave bit-identical."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tf1tune  # noqa: F401  (the compat shim; conftest imports it first)
from tf1tune.errors import NameNotFoundError, SelectionError, Tf1tuneError
from tf1tune.train.batchnorm import batch_norm_to_inference, frozen_batch_norm_updates
from tf1tune.train.train_op import OPTIMIZERS, build_train_op, load_mask

RNG = np.random.default_rng(0)
X = RNG.normal(size=(8, 4)).astype(np.float32)
Y = RNG.normal(size=(8, 3)).astype(np.float32)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float32).view(np.uint32)


def _toy(weight_decay: float = 0.01):
    """A linear model in the current graph: A/w [4, 3], A/b [3], B/w [4, 3]; squared error plus L2 decay."""
    with tf.compat.v1.variable_scope("A"):
        w = tf.compat.v1.get_variable("w", initializer=RNG.normal(size=(4, 3)).astype(np.float32))
        b = tf.compat.v1.get_variable("b", initializer=np.ones(3, np.float32))
    with tf.compat.v1.variable_scope("B"):
        w2 = tf.compat.v1.get_variable("w", initializer=RNG.normal(size=(4, 3)).astype(np.float32))
    pred = tf.matmul(tf.matmul(X, w) + b, tf.eye(3) + 0.1 * w2[:3])
    loss = tf.reduce_mean((pred - Y) ** 2) + weight_decay * (tf.nn.l2_loss(w) + tf.nn.l2_loss(w2))
    return loss, w, b, w2


def _session(graph: tf.Graph) -> tf.compat.v1.Session:
    sess = tf.compat.v1.Session(graph=graph)
    sess.run(tf.compat.v1.global_variables_initializer())
    return sess


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_masked_entries_bit_identical_under_every_optimizer(optimizer):
    graph = tf.Graph()
    with graph.as_default():
        loss, w, b, w2 = _toy(weight_decay=0.05)
        mask = load_mask({"rows": [0, 2]}, (4, 3))
        mask[3, 1] = True
        step = build_train_op(loss, [w, b, w2], optimizer=optimizer, learning_rate=0.1, masks={"A/w": mask})
        assert [v.op.name for v in step.optimizer_variables if v.op.name.endswith("frozen_snapshot")] == \
            ["A/w/frozen_snapshot"]
        assert step.snapshots["A/w"] in tf.compat.v1.global_variables()
        assert step.snapshots["A/w"] not in tf.compat.v1.trainable_variables()
        with _session(graph) as sess:
            step.capture_snapshots(sess)
            w0, b0, w20 = sess.run([w, b, w2])
            for _ in range(5):
                sess.run(step.op)
            w1, b1, w21 = sess.run([w, b, w2])
    assert np.array_equal(_bits(w1[mask]), _bits(w0[mask]))
    assert np.all(w1[~mask] != w0[~mask])
    assert np.all(b1 != b0) and np.all(w21 != w20)


def test_zeroing_the_gradient_alone_would_move_masked_entries():
    """Why the snapshot is needed: momentum moves an entry whose gradient has become 0."""
    graph = tf.Graph()
    with graph.as_default():
        loss, w, _, _ = _toy()
        g = tf.compat.v1.gradients(loss, w)[0]
        g = tf.where(tf.constant(load_mask({"rows": [0]}, (4, 3))), tf.zeros_like(g), g)
        # Momentum state from an earlier, unmasked step: apply the plain gradient once, then the masked one.
        opt = tf.compat.v1.train.MomentumOptimizer(0.1, 0.9)
        first = opt.apply_gradients([(tf.compat.v1.gradients(loss, w)[0], w)])
        second = opt.apply_gradients([(g, w)])
        with _session(graph) as sess:
            sess.run(first)
            before = sess.run(w)
            sess.run(second)
            after = sess.run(w)
    assert np.any(after[0] != before[0])


def test_multiplier_zero_freezes_and_is_in_no_group():
    graph = tf.Graph()
    with graph.as_default():
        loss, w, b, w2 = _toy()
        step = build_train_op(loss, [w, b, w2], optimizer="adam", learning_rate=0.1, multipliers={"B": 0.0})
        assert step.frozen_by_multiplier == ["B/w"]
        assert all("B/w" not in names for _, names in step.groups)
        assert step.groups == [(1.0, ["A/w", "A/b"])]
        assert not any(v.op.name.startswith("B/w/") for v in step.optimizer_variables)
        with _session(graph) as sess:
            w20, w0 = sess.run([w2, w])
            for _ in range(3):
                sess.run(step.op)
            w21, w1 = sess.run([w2, w])
    assert np.array_equal(_bits(w21), _bits(w20))
    assert np.all(w1 != w0)


def test_multiplier_scales_sgd_update_exactly_and_longest_scope_wins():
    graph = tf.Graph()
    with graph.as_default():
        c = RNG.normal(size=(5,)).astype(np.float32)
        variables = {}
        for scope in ("base", "slow", "slow/inner"):
            with tf.compat.v1.variable_scope(scope):
                variables[scope] = tf.compat.v1.get_variable("v", initializer=np.zeros(5, np.float32))
        loss = sum(tf.reduce_sum(c * v) for v in variables.values())  # linear: gradient is c everywhere
        step = build_train_op(loss, list(variables.values()), optimizer="sgd", learning_rate=0.5,
                              multipliers={"slow": 0.1, "slow/inner": 0.5})
        assert step.groups == [(1.0, ["base/v"]), (0.1, ["slow/v"]), (0.5, ["slow/inner/v"])]
        with _session(graph) as sess:
            sess.run(step.op)
            base, slow, inner = sess.run([variables["base"], variables["slow"], variables["slow/inner"]])
    np.testing.assert_allclose(base, -0.5 * c, rtol=1e-6)
    np.testing.assert_allclose(slow, 0.1 * base, rtol=1e-6)
    np.testing.assert_allclose(inner, 0.5 * base, rtol=1e-6)


def test_multiplier_regex():
    graph = tf.Graph()
    with graph.as_default():
        loss, w, b, w2 = _toy()
        step = build_train_op(loss, [w, b, w2], optimizer="sgd", learning_rate=0.1,
                              multipliers={"/w$": 0.5, "^B/w$": 0.0}, regex=True)  # longest wins
    assert step.groups == [(0.5, ["A/w"]), (1.0, ["A/b"])]
    assert step.frozen_by_multiplier == ["B/w"]


def test_unselected_variables_bit_identical():
    """As tf-slim's testTrainingSubsetsOfVariablesOnlyUpdatesThoseVariables."""
    graph = tf.Graph()
    with graph.as_default():
        loss, w, b, w2 = _toy()
        step = build_train_op(loss, [w], optimizer="momentum", learning_rate=0.1)
        with _session(graph) as sess:
            before = sess.run([w, b, w2])
            for _ in range(3):
                sess.run(step.op)
            after = sess.run([w, b, w2])
    assert np.all(after[0] != before[0])
    assert np.array_equal(_bits(after[1]), _bits(before[1]))
    assert np.array_equal(_bits(after[2]), _bits(before[2]))


def test_global_step_increments_once_per_step_with_several_groups():
    graph = tf.Graph()
    with graph.as_default():
        loss, w, b, w2 = _toy()
        gs = tf.compat.v1.train.get_or_create_global_step()
        step = build_train_op(loss, [w, b, w2], optimizer="rmsprop", learning_rate=0.01,
                              multipliers={"A/b": 0.1, "B": 2.0}, global_step=gs)
        assert len(step.groups) == 3
        with _session(graph) as sess:
            for _ in range(4):
                sess.run(step.op)
            assert sess.run(gs) == 4


def test_two_train_ops_keep_separate_optimizer_state():
    graph = tf.Graph()
    with graph.as_default():
        loss, w, b, _ = _toy()
        one = build_train_op(loss, [w, b], optimizer="momentum", learning_rate=0.1, name="phase1")
        two = build_train_op(loss, [w], optimizer="momentum", learning_rate=0.1, name="phase2")
        names_one = {v.op.name for v in one.optimizer_variables}
        names_two = {v.op.name for v in two.optimizer_variables}
        assert names_one == {"A/w/phase1_0/Momentum", "A/b/phase1_0/Momentum"}
        assert names_two == {"A/w/phase2_0/Momentum"}
        slot_one = next(v for v in one.optimizer_variables if v.op.name == "A/w/phase1_0/Momentum")
        slot_two = two.optimizer_variables[0]
        with _session(graph) as sess:
            sess.run(one.op)
            assert np.any(sess.run(slot_one) != 0)
            assert np.all(sess.run(slot_two) == 0)


def test_slot_names_are_recognised_as_optimizer_state():
    from tf1tune.selection import is_optimizer_state

    graph = tf.Graph()
    with graph.as_default():
        loss, w, b, _ = _toy()
        step = build_train_op(loss, [w, b], optimizer="adam", learning_rate=0.1, multipliers={"A/b": 0.5},
                              name="phase1")
    assert all(is_optimizer_state(v) for v in step.optimizer_variables)


def test_clipping_bounds_global_norm():
    graph = tf.Graph()
    with graph.as_default():
        loss, w, b, w2 = _toy()
        big = 1000.0 * loss
        step = build_train_op(big, [w, b, w2], optimizer="sgd", learning_rate=1.0, clip_norm=0.5,
                              multipliers={"B": 1.0})
        with _session(graph) as sess:
            before = sess.run([w, b, w2])
            sess.run(step.op)
            after = sess.run([w, b, w2])
    norm = np.sqrt(sum(np.sum((a - b_) ** 2) for a, b_ in zip(after, before)))
    assert norm == pytest.approx(0.5, rel=1e-4)


def test_update_ops_run_with_the_step():
    graph = tf.Graph()
    with graph.as_default():
        loss, w, _, _ = _toy()
        counter = tf.compat.v1.get_variable("counter", initializer=0, trainable=False)
        step = build_train_op(loss, [w], optimizer="sgd", learning_rate=0.1,
                              update_ops=[counter.assign_add(1).op])
        with _session(graph) as sess:
            sess.run(step.op)
            sess.run(step.op)
            assert sess.run(counter) == 2


# ---- batch norm ---------------------------------------------------------------------------------------

def _digits_graph():
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(0)
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1])
        logits, train_ep = tf1tune.build_net("digits_cnn", x, num_classes=10, is_training=True)
        with tf.compat.v1.variable_scope(tf.compat.v1.get_variable_scope(), reuse=True):
            _, infer_ep = tf1tune.build_net("digits_cnn", x, num_classes=10, is_training=False)
    return graph, x, logits, train_ep, infer_ep


def _var(graph: tf.Graph, name: str) -> tf.Variable:
    return next(v for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES) if v.op.name == name)


def test_batch_norm_to_inference_and_frozen_updates():
    graph, x, logits, train_ep, infer_ep = _digits_graph()
    images = RNG.uniform(size=(16, 8, 8, 1)).astype(np.float32)
    labels = RNG.integers(0, 10, size=16)
    with graph.as_default():
        frozen = "DigitsCNN/Conv2d_1"
        stats = [_var(graph, f"{s}/BatchNorm/{m}") for s in ("DigitsCNN/Conv2d_1", "DigitsCNN/Conv2d_2")
                 for m in ("moving_mean", "moving_variance")]
        # Non-trivial moving statistics, so inference mode differs visibly from training mode.
        set_stats = tf.group(stats[0].assign(RNG.normal(size=16).astype(np.float32) * 0.1),
                             stats[1].assign(RNG.uniform(0.5, 2.0, size=16).astype(np.float32)))
        rewritten = batch_norm_to_inference(graph, [frozen])
        assert rewritten == ["DigitsCNN/Conv2d_1/BatchNorm/FusedBatchNormV3"]
        loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels, logits)
        trainable = [v for v in tf.compat.v1.trainable_variables() if not v.op.name.startswith(frozen + "/")]
        update_ops = graph.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
        kept, dropped = frozen_batch_norm_updates(update_ops, ["DigitsCNN/Conv2d_2", "DigitsCNN/Conv2d_3",
                                                               "DigitsCNN/Logits"])
        assert len(kept) == 4 and len(dropped) == 2
        assert all(op.name.startswith(frozen + "/") for op in dropped)
        step = build_train_op(loss, trainable, optimizer="momentum", learning_rate=0.1, update_ops=kept)
        with _session(graph) as sess:
            sess.run(set_stats)
            got, want = sess.run([train_ep["Conv2d_1"], infer_ep["Conv2d_1"]], {x: images})
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
            # Conv2d_2 still runs in training mode (batch statistics), so it differs from inference.
            got2, want2 = sess.run([train_ep["Conv2d_2"], infer_ep["Conv2d_2"]], {x: images})
            assert not np.allclose(got2, want2, atol=1e-3)
            before = sess.run(stats)
            for _ in range(3):
                sess.run(step.op, {x: images})
            after = sess.run(stats)
    assert np.array_equal(_bits(after[0]), _bits(before[0]))
    assert np.array_equal(_bits(after[1]), _bits(before[1]))
    assert np.any(after[2] != before[2]) and np.any(after[3] != before[3])


def test_unfused_batch_norm_cannot_be_switched():
    import tf_slim as slim

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4])
        slim.batch_norm(x, is_training=True, fused=False, scope="bn")
        with pytest.raises(Tf1tuneError, match=r"not fused .* training mode is baked into the graph"):
            batch_norm_to_inference(graph, ["bn"])


# ---- masks and errors -----------------------------------------------------------------------------------

def test_load_mask_specs(tmp_path):
    assert load_mask({"rows": [0, 2]}, (3, 2)).tolist() == [[True, True], [False, False], [True, True]]
    assert load_mask({"columns": [1]}, (2, 2, 3))[..., 1].all()
    assert load_mask({"columns": [1]}, (2, 2, 3)).sum() == 4
    assert np.argwhere(load_mask({"indices": [[0, 1], [2, 3]]}, (3, 4))).tolist() == [[0, 1], [2, 3]]
    path = tmp_path / "m.npy"
    np.save(path, np.eye(3, dtype=bool))
    assert load_mask(str(path), (3, 3)).tolist() == np.eye(3, dtype=bool).tolist()
    np.save(tmp_path / "f.npy", np.eye(3))
    with pytest.raises(Tf1tuneError, match="dtype float64, not bool"):
        load_mask(str(tmp_path / "f.npy"), (3, 3))
    with pytest.raises(Tf1tuneError, match=r"shape \[3, 3\], the variable has \[3, 4\]"):
        load_mask(str(path), (3, 4))
    with pytest.raises(Tf1tuneError, match="does not exist"):
        load_mask(str(tmp_path / "nope.npy"), (3, 3))
    with pytest.raises(Tf1tuneError, match=r"rows. index 3 is out of range .*valid: 0..2"):
        load_mask({"rows": [3]}, (3, 2))
    with pytest.raises(Tf1tuneError, match=r"index -1 is out of range"):
        load_mask({"columns": [-1]}, (3, 2))
    with pytest.raises(Tf1tuneError, match="must have 2 entries"):
        load_mask({"indices": [[0]]}, (3, 2))
    with pytest.raises(Tf1tuneError, match="unknown mask spec"):
        load_mask({"cols": [0]}, (3, 2))


def test_build_errors():
    graph = tf.Graph()
    with graph.as_default():
        loss, w, b, w2 = _toy()
        with pytest.raises(Tf1tuneError, match="unknown optimizer 'adagrad'; choose one of: sgd, momentum, adam, "
                                               "rmsprop"):
            build_train_op(loss, [w], optimizer="adagrad", learning_rate=0.1)
        with pytest.raises(NameNotFoundError, match=r"no trained variable to mask named 'A/ww' \(closest: A/w"):
            build_train_op(loss, [w], learning_rate=0.1, masks={"A/ww": np.zeros((4, 3), bool)})
        with pytest.raises(Tf1tuneError, match=r"mask of 'A/w' has shape \[3, 4\], the variable has \[4, 3\]"):
            build_train_op(loss, [w], learning_rate=0.1, masks={"A/w": np.zeros((3, 4), bool)})
        with pytest.raises(Tf1tuneError, match="mask of 'A/w' has dtype float32, not bool"):
            build_train_op(loss, [w], learning_rate=0.1, masks={"A/w": np.zeros((4, 3), np.float32)})
        with pytest.raises(SelectionError, match=r"scope 'A/ww' matches none of the trained variables \(closest: A/w"):
            build_train_op(loss, [w, b], learning_rate=0.1, multipliers={"A/ww": 0.1})
        with pytest.raises(SelectionError, match="scope 'A' matches none"):  # '/'-boundary rule: not 'A' of 'AB'
            build_train_op(loss, [w2], learning_rate=0.1, multipliers={"A": 0.1})
        with pytest.raises(Tf1tuneError, match="multiplier of 'A' must be a finite number >= 0, got -1"):
            build_train_op(loss, [w], learning_rate=0.1, multipliers={"A": -1})
        with pytest.raises(Tf1tuneError, match="every one of the 2 variables to train has learning-rate multiplier 0"):
            build_train_op(loss, [w, b], learning_rate=0.1, multipliers={"A": 0})
        with pytest.raises(Tf1tuneError, match="no variables to train"):
            build_train_op(loss, [], learning_rate=0.1)


def test_gradient_flows_through_inference_batch_norm():
    graph, x, logits, _, _ = _digits_graph()
    with graph.as_default():
        batch_norm_to_inference(graph, ["DigitsCNN/Conv2d_1"])
        gamma = _var(graph, "DigitsCNN/Conv2d_1/BatchNorm/gamma")
        step = build_train_op(tf.reduce_mean(logits ** 2), [gamma, _var(graph, "DigitsCNN/Conv2d_1/weights")],
                              optimizer="sgd", learning_rate=0.1)
        with _session(graph) as sess:
            before = sess.run(gamma)
            sess.run(step.op, {x: RNG.uniform(size=(4, 8, 8, 1)).astype(np.float32)})
            assert np.any(sess.run(gamma) != before)


def test_snapshot_is_checkpointed_for_resume(tmp_path):
    graph = tf.Graph()
    with graph.as_default():
        loss, w, b, _ = _toy()
        mask = load_mask({"columns": [0]}, (4, 3))
        step = build_train_op(loss, [w, b], optimizer="adam", learning_rate=0.1, masks={"A/w": mask})
        saver = tf.compat.v1.train.Saver()
        with _session(graph) as sess:
            step.capture_snapshots(sess)
            original = sess.run(w)
            sess.run(step.op)
            path = saver.save(sess, str(tmp_path / "run.ckpt"))
        with tf.compat.v1.Session(graph=graph) as sess:  # resume: restore, no capture
            saver.restore(sess, path)
            for _ in range(2):
                sess.run(step.op)
            resumed = sess.run(w)
    assert np.array_equal(_bits(resumed[mask]), _bits(original[mask]))
    assert np.all(resumed[~mask] != original[~mask])
