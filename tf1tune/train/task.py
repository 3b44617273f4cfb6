"""The graph of a fine-tuning run: the task model for the new task, the restore choice, loss and train ops.

For a slim net the task model is a training tower (batch norm in training mode) and an evaluation tower that
shares its variables; for a `.meta` or frozen graph it is the imported graph with a new head grafted on
`--endpoint` (and, for a frozen graph, the constants of the trainable scopes turned back into variables).
`build_training` adds the loss and one train op per phase (`tf1tune.train.train_op`); batch norm that no phase
trains runs in inference mode (`tf1tune.train.batchnorm`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from tf1tune.checkpoints import resolve_checkpoint
from tf1tune.errors import ConfigError, Tf1tuneError
from tf1tune.graft import graft, unfreeze
from tf1tune.graph_safety import parse_allow_ops
from tf1tune.loaders import load_frozen, load_meta
from tf1tune.names import not_found
from tf1tune.nets.build import build_net
from tf1tune.nets.preprocessing import get_preprocessing
from tf1tune.nets.registry import get_net
from tf1tune.restore import plan_restore
from tf1tune.selection import scope_matches, select
from tf1tune.train.batchnorm import (
    batch_norm_to_inference,
    bool_switches,
    conds_to_inference,
    frozen_batch_norm_layers,
    frozen_batch_norm_updates,
)
from tf1tune.train.config import FinetuneConfig
from tf1tune.train.random_ops import make_stateless
from tf1tune.train.train_op import TrainOp, build_train_op, load_mask, multiplier_of

HEAD_SCOPE = "finetune_head"


@dataclass
class TaskModel:
    """The graph of a fine-tuning run and the tensors the loop needs.

    `train_feed` and `eval_feed` hold what training steps and evaluation feed besides images and labels: the
    source's boolean switches (`is_training`: True for training, False for evaluation) and `set` values.
    `frozen_constants` counts the values of a frozen source's weights that stay constants.
    """

    graph: tf.Graph
    images: tf.Tensor
    labels: tf.Tensor
    train_logits: tf.Tensor
    eval_logits: tf.Tensor
    image_size: tuple[int, int]
    channels: int
    model_variables: list[tf.Variable]
    new_scopes: list[str]
    classifier_scopes: tuple[str, ...] = ()
    train_feed: dict[tf.Tensor, Any] = field(default_factory=dict)
    eval_feed: dict[tf.Tensor, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    train_endpoint: tf.Tensor | None = None  # the head's input in each tower (what the feature cache feeds)
    eval_endpoint: tf.Tensor | None = None
    frozen_constants: int = 0

    @property
    def default_scopes(self) -> list[str]:
        """What a phase without trainable scopes trains: the classifier scopes of the net, or the new head."""
        return list(self.classifier_scopes) + self.new_scopes


def _logits_2d(logits: tf.Tensor, classes: int) -> tf.Tensor:
    return tf.reshape(logits, [-1, classes]) if logits.shape.rank != 2 else logits


def _build_slim(config: FinetuneConfig) -> TaskModel:
    assert config.net is not None  # build_task_model's choice
    net = get_net(config.net)
    classes = config.num_classes or net.num_classes
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(config.seed)
        size = (config.input_size[0], config.input_size[1]) if config.input_size else net.input_size
        images = tf.compat.v1.placeholder(tf.float32, [None, *size, net.channels], name="input")
        labels = tf.compat.v1.placeholder(tf.int64, [None], name="labels")
        inputs = get_preprocessing(net.preprocessing)(images)
        train_logits, train_points = build_net(net.name, inputs, num_classes=classes, is_training=True)
        with tf.compat.v1.variable_scope(tf.compat.v1.get_variable_scope(), reuse=True):
            eval_logits, eval_points = build_net(net.name, inputs, num_classes=classes, is_training=False)
        endpoint = config.endpoint if config.endpoint in train_points else net.default_endpoint
        train_logits, eval_logits = _logits_2d(train_logits, classes), _logits_2d(eval_logits, classes)
        model_variables = list(graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES))
    return TaskModel(graph=graph, images=images, labels=labels, train_logits=train_logits,
                     eval_logits=eval_logits, image_size=size, channels=net.channels,
                     model_variables=model_variables, new_scopes=[], classifier_scopes=net.classifier_scopes,
                     checkpoint=resolve_checkpoint(config.checkpoint) if config.checkpoint else None,
                     train_endpoint=train_points.get(endpoint), eval_endpoint=eval_points.get(endpoint))


def _build_imported(config: FinetuneConfig) -> TaskModel:
    if config.meta:
        handle = load_meta(config.meta, checkpoint=config.checkpoint)
    else:
        assert config.frozen is not None  # validate: exactly one source
        handle = load_frozen(config.frozen)
    handle.allowed_ops = parse_allow_ops(config.allow_ops)
    handle.check_safe()  # before anything of the graph runs (unfreeze reads its constants)
    if config.frozen:
        scopes = [s for s in config.trainable_scopes if s != HEAD_SCOPE]
        scopes += [s for p in config.phases for s in p.trainable_scopes if s != HEAD_SCOPE and s not in scopes]
        if scopes:
            handle = unfreeze(handle, scopes)
    with handle.graph.as_default():
        tf.compat.v1.set_random_seed(config.seed)  # before the head is built, so that its initial values are seeded
    if not config.endpoint or not config.num_classes or not config.input:
        raise ConfigError("--input, --endpoint and --num-classes are required with --meta or --frozen")
    images = handle.tensor(config.input)
    shape = images.shape.as_list()
    if len(shape) != 4 or None in shape[1:]:
        raise ConfigError(f"input '{images.name}' must be an image batch [N, H, W, C] with known H, W, C; it is {shape}")
    model_variables = list(handle.variables)
    train_feed, eval_feed = _switch_feeds(handle, config.set)
    constants = 0 if config.meta else _float_constant_values(handle.graph)
    spec = config.head or f"global_pool, dropout(0.2), dense({config.num_classes})"
    handle.graph.seed = config.seed  # before the head's initializers exist, so that they are seeded too
    head = graft(handle, config.endpoint, spec, scope=HEAD_SCOPE)
    with handle.graph.as_default():
        labels = tf.compat.v1.placeholder(tf.int64, [None], name="finetune_labels")
        logits = _logits_2d(head.output, config.num_classes)
    return TaskModel(graph=handle.graph, images=images, labels=labels, train_logits=logits, eval_logits=logits,
                     image_size=(shape[1], shape[2]), channels=shape[3], model_variables=model_variables,
                     new_scopes=[HEAD_SCOPE], train_feed={**train_feed, head.is_training: True}, eval_feed=eval_feed,
                     checkpoint=handle.checkpoint if config.meta else None, frozen_constants=constants,
                     train_endpoint=handle.tensor(config.endpoint), eval_endpoint=handle.tensor(config.endpoint))


def _switch_feeds(handle: Any, settings: dict[str, Any]) -> tuple[dict[tf.Tensor, Any], dict[tf.Tensor, Any]]:
    """`(train_feed, eval_feed)` for an imported graph: each boolean switch (`is_training`) True when training and
    False when evaluating, and each `set` placeholder its value in both.

    Raises:
        NameNotFoundError: A `set` name is no tensor of the graph (closest names listed).
        ConfigError: A `set` name is not a placeholder, or its value does not fit the placeholder's dtype.
    """
    from tf1tune.export.freeze import placeholder_value

    train: dict[tf.Tensor, Any] = {t: True for t in bool_switches(handle.graph)}
    evaluate: dict[tf.Tensor, Any] = {t: False for t in train}
    for name, value in settings.items():
        tensor = handle.tensor(name)
        if tensor.op.type not in ("Placeholder", "PlaceholderV2", "PlaceholderWithDefault"):
            raise ConfigError(f"set: '{name}' is a {tensor.op.type} op, not a placeholder; set only placeholders "
                              f"(here: {', '.join(t.name for t in handle.inputs)})")
        try:
            train[tensor] = evaluate[tensor] = placeholder_value(tensor.op, value)
        except Tf1tuneError as e:
            raise ConfigError(f"set: {e}") from e
    return train, evaluate


def _float_constant_values(graph: tf.Graph) -> int:
    """The number of values in the floating-point constants of a frozen graph (what `tf1tune inspect` counts),
    leaving out the initial values of the variables that `unfreeze` made."""
    initializers = ("Assign", "AssignVariableOp")
    return sum(math.prod(op.outputs[0].shape.as_list()) for op in graph.get_operations()
               if op.type == "Const" and op.outputs[0].dtype.is_floating and op.outputs[0].shape.is_fully_defined()
               and not (op.outputs[0].consumers()
                        and all(c.type in initializers for c in op.outputs[0].consumers())))


def build_task_model(config: FinetuneConfig) -> TaskModel:
    """The graph for `config`'s source and task (see the module docstring)."""
    return _build_slim(config) if config.net else _build_imported(config)


def restore_choice(model: TaskModel, config: FinetuneConfig) -> tuple[list[tf.Variable], list[str]]:
    """Variables to restore from the source checkpoint, and one note per scope left out.

    A classifier scope is left out when `plan_restore` finds one of its variables missing from the checkpoint or
    of another shape there (another class count, the 1001/1000 background offset included).
    """
    assert model.checkpoint is not None  # the runner only asks with a checkpoint
    notes = []
    candidates = list(model.model_variables)
    if config.exclude_scopes:
        candidates = select(candidates, exclude_scopes=config.exclude_scopes, regex=config.regex_scopes)
    in_classifier = [v for v in candidates if any(scope_matches(v.op.name, s) for s in model.classifier_scopes)]
    plan = plan_restore(in_classifier, model.checkpoint) if in_classifier else None
    misfits = set(plan.missing) | {m["name"] for m in plan.shape_mismatch} if plan else set()
    misfit = [s for s in model.classifier_scopes if any(scope_matches(n, s) for n in misfits)]
    if misfit:
        candidates = [v for v in candidates if not any(scope_matches(v.op.name, s) for s in misfit)]
        notes.append(f"classifier scopes {', '.join(misfit)} left out of the restore: their shapes in the checkpoint "
                     "do not fit the new number of classes")
    return select(candidates), notes


def param_count(variables: list[tf.Variable]) -> int:
    """The number of values in `variables`."""
    return int(sum(math.prod(v.shape.as_list()) for v in variables))


@dataclass
class Training:
    """The training part of a run's graph: loss, one train op per phase, and what they train.

    `loss` is the cross-entropy (what is logged); the train ops minimise `total_loss`, which adds every
    regularization loss of the graph and `weight_decay`.
    """

    global_step: tf.Variable
    loss: tf.Tensor
    total_loss: tf.Tensor
    train_ops: list[TrainOp]
    trained: dict[str, tf.Variable]
    trained_scopes: list[str]
    histograms: tf.Tensor | None
    notes: list[str]
    probabilities: tf.Tensor
    weights_finite: tf.Tensor | None = None


def _masks(config: FinetuneConfig, graph: tf.Graph) -> dict[str, np.ndarray]:
    by_name = {v.op.name: v for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)}
    masks = {}
    for name, spec in config.masks.items():
        if name not in by_name:
            raise not_found("variable to mask", name, by_name)
        masks[name] = load_mask(spec, tuple(by_name[name].shape.as_list()))
    return masks


def _untrained_new_variables(model: TaskModel, phases: list[Any], phase_vars: list[list[tf.Variable]]) -> list[str]:
    """One note per phase that leaves variables of the new head (`finetune_head`) untrained."""
    notes = []
    trainable = model.graph.get_collection(tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES)
    new = [v.op.name for v in trainable if any(scope_matches(v.op.name, s) for s in model.new_scopes)]
    for i, (phase, variables) in enumerate(zip(phases, phase_vars)):
        trained = {v.op.name for v in variables if multiplier_of(v.op.name, phase.lr_multipliers) != 0}
        left = sorted(set(new) - trained)
        if left and phase.steps:
            notes.append(f"phase {i + 1} does not train the new head ({', '.join(left[:3])}"
                         f"{', ...' if len(left) > 3 else ''}): it keeps its values, random before any phase trains "
                         f"it; add '{HEAD_SCOPE}' to the phase's trainable_scopes")
    return notes


def build_training(model: TaskModel, config: FinetuneConfig, replicas: int | None = None,
                   task_index: int = 0) -> Training:
    """Add the loss and one train op per phase to `model.graph`; frozen batch norm runs in inference mode.

    `replicas`: synchronous steps over that many workers (`tf1tune.train.cluster`); worker `task_index` draws its
    random ops (dropout) with seed `seed + task_index`, so that the workers' draws differ.
    """
    phases = config.resolved_phases()
    notes: list[str] = []
    graph = model.graph
    with graph.as_default():
        global_step = tf.compat.v1.train.get_or_create_global_step()
        probabilities = tf.nn.softmax(model.eval_logits, name="probabilities")  # what an export serves
        loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(model.labels, model.train_logits)
        regularization = tf.compat.v1.losses.get_regularization_losses()  # the graph's own (slim arg scopes)
        trainable = graph.get_collection(tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES)
        phase_scopes = [p.trainable_scopes or model.default_scopes for p in phases]
        phase_vars = [select(trainable, include_scopes=s, regex=config.regex_scopes) for s in phase_scopes]
        rules = [(scopes, p.lr_multipliers) for scopes, p in zip(phase_scopes, phases)]

        def trained_by_some_phase(name: str) -> bool:  # under a phase's scopes, with a nonzero multiplier there
            return any(any(scope_matches(name, s, config.regex_scopes) for s in scopes)
                       and multiplier_of(name, multipliers, config.regex_scopes) != 0 for scopes, multipliers in rules)

        trained = {v.op.name: v for vs in phase_vars for v in vs if trained_by_some_phase(v.op.name)}
        kernels = [v for v in trained.values() if v.shape.rank is not None and v.shape.rank >= 2]
        if config.weight_decay and kernels:
            with tf.compat.v1.name_scope("weight_decay"):
                regularization = [*regularization, config.weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in kernels])]
        total_loss = loss + tf.add_n(regularization) if regularization else loss
        # every random op of the training tower a function of (seed, step): a resumed run draws what an
        # uninterrupted one does (before the gradients, which read the random values too)
        notes += make_stateless(graph, total_loss, global_step, config.seed + task_index)[1]
        notes += _untrained_new_variables(model, phases, phase_vars)
        # Layers that no phase trains run in inference mode in the training tower too: fused batch norm rewired to
        # its moving statistics, and the conds of an is_training switch sent to their inference branch.
        conds_to_inference(graph, trained_by_some_phase)
        try:
            batch_norm_to_inference(graph, frozen_batch_norm_layers(graph, trained_by_some_phase))
        except Tf1tuneError as e:  # training mode baked into an imported graph: say so, keep the statistics fixed
            notes.append(str(e))
        update_ops = graph.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
        masks = _masks(config, graph)
        train_ops = []
        for i, (phase, scopes, variables) in enumerate(zip(phases, phase_scopes, phase_vars)):
            kept, _ = frozen_batch_norm_updates(update_ops, scopes, config.regex_scopes)
            kept = [u for u in kept if multiplier_of(u.name if isinstance(u, tf.Operation) else u.op.name,
                                                     phase.lr_multipliers, config.regex_scopes) != 0]
            train_ops.append(build_train_op(
                total_loss, variables, optimizer=config.optimizer, learning_rate=phase.learning_rate,
                multipliers=phase.lr_multipliers, regex=config.regex_scopes, clip_norm=config.clip_norm,
                masks={k: m for k, m in masks.items() if k in {v.op.name for v in variables}},
                global_step=global_step, update_ops=kept, name=f"phase{i + 1}", replicas=replicas))
        floats = [v for v in trained.values() if v.dtype.base_dtype.is_floating]
        weights_finite = tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in floats]),
                                       name="weights_finite") if floats else None
        hist_vars = select(model.model_variables, include_scopes=config.histograms) if config.histograms else []
        histograms = tf.compat.v1.summary.merge([tf.compat.v1.summary.histogram(v.op.name, v) for v in hist_vars]) \
            if hist_vars else None
    return Training(global_step=global_step, loss=loss, total_loss=total_loss, train_ops=train_ops, trained=trained,
                    trained_scopes=sorted({n.rsplit("/", 1)[0] for n in trained}), histograms=histograms, notes=notes,
                    probabilities=probabilities, weights_finite=weights_finite)
