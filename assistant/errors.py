"""The few domain exceptions the application raises on purpose.

The CLI turns any of them into one clear line and a non-zero exit; the UI shows the message.
Anything else is a bug and keeps its traceback (in logs, never in the UI).
"""


class AssistantError(Exception):
    """Base class: the message is meant for the user, naming what and where."""


class ConfigError(AssistantError):
    """A setting is missing or malformed."""


class ModelError(AssistantError):
    """A model could not be loaded or failed to answer."""


class TeacherUnavailable(ModelError):
    """The teacher endpoint failed (down, timeout, rate limit, garbage); the student answers instead."""


class InputError(AssistantError):
    """User-supplied data (a file, a record, an argument) is invalid."""


class Cancelled(AssistantError):
    """The user cancelled a long job; what it was building was not registered."""
