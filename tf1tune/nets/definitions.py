"""Imports every module that defines nets, so that each registers itself."""

from tf1tune.nets import (  # noqa: F401
    digits_cnn,  # noqa: F401
    mobilenet_v1,
    mobilenet_v2,
    slim_nets,  # noqa: F401
)
