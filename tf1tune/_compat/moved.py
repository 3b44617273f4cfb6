"""Where TensorFlow keeps today the internal names tf-slim 1.1 uses, and the release that moved each one."""

from __future__ import annotations

from typing import NamedTuple


class Moved(NamedTuple):
    """A name tf-slim uses on `module` that TensorFlow removed in `removed_in`; it now lives at `home`.`name`."""

    home: str
    name: str
    removed_in: str


# TensorFlow-internal module -> {name tf-slim 1.1 uses there: where TensorFlow keeps it now}. Each `removed_in` is
# the first TensorFlow release whose module lacks the name (checked in the 2.12.1-2.16.1 wheels). The names marked
# "tests" appear only in tf-slim's own test files.
MOVED: dict[str, dict[str, Moved]] = {
    "tensorflow.python.framework.ops": {
        "Tensor": Moved("tensorflow.python.framework.tensor", "Tensor", "2.15"),
        "IndexedSlices": Moved("tensorflow.python.framework.indexed_slices", "IndexedSlices", "2.13"),
    },
    "tensorflow.python.ops.array_ops": {
        "stack": Moved("tensorflow.python.ops.array_ops_stack", "stack", "2.13"),
        "unstack": Moved("tensorflow.python.ops.array_ops_stack", "unstack", "2.13"),
    },
    "tensorflow.python.ops.control_flow_ops": {
        "cond": Moved("tensorflow.python.ops.cond", "cond", "2.14"),
        "case": Moved("tensorflow.python.ops.control_flow_case", "case", "2.14"),
        "Assert": Moved("tensorflow.python.ops.control_flow_assert", "Assert", "2.14"),
        "while_loop": Moved("tensorflow.python.ops.while_loop", "while_loop", "2.14"),
    },
    "tensorflow.python.ops.variable_scope": {
        # TF 2.12-2.13 had `variable = VariableV1` here; tf-slim's local_variable/global_variable call it.
        "variable": Moved("tensorflow.python.ops.variable_v1", "VariableV1", "2.14"),
        "enable_resource_variables": Moved("tensorflow.python.ops.resource_variables_toggle",  # tests
                                           "enable_resource_variables", "2.16"),
        "disable_resource_variables": Moved("tensorflow.python.ops.resource_variables_toggle",  # tests
                                            "disable_resource_variables", "2.16"),
        "resource_variables_enabled": Moved("tensorflow.python.ops.resource_variables_toggle",  # tests
                                            "resource_variables_enabled", "2.16"),
    },
    "tensorflow.python.ops.variables": {
        "VariableV1": Moved("tensorflow.python.ops.variable_v1", "VariableV1", "2.13"),  # tests
    },
}
