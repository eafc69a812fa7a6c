"""The errors srframe raises on purpose.

Every message says what was wrong and what would be right. The CLI prints the message
alone and exits with code 2; ``--debug`` adds the traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class SrframeError(Exception):
    """Base of every error srframe raises on purpose."""


class ArgumentError(SrframeError, ValueError):
    """An argument of a function or command is out of its range (a tile of 0 pixels, a scale the model
    does not have). Also a ``ValueError``, as Python callers expect of a bad argument."""


class RegistryError(SrframeError):
    """A component name is unknown, taken twice, or its factory cannot be used."""


class PluginError(RegistryError):
    """A plugin could not be imported or failed while registering its components."""


class DataError(SrframeError):
    """An image or dataset cannot be read or does not fit what the recipe asks."""


class WeightsError(SrframeError):
    """Pretrained weights cannot be found, downloaded or verified."""


class CheckpointError(SrframeError):
    """A checkpoint or run directory cannot be read or written, or does not fit the recipe resumed."""


class TrainingError(SrframeError):
    """Training cannot go on: a loss became NaN or infinite, or a component failed during a step."""


class InferenceError(SrframeError):
    """A model's output cannot be used: it holds inf or NaN (activations that overflowed a reduced
    precision, or broken weights), so nothing is written."""


class ExportError(SrframeError):
    """A model cannot be exported (an op the exporter cannot trace or translate), the exported file
    differs from the model, or a package the export needs is not installed."""


class TrainingInterrupted(SrframeError):
    """Training was stopped by SIGINT or SIGTERM after writing a checkpoint; ``srframe run --resume`` continues it.

    The command line exits with 130, as a shell does for Ctrl-C.
    """


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration: where it came from, where it sits, what is wrong."""

    source: str  # the recipe file, "--set" or the Python call the value came from
    path: str  # key path such as "stages[0].losses[1].layer"
    message: str

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}"


class RecipeError(SrframeError):
    """A recipe (or a component's parameters) cannot be read or does not validate.

    ``problems`` lists every problem found, so one run of ``srframe recipe check``
    shows them all, one per line (a single problem stays on the message's line).
    """

    def __init__(self, message: str, problems: list[Problem] | None = None):
        self.problems = list(problems or [])
        if len(self.problems) == 1:  # one problem, one line
            message = f"{message} {self.problems[0]}"
        elif self.problems:
            listed = "\n".join(f"  - {p}" for p in self.problems)
            message = f"{message}\n{listed}"
        super().__init__(message)
