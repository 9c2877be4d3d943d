"""Every exception the core raises, in one place, so callers can catch by kind."""


class NoetraError(Exception):
    """Base class of every error raised by noetra_ros."""


class ConfigError(NoetraError):
    """A configuration value (parameter, cell file, profile) is missing or invalid."""


class UnknownNameError(ConfigError):
    """A robot, cell, camera or other named item does not exist."""


class CommandError(NoetraError):
    """A command (joint targets, trajectory, twist) was rejected; the robot holds still."""


class ContractError(NoetraError):
    """A policy contract does not match the model file or the robot."""


class ModelLoadError(NoetraError):
    """A policy model file is missing, unreadable or corrupt."""


class InputError(NoetraError):
    """A sensor input (image, state, instruction) cannot be turned into a model input."""


class InferenceError(NoetraError):
    """Running a policy model failed or gave an unusable result; the caller publishes nothing."""


class NonFiniteOutputError(InferenceError):
    """A policy model produced NaN or infinite actions; the caller publishes nothing."""
