"""The exception types users see.

Anything that is the user's input being wrong (a path, an option, a model id, a server that does not
answer) raises :class:`LeafHubError` with a message that names the input and says how to fix it. The CLI
prints it as one line and exits with status 2 instead of showing a traceback.

A :class:`ConfigError` names one option of a config (``DistillConfig``, ``TrainConfig``, ...). Its
message speaks of the option by its field name (``batch_size``), as a Python user writes it; the command
line shows the same message with the flag (``--batch-size``) instead.
"""

from __future__ import annotations


class LeafHubError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class ConfigError(LeafHubError, ValueError):
    """An option out of range or in conflict with the state on disk.

    ``message`` names the option as ``{option}``; ``str(error)`` puts the field name there and
    :meth:`for_flag` the command-line flag.
    """

    def __init__(self, option: str, message: str):
        self.option = option
        self.template = message
        super().__init__(message.format(option=option))

    def for_flag(self, flag: str) -> str:
        return self.template.format(option=flag)
