"""Scanning folders and running the embedding pipeline into a catalog."""
from indexer.pipeline import IndexSummary, ProgressHook, index_paths
from indexer.scan import FileEntry, scan_paths

__all__ = ["IndexSummary", "ProgressHook", "index_paths", "FileEntry", "scan_paths"]
