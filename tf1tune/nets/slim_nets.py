"""Registers every net of `tf_slim.nets` with the metadata of its published slim checkpoints.

The metadata follows the TF-slim model zoo: ResNet V1 and VGG checkpoints have 1000 classes and VGG
preprocessing; Inception and ResNet V2 checkpoints have 1001 classes (class 0 is background) and
Inception preprocessing (ResNet V2 at 299x299). AlexNet and OverFeat have no published checkpoints;
their defaults are the definitions' own.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_slim as slim
from tf_slim.nets import (
    alexnet,
    inception_v1,
    inception_v2,
    inception_v3,
    overfeat,
    resnet_utils,
    resnet_v1,
    resnet_v2,
    vgg,
)

from tf1tune.nets.registry import register_net


def _resnet(definition: Any) -> Any:
    """Wrap a slim ResNet: add a `global_pool` endpoint (the pooled features, [B, 1, 1, C])."""

    def build(inputs: tf.Tensor, num_classes: int | None, is_training: bool) -> tuple[Any, dict[str, Any]]:
        net, end_points = definition(inputs, num_classes=num_classes, is_training=is_training)
        pools = [op for op in inputs.graph.get_operations() if op.name.endswith(f"{definition.__name__}/pool5")]
        end_points["global_pool"] = pools[-1].outputs[0]
        return net, end_points

    build.__name__ = definition.__name__
    return build


def _inception(definition: Any, base: Any, scope: str) -> Any:
    """Wrap a slim Inception: `num_classes=None` builds `<net>_base` (features only)."""

    def build(inputs: tf.Tensor, num_classes: int | None, is_training: bool) -> tuple[Any, dict[str, Any]]:
        if num_classes is None:
            with slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training):
                return base(inputs, scope=scope)
        return definition(inputs, num_classes=num_classes, is_training=is_training)

    build.__name__ = definition.__name__
    return build


def _classifier_only(definition: Any) -> Any:
    """Wrap a slim net whose definition always builds its classifier (VGG, AlexNet, OverFeat)."""

    def build(inputs: tf.Tensor, num_classes: int | None, is_training: bool) -> tuple[Any, dict[str, Any]]:
        return definition(inputs, num_classes=num_classes, is_training=is_training)

    build.__name__ = definition.__name__
    return build


for _depth in (50, 101, 152, 200):
    _v1 = getattr(resnet_v1, f"resnet_v1_{_depth}")
    _v2 = getattr(resnet_v2, f"resnet_v2_{_depth}")
    register_net(
        name=_v1.__name__, scope=_v1.__name__, input_size=(224, 224), num_classes=1000,
        classifier_scopes=(f"{_v1.__name__}/logits",), default_endpoint="global_pool",
        arg_scope=resnet_utils.resnet_arg_scope, preprocessing="vgg",
        description=f"ResNet V1 {_depth} (tf_slim.nets.resnet_v1)",
    )(_resnet(_v1))
    register_net(
        name=_v2.__name__, scope=_v2.__name__, input_size=(299, 299), num_classes=1001,
        classifier_scopes=(f"{_v2.__name__}/logits",), default_endpoint="global_pool",
        arg_scope=resnet_utils.resnet_arg_scope, preprocessing="inception", background_class=True,
        description=f"ResNet V2 {_depth} (tf_slim.nets.resnet_v2)",
    )(_resnet(_v2))

register_net(
    name="inception_v1", scope="InceptionV1", input_size=(224, 224), num_classes=1001,
    classifier_scopes=("InceptionV1/Logits",), default_endpoint="Mixed_5c",
    arg_scope=inception_v1.inception_v1_arg_scope, background_class=True,
    description="Inception V1 / GoogLeNet (tf_slim.nets.inception_v1)",
)(_inception(inception_v1.inception_v1, inception_v1.inception_v1_base, "InceptionV1"))
register_net(
    name="inception_v2", scope="InceptionV2", input_size=(224, 224), num_classes=1001,
    classifier_scopes=("InceptionV2/Logits",), default_endpoint="Mixed_5c",
    arg_scope=inception_v2.inception_v2_arg_scope, background_class=True,
    description="Inception V2 / BN-Inception (tf_slim.nets.inception_v2)",
)(_inception(inception_v2.inception_v2, inception_v2.inception_v2_base, "InceptionV2"))
register_net(
    name="inception_v3", scope="InceptionV3", input_size=(299, 299), num_classes=1001,
    classifier_scopes=("InceptionV3/Logits", "InceptionV3/AuxLogits"), default_endpoint="Mixed_7c",
    arg_scope=inception_v3.inception_v3_arg_scope, background_class=True,
    description="Inception V3 (tf_slim.nets.inception_v3)",
)(_inception(inception_v3.inception_v3, inception_v3.inception_v3_base, "InceptionV3"))

for _name in ("vgg_a", "vgg_16", "vgg_19"):
    register_net(
        name=_name, scope=_name, input_size=(224, 224), num_classes=1000,
        classifier_scopes=(f"{_name}/fc8",), default_endpoint=f"{_name}/fc7",
        arg_scope=vgg.vgg_arg_scope, preprocessing="vgg", features_only=False,
        description=f"VGG {_name[4:].upper()} (tf_slim.nets.vgg)",
    )(_classifier_only(getattr(vgg, _name)))

register_net(
    name="alexnet_v2", scope="alexnet_v2", input_size=(224, 224), num_classes=1000,
    classifier_scopes=("alexnet_v2/fc8",), default_endpoint="alexnet_v2/fc7",
    arg_scope=alexnet.alexnet_v2_arg_scope, preprocessing="vgg", features_only=False,
    description="AlexNet V2 (tf_slim.nets.alexnet)",
)(_classifier_only(alexnet.alexnet_v2))
register_net(
    name="overfeat", scope="overfeat", input_size=(231, 231), num_classes=1000,
    classifier_scopes=("overfeat/fc8",), default_endpoint="overfeat/fc7",
    arg_scope=overfeat.overfeat_arg_scope, preprocessing="vgg", features_only=False,
    description="OverFeat (tf_slim.nets.overfeat)",
)(_classifier_only(overfeat.overfeat))
