"""The registry of net definitions, with the metadata that drives partial restore.

Each net registers itself where it is defined, with `@register_net(...)` on a builder function
(as timm's `@register_model`). A builder has the signature

    builder(inputs: tf.Tensor, num_classes: int | None, is_training: bool) -> (output, end_points)

and is called inside the net's arg scope; `num_classes=None` builds the features only (no classifier
variables). The metadata (`NetConfig`) tells the rest of tf1tune which scopes a new head replaces, which
endpoint to graft on by default, what input size and preprocessing the published checkpoints expect,
and whether those checkpoints carry a background class (1001 outputs instead of 1000).

This module is a leaf: it imports no net definition. `tf1tune.nets` (the package) imports the definitions
(`tf1tune.nets.definitions`), so every built-in net is registered once `tf1tune.nets.<anything>` is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tf1tune.errors import NetRegistryError
from tf1tune.names import not_found

Builder = Callable[..., tuple[Any, dict[str, Any]]]


@dataclass(frozen=True)
class NetConfig:
    """What tf1tune needs to know about a net definition.

    Attributes:
        name: Registry name (`resnet_v1_50`), also the `slim:NAME` source name.
        builder: The function that builds the net (see module docstring).
        scope: Top-level variable scope of the net (`resnet_v1_50`, `InceptionV3`).
        input_size: Default (height, width) of the input.
        channels: Number of input channels.
        num_classes: Outputs of the published checkpoint's classifier (1001 with a background class).
        classifier_scopes: Scopes a new head replaces (left out of a restore when the class count changes).
        default_endpoint: Key in `end_points` to graft a new head on by default.
        arg_scope: Factory of the slim arg scope the net is built under (None: no arg scope).
        preprocessing: Name of the input preprocessing in `tf1tune.nets.preprocessing`.
        background_class: True when class 0 of the published checkpoints is "background".
        features_only: True when the builder supports `num_classes=None`.
        description: One line for listings.
    """

    name: str
    builder: Builder
    scope: str
    input_size: tuple[int, int]
    num_classes: int
    classifier_scopes: tuple[str, ...]
    default_endpoint: str
    channels: int = 3
    arg_scope: Callable[[], Any] | None = None
    preprocessing: str = "inception"
    background_class: bool = False
    features_only: bool = True
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, NetConfig] = {}


def register_net(**metadata: Any) -> Callable[[Builder], Builder]:
    """Decorator: register `builder` under `metadata['name']` (default: the function's name).

    Example:
        @register_net(scope="MobilenetV1", input_size=(224, 224), num_classes=1001,
                      classifier_scopes=("MobilenetV1/Logits",), default_endpoint="AvgPool_1a",
                      background_class=True)
        def mobilenet_v1(inputs, num_classes, is_training): ...
    """

    def decorate(builder: Builder) -> Builder:
        name = metadata.pop("name", builder.__name__)
        if name in _REGISTRY:
            raise NetRegistryError(f"net '{name}' is registered twice; give the second one another name")
        _REGISTRY[name] = NetConfig(name=name, builder=builder, **metadata)
        return builder

    return decorate


def get_net(name: str) -> NetConfig:
    """The `NetConfig` registered as `name`; an unknown name lists the closest registered ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise not_found("net", name, _REGISTRY, hint="`tf1tune nets` lists them all") from None


def list_nets() -> list[str]:
    """Names of every registered net, sorted."""
    return sorted(_REGISTRY)
