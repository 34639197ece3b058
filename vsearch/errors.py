"""Typed exceptions of the library. Only the CLI turns them into exit codes and messages."""


class VSearchError(Exception):
    """Base class: every error the library raises on purpose."""


class ModelUnavailableError(VSearchError):
    """An encoder's weights cannot be found or loaded (the message says what to pass instead)."""


class UnknownModelError(VSearchError):
    """A model spec names no registered encoder."""


class ModelMismatchError(VSearchError):
    """The catalog was built with another model than the one asked for."""


class CatalogError(VSearchError):
    """The catalog is missing, of an unknown schema version, or inconsistent."""


class ImageDecodeError(VSearchError):
    """A file could not be decoded as an image; the message is the reason shown to the user."""


class QueryError(VSearchError):
    """A search query is empty or malformed."""


class ShardError(VSearchError):
    """A shard folder is unusable: shards of another run or model, or a malformed shard file."""


class IndexBuildError(VSearchError):
    """An index cannot be built as asked (too few vectors, parameters that do not fit the data)."""


class CatalogBusyError(CatalogError):
    """Another process is writing to the catalog (one writer at a time)."""


class StorageError(CatalogError):
    """Writing the database or an index file failed for a reason of the storage, not of the data
    (a disk I/O error); what was committed before is kept."""


class StorageFullError(StorageError):
    """The disk (or the database server) ran out of space while writing; what was committed is kept."""
