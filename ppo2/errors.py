"""Errors training raises when a NaN/inf appears, shared by the trainer and the fused update."""

__all__ = ["NonFiniteError", "NonFiniteLossError", "NonFiniteEnvError"]


class NonFiniteError(RuntimeError):
    """Training met a NaN/inf and stopped before it could reach the weights."""


class NonFiniteLossError(NonFiniteError, FloatingPointError):
    """The loss (or its gradient) became NaN/inf; the step was not applied."""


class NonFiniteEnvError(NonFiniteError):
    """The environment returned a NaN/inf observation or reward; training stopped before using it."""
