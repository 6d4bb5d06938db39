"""One family of exceptions, so a notebook can say exactly what was wrong and what is allowed."""


class KdlabError(Exception):
    """Base class of every error kdlab raises on purpose."""


class ParameterError(KdlabError, ValueError):
    """A notebook or function parameter is out of its allowed range.

    The message always names the parameter, the value given and what is allowed.
    """

    def __init__(self, name, value, allowed):
        self.name, self.value, self.allowed = name, value, allowed
        super().__init__(f"{name}={value!r} is not allowed: {name} must be {allowed}.")


class DatasetUnavailableError(KdlabError, RuntimeError):
    """A dataset cannot be loaded here (no network, missing files); names the offline alternatives."""


class CorruptCacheError(KdlabError, RuntimeError):
    """A cache file failed its checksum or could not be read."""


class TrainingDivergedError(KdlabError, FloatingPointError):
    """A loss became NaN or infinite; the message suggests a fix."""


class RunningStatisticsWarning(UserWarning):
    """BatchNorm's running statistics were asked for (bn="running") but describe no data: never updated,
    or not kept at all. `warnings.simplefilter("error", RunningStatisticsWarning)` turns it into a refusal."""
