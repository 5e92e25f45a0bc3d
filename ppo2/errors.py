"""Errors training raises when a NaN/inf appears, shared by the trainer and the fused update."""

__all__ = ["NonFiniteError", "NonFiniteLossError", "NonFiniteEnvError"]


class NonFiniteError(RuntimeError):
    """Training met a NaN/inf and stopped before it could reach the weights."""


class NonFiniteLossError(NonFiniteError):
    """The loss became NaN/inf; training stopped before applying it."""


class NonFiniteEnvError(NonFiniteError):
    """The environment returned a NaN/inf observation or reward; training stopped before using it."""
