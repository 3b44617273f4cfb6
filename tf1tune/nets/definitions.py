"""Imports every module that defines nets, so that each registers itself."""

from tf1tune.nets import slim_nets  # noqa: F401
from tf1tune.nets import digits_cnn  # noqa: F401
from tf1tune.nets import mobilenet_v1, mobilenet_v2  # noqa: F401
