"""Errors raised when a checkpoint or a model config cannot be used as asked.

Every error names what was wrong (the tensor, the field, the file) so that a user can fix the
input without reading this package's source.
"""


class CheckpointError(ValueError):
    """A checkpoint (safetensors folder or GGUF file) cannot be loaded."""


class ConfigFieldError(CheckpointError):
    """A config field (config.json or GGUF metadata) has a value this package cannot read; the
    error names the field."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file is truncated or its header cannot be parsed."""


class MissingTensorError(CheckpointError):
    """The model needs a tensor the checkpoint does not have."""


class UnexpectedTensorError(CheckpointError):
    """The checkpoint has a tensor the model has no place for."""


class ShapeMismatchError(CheckpointError):
    """A checkpoint tensor does not have the shape the config implies."""


class UnsupportedArchitectureError(CheckpointError):
    """The config names a model type or a feature this package does not implement."""


class UnsupportedQuantizationError(CheckpointError):
    """A GGUF tensor is stored in a quantisation type this package cannot dequantise."""
