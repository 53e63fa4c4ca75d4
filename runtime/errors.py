"""Typed errors. Library code raises these; only the CLI turns them into exit codes and one-line messages.

Exit codes (DESIGN.md): 0 done, 2 bad usage or unreadable input, 3 invalid model bundle, 1 anything else.
"""

from __future__ import annotations


class ClsrunError(Exception):
    """Base of every error clsrun reports to a user. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1


class UsageError(ClsrunError):
    """The user asked for something that cannot be done as asked (bad flag value, conflicting options)."""

    exit_code = 2


class InputError(ClsrunError):
    """An input file cannot be read at all: missing, wrong format, missing column, truncated."""

    exit_code = 2


class ResumeError(UsageError):
    """``--resume`` was asked for, but the partial output belongs to another input or model."""


class BundleError(ClsrunError):
    """A model bundle is missing, damaged, incomplete or of an unknown schema."""

    exit_code = 3


class ModelNotFoundError(ClsrunError):
    """A base model (``minilm`` or a checkpoint folder) is not available locally, or its folder cannot be
    used (incomplete, pickle weights, not BERT, asks for code to run). Nothing is downloaded."""

    exit_code = 2


class ExportError(ClsrunError):
    """An export step failed, or refused to overwrite existing files without ``--force``."""


class AccuracyGateError(ExportError):
    """One or more exported variants were refused (they lost more accuracy than allowed, or could not be
    built); the message lists every one. ``report`` is the export's report (``clsrun.export.ExportReport``),
    written before this was raised, so a caller can show every variant; None when raised without one."""

    report: object = None


class DependencyError(ClsrunError):
    """An optional dependency (an extra such as ``clsrun[train]`` or ``clsrun[ray]``) is not installed."""

    exit_code = 2


class InternalError(ClsrunError):
    """An invariant of clsrun itself failed. This is a bug: the message says so."""

    def __init__(self, message: str) -> None:
        super().__init__(f"internal error (this is a bug in clsrun, please report it): {message}")


def require(module: str, extra: str) -> None:
    """Raise :class:`DependencyError` naming ``extra`` when ``module`` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise DependencyError(f"this needs the '{module}' package: pip install 'clsrun[{extra}]'")
