"""Install tf1tune: `pip install -e .` (tests: `pip install -e .[test]`)."""

from setuptools import find_packages, setup

setup(
    name="tf1tune",
    version="0.1.0",
    description="Load, fine-tune and export TensorFlow 1 models (.meta, tf-slim, frozen .pb, SavedModel) on TF 2.x",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tf1tune", "tf1tune.*"]),
    package_data={"tf1tune": ["py.typed"]},
    python_requires=">=3.10",
    install_requires=[
        # tf-keras requires the `tensorflow` distribution itself: do not add tensorflow-cpu beside it.
        "tensorflow>=2.16,<2.22",
        "tf-keras>=2.16,<2.22",
        "tf-slim>=1.1",
        "numpy",
        "protobuf",
        "scikit-learn",
        "tqdm",
        "PyYAML",
        "tensorboard",  # `tensorboard --logdir runs`: TensorFlow 2.21 no longer installs it
        "matplotlib",  # curves.png, confusion.png, tf1tune eval --png
    ],
    extras_require={
        # The tests cover every export target, so they install the onnx and tflite extras too.
        "test": ["pytest", "pytest-xdist", "mypy", "ruff", "tf2onnx>=1.17", "onnxruntime>=1.20", "ai-edge-litert"],
        "onnx": ["tf2onnx>=1.17", "onnxruntime>=1.20"],
        "tflite": ["ai-edge-litert"],
    },
    entry_points={"console_scripts": ["tf1tune=tf1tune.cli:main"]},
)
