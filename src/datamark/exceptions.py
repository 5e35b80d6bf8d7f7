"""The datamark error tree.

Every error is a :class:`DatamarkError` and also the builtin it specialises, so callers can catch either
``datamark.exceptions.ParameterError`` or plain ``ValueError``. Messages name the parameter or file, what was
expected, what was received, and the fix.
"""

from __future__ import annotations


class DatamarkError(Exception):
    """Base class of every error raised on purpose by datamark."""


class ParameterError(DatamarkError, ValueError):
    """A hyper-parameter or option is outside its valid range."""


class DataError(DatamarkError, ValueError):
    """A dataset is malformed: corrupt or missing files, unknown labels, mixed shapes."""


class DataFormatError(DataError):
    """A path does not hold a dataset in a format datamark can read."""


class KeyFormatError(DatamarkError, ValueError):
    """A key file is corrupt, tampered with, or of a format this version cannot read."""


class KeyMismatchError(DatamarkError, ValueError):
    """A key does not belong to the dataset, model or commitment it is used with."""


class SuspectError(DatamarkError, RuntimeError):
    """A suspect model cannot answer the queries a test needs, or answered garbage."""


class EndpointError(SuspectError):
    """A remote suspect cannot be reached, times out, refuses requests, or does not speak the expected protocol."""


class QueryBudgetError(SuspectError):
    """A query would exceed the suspect's hard query budget; raised before the query is sent."""


class EvidenceError(DatamarkError, ValueError):
    """An evidence file is corrupt, tampered with, or does not belong to the run that reads it."""


class ResultsFormatError(DatamarkError, ValueError):
    """A results file (for the HTML report) is not a verification result or an experiment's results.json."""


class OutputExistsError(DatamarkError, FileExistsError):
    """An output path exists and overwriting was not asked for."""


class DatamarkWarning(UserWarning):
    """Base class of datamark's warnings."""


class DegenerateTestWarning(DatamarkWarning):
    """A hypothesis test got degenerate input (too few pairs, zero variance) and used its documented fallback."""


class EvidenceWarning(DatamarkWarning):
    """An evidence file needed attention: a torn last line was cut off, or a failed run's evidence was kept."""


class WeakTriggerWarning(DatamarkWarning):
    """A trigger is already common in the clean data (a frequent word): the mark it makes is weak."""


class AudioFormatWarning(DatamarkWarning):
    """An audio file was converted on reading (stereo mixed down to mono, resampled, padded or cropped)."""


class InsecureTransportWarning(DatamarkWarning):
    """A remote suspect is queried without TLS certificate verification (``insecure=True``), or sends its
    credentials (headers, token) over plain HTTP to a host other than this machine."""


class TriggerSizeWarning(DatamarkWarning):
    """A graph trigger has more nodes than some graphs of the data; those get the missing nodes added."""


class GraphFormatWarning(DatamarkWarning):
    """A graph dataset was repaired on reading: edges listed in one direction only were symmetrised (the dataset
    is read as undirected), or duplicated edges coalesced where that is not the format's own convention."""
