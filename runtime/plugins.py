"""Runner plugins: scoring backends other than onnxruntime, found through Python entry points.

A package registers a backend in the ``clsrun.runners`` entry point group; clsrun's own pyproject
registers ``torch = "clsrun.trainer.torch_runner:TorchRunner"`` and
``openvino = "clsrun.runtime.ov_runner:OvRunner"``. The runtime looks plugins up by backend
name (:func:`runner_plugin`) and never imports them otherwise, so a scoring-only install needs neither
torch nor the trainer, and a missing one is a :class:`DependencyError` that names the extra to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast

from clsrun.runtime.errors import DependencyError, install_hint

if TYPE_CHECKING:
    from clsrun.runtime.bundle import Bundle
    from clsrun.runtime.infer import Runner
    from clsrun.runtime.variant import Choice

RUNNER_GROUP = "clsrun.runners"  # entry point group of runner plugins, one entry per backend name
_PLUGIN_EXTRAS = {"torch": "train"}  # the extra that installs each known plugin's dependencies


class RunnerPlugin(Protocol):
    """What a ``clsrun.runners`` entry point names (usually a runner class): it opens runners of one backend."""

    def __call__(self, bundle: Bundle, choice: Choice, threads: int, streams: int = 1) -> Runner:
        """A runner for ``choice`` (backend, precision, device) with ``threads`` intra-op threads per
        stream, called from ``streams`` scoring threads at once."""
        ...

    def precisions(self, device: str) -> tuple[str, ...]:
        """Scoring precisions this backend runs on ``device`` (``cpu``/``cuda``); the first is ``auto``'s pick."""
        ...

    def cuda_available(self) -> bool:
        """True when this backend can run on a CUDA device here."""
        ...


def runner_plugin(backend: str) -> RunnerPlugin:
    """The installed runner plugin for ``backend``; :class:`DependencyError` naming the extra when missing."""
    import importlib.metadata  # here, not at the top: it imports the email package, and most runs never get here

    extra = _PLUGIN_EXTRAS.get(backend, backend)
    found = [ep for ep in importlib.metadata.entry_points(group=RUNNER_GROUP) if ep.name == backend]
    if not found:
        raise DependencyError(f"--backend {backend}: no runner for it is installed; {install_hint(extra)}")
    try:
        plugin = found[0].load()
    except ImportError as e:  # the plugin is registered, the libraries it runs on are not installed
        raise DependencyError(
            f"--backend {backend} needs the '{e.name or found[0].value}' package: {install_hint(extra)}"
        ) from e
    return cast(RunnerPlugin, plugin)
