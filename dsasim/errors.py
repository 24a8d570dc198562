"""Exception types raised by dsasim; only the CLI catches them and prints one line."""

from __future__ import annotations


class DsasimError(Exception):
    """Base class of every error dsasim raises on bad input or an infeasible request."""


class ProfileError(DsasimError):
    """A hardware profile is missing, unreadable or invalid."""


class SpecError(DsasimError):
    """A model spec (config.json) is missing, unreadable or invalid."""


class DeploymentError(DsasimError):
    """A deployment setting is invalid, or the requested deployment does not fit the hardware."""


class MeasurementError(DsasimError):
    """A measurement file is missing, unreadable or in an unknown format."""


class InputError(DsasimError):
    """An argument is invalid (a position, a step, a price)."""


class OutputError(DsasimError):
    """An output file or folder cannot be written."""
