"""`ModelHandle`: what every loader returns, whatever the source format."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import tensorflow as tf

from tf1tune.graphdef import FUSED_BATCH_NORM_OPS, PLACEHOLDER_OPS, VARIABLE_OPS
from tf1tune.names import not_found

# Op types whose outputs are never a model's "output": bookkeeping, saving, initialisation, training.
_NOT_OUTPUT_OPS = frozenset({
    "NoOp", "Assert", "SaveV2", "Save", "SaveSlices", "RestoreV2", "Restore", "RestoreSlice", "MergeV2Checkpoints",
    "Assign", "AssignVariableOp", "AssignAdd", "AssignSub", "AssignAddVariableOp", "AssignSubVariableOp",
    "VarIsInitializedOp", "IsVariableInitialized", "ScalarSummary", "HistogramSummary", "ImageSummary",
    "MergeSummary", "TensorSummary", "TensorSummaryV2", "WriteScalarSummary", "QueueEnqueueV2",
    "QueueEnqueueManyV2", "QueueCloseV2", "QueueEnqueue", "QueueEnqueueMany", "QueueClose", "QueueSizeV2",
    "QueueSize", "Const", "VariableV2", "Variable", "VarHandleOp", "ReadVariableOp", "ShardedFilename",
    "StringJoin", "Print", "PrintV2", "ApplyMomentum", "ResourceApplyMomentum", "ApplyGradientDescent",
    "ResourceApplyGradientDescent", "ApplyAdam", "ResourceApplyAdam", "ApplyRMSProp", "ResourceApplyRMSProp",
    "Shape", "ShapeN", "Size", "Rank",
})
_NOT_OUTPUT_OP_PREFIXES = ("Apply", "ResourceApply", "Queue", "Reader", "Iterator", "Summary", "Write")
_NOT_OUTPUT_SCOPES = ("save/", "save_", "gradients/", "gradients_", "init", "report_uninitialized", "summaries/")
_VARIABLE_OPS = VARIABLE_OPS | {"Const"}  # what a "read" reads
_CONTROL_FLOW_OPS = frozenset({"If", "StatelessIf", "While", "StatelessWhile", "Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond", "RefSwitch",
                               "RefMerge", "RefEnter", "RefExit"})
_SWITCH_OPS = frozenset({"Switch", "RefSwitch"})
_SHAPE_OPS = frozenset({"Shape", "ShapeN", "Size", "Rank"})
# Ops whose outputs after the first are training-time statistics (batch mean and variance, reserve spaces).
_STATISTICS_SIDE_OUTPUT_OPS = FUSED_BATCH_NORM_OPS


@dataclass
class ModelHandle:
    """A loaded model: its graph, tensors by name, endpoints, variables, inputs and outputs.

    Attributes:
        kind: Source kind: `meta`, `slim`, `frozen` or `saved_model`.
        source: The path (or `slim:NAME`) it was loaded from.
        graph: The `tf.Graph` the model lives in; tf1tune never uses the global default graph.
        endpoints: Named tensors to graft on (slim `end_points`; for imported graphs the candidate outputs).
        inputs: Candidate input tensors (placeholders).
        outputs: Candidate output tensors: what nothing consumes, without plumbing (see `candidate_outputs`).
        checkpoint: Checkpoint prefix holding the variables' values, if any.
        tensorflow_version: TensorFlow version that wrote the source, when recorded.
        saver: The `tf.compat.v1.train.Saver` that restores `checkpoint`: the source's own (a `.meta` with a
            `saver_def`), else None until the first restoring `session()` builds one over `restore_variables`, so
            loading and inspecting add no ops to the graph.
        restore_variables: The variables a Saver built by `session()` restores: those of the source, as loaded
            (not the heads grafted on later).
        net: The registered net config (slim sources only).
        signatures: SavedModel signatures, `{name: {"inputs": {...}, "outputs": {...}}}` of tensor names.
        repairs: One line per repair applied to make the source import on this TensorFlow.
        extra: Loader-specific facts (GraphDef producer version, file format, SavedModel tags).
        risks: Nodes of the source that do more than compute (`tf1tune.graph_safety`); `session()` refuses to run
            the graph while it has any whose op type is not in `allowed_ops`.
        allowed_ops: Op types the user allows to run although they do more than compute (`--allow-ops`).
    """

    kind: str
    source: str
    graph: tf.Graph
    endpoints: dict[str, tf.Tensor] = field(default_factory=dict)
    inputs: list[tf.Tensor] = field(default_factory=list)
    outputs: list[tf.Tensor] = field(default_factory=list)
    checkpoint: str | None = None
    tensorflow_version: str | None = None
    saver: Any = None
    restore_variables: list[tf.Variable] = field(default_factory=list)
    net: Any = None
    signatures: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    repairs: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    risks: list[Any] = field(default_factory=list)
    allowed_ops: frozenset[str] = frozenset()

    @classmethod
    def from_graph(cls, kind: str, source: str, graph: tf.Graph, **fields: Any) -> "ModelHandle":
        """A handle on an imported graph whose inputs, outputs and endpoints are found in the graph itself:
        placeholders, tensors nothing consumes, and those tensors keyed by op name."""
        outputs = candidate_outputs(graph)
        fields.setdefault("restore_variables", list(graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)))
        return cls(kind=kind, source=source, graph=graph, endpoints=named_endpoints(outputs),
                   inputs=candidate_inputs(graph), outputs=outputs, **fields)

    # ---- lookups by name, each with the closest names on a miss -------------------------------------
    def tensor(self, name: str) -> tf.Tensor:
        """The tensor `name` (`op:0`; a bare op name means its first output)."""
        full = name if ":" in name else f"{name}:0"
        try:
            return self.graph.get_tensor_by_name(full)
        except (KeyError, ValueError):
            candidates = [t.name for op in self.graph.get_operations() for t in op.outputs]
            raise not_found("tensor", name, candidates) from None

    def operation(self, name: str) -> tf.Operation:
        """The operation `name`."""
        try:
            return self.graph.get_operation_by_name(name.split(":")[0])
        except (KeyError, ValueError):
            raise not_found("operation", name, [op.name for op in self.graph.get_operations()]) from None

    def endpoint(self, name: str) -> tf.Tensor:
        """The endpoint `name`; falls back to a tensor or op name of the graph."""
        if name in self.endpoints:
            return self.endpoints[name]
        try:
            return self.tensor(name)
        except KeyError:
            raise not_found("endpoint", name, list(self.endpoints),
                            hint="an endpoint may also be any tensor name of the graph, e.g. 'scope/op:0'") from None

    # ---- variables ------------------------------------------------------------------------------
    @property
    def variables(self) -> list[tf.Variable]:
        """Every global variable of the graph."""
        return self.graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)

    @property
    def trainable_variables(self) -> list[tf.Variable]:
        """The graph's trainable variables."""
        return self.graph.get_collection(tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES)

    def variable(self, name: str) -> tf.Variable:
        """The global variable `name` (with or without `:0`)."""
        key = name.split(":")[0]
        for v in self.variables:
            if v.op.name == key:
                return v
        raise not_found("variable", name, [v.op.name for v in self.variables])

    # ---- sessions -------------------------------------------------------------------------------
    def session(self, restore: bool = True) -> tf.compat.v1.Session:
        """A new session on the graph, ready to run.

        With `restore`, the checkpoint (if any) is restored first, and then exactly the variables that it
        did not cover are initialised from their initializers (never the other way round, so no
        restored value is overwritten). Those variables are listed in `self.initialized_fresh`.
        The caller closes the session (`with handle.session() as sess:`).

        Raises:
            UnsafeGraphError: The graph holds ops that do more than compute and are not in `allowed_ops`.
            BadSourceError: The checkpoint cannot be read (e.g. a truncated data file); the session is closed.
        """
        from tf1tune.checkpoints import saver_restore

        self.check_safe()
        sess = tf.compat.v1.Session(graph=self.graph)
        if restore and self.variables:
            try:
                if self.checkpoint and self._restore_saver() is not None:
                    saver_restore(self.saver, sess, self.checkpoint)
                with self.graph.as_default():
                    self.initialized_fresh = initialize_uninitialized(sess, self.variables)
            except BaseException:
                sess.close()
                raise
        return sess

    initialized_fresh: list[str] = field(default_factory=list)

    def check_safe(self) -> None:
        """Raise `UnsafeGraphError` unless every risk of the source is of an allowed op type (see `graph_safety`);
        called before anything runs the graph."""
        from tf1tune.graph_safety import require_safe

        require_safe(self.risks, self.source, self.allowed_ops)

    def _restore_saver(self) -> Any:
        """`saver`, built over `restore_variables` the first time a session restores a source without its own."""
        if self.saver is None and self.restore_variables:
            with self.graph.as_default():
                self.saver = tf.compat.v1.train.Saver(self.restore_variables)
        return self.saver


def initialize_uninitialized(sess: tf.compat.v1.Session, variables: list[tf.Variable]) -> list[str]:
    """Initialise the variables of `variables` that hold no value yet; returns their names.

    Runs in `sess.graph` (the caller enters it). Restored variables are left untouched.
    """
    if not variables:
        return []
    checks = [tf.compat.v1.is_variable_initialized(v) for v in variables]
    flags = sess.run(checks)
    fresh = [v for v, ok in zip(variables, flags) if not ok]
    if fresh:
        sess.run([v.initializer for v in fresh])
    return [v.op.name for v in fresh]


def candidate_inputs(graph: tf.Graph) -> list[tf.Tensor]:
    """Placeholders of `graph` in graph order, leaving out the saver's own (`save/filename`)."""
    return [op.outputs[0] for op in graph.get_operations()
            if op.type in PLACEHOLDER_OPS and not op.name.startswith(_NOT_OUTPUT_SCOPES)]


def candidate_outputs(graph: tf.Graph) -> list[tf.Tensor]:
    """What a user would pass to `--outputs`: tensors nothing consumes that carry the model's data.

    Left out: saving, initialisation, summary and training ops; variable reads; control-flow plumbing (ops
    inside a cond or loop, a cond's `pred_id`); shape plumbing (anything computed from `Shape`, `Size` or
    `Rank` only); the unconsumed side outputs of an op whose other output is used, and batch-norm statistics
    (`FusedBatchNormV3:1..5`). When the graph has placeholders other than boolean switches, an output must
    depend on one of them.
    """
    consumed = {t.name for op in graph.get_operations() for t in op.inputs}
    consumed |= {c.name for op in graph.get_operations() for c in op.control_inputs}
    data = _data_dependent_ops(graph)
    found = []
    for op in graph.get_operations():
        if op.type in _NOT_OUTPUT_OPS or op.type.startswith(_NOT_OUTPUT_OP_PREFIXES):
            continue
        if op.name.startswith(_NOT_OUTPUT_SCOPES) or "/gradients/" in op.name or op.name in consumed:
            continue
        if data is not None and op.name not in data:  # constants, variable reads, switches, shapes only
            continue
        if op.type in _CONTROL_FLOW_OPS or op._get_control_flow_context() is not None:  # inside a cond / while
            continue
        if any(t.op.type in _SWITCH_OPS for t in op.inputs):  # inside a cond of a GraphDef (no context recorded)
            continue
        if any(t.name in consumed for t in op.outputs):  # the rest are side outputs of a used op
            continue
        outputs = op.outputs[:1] if op.type in _STATISTICS_SIDE_OUTPUT_OPS else op.outputs
        found += [t for t in outputs if t.dtype != tf.resource]
    return found


def _data_dependent_ops(graph: tf.Graph) -> set[str] | None:
    """Names of the ops that depend on a non-boolean placeholder (following data edges, not through shape
    queries); None when the graph has no such placeholder (e.g. an input pipeline baked in)."""
    stack = [op for op in graph.get_operations() if op.type in PLACEHOLDER_OPS and op.outputs[0].dtype != tf.bool
             and not op.name.startswith(_NOT_OUTPUT_SCOPES)]
    if not stack:
        return None
    seen: set[str] = set()
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.type not in _SHAPE_OPS:  # a shape is plumbing, not data
            stack += [c for t in op.outputs for c in t.consumers()]
    return seen


def named_endpoints(tensors: list[tf.Tensor]) -> dict[str, tf.Tensor]:
    """Endpoints of an imported graph: each tensor keyed by its op name (by tensor name for multi-output ops)."""
    return {t.op.name if len(t.op.outputs) == 1 else t.name: t for t in tensors}


def tensor_summary(t: tf.Tensor) -> dict[str, Any]:
    """`{name, shape, dtype}` of a tensor, JSON-ready (unknown dims as None)."""
    shape = t.shape.as_list() if t.shape.rank is not None else None
    return {"name": t.name, "shape": shape, "dtype": t.dtype.name}
