"""Scanning folders and running the embedding pipeline into a catalog."""
from indexer.pipeline import ExtractInput, IndexSummary, ProgressHook, RegionExtractor, index_paths
from indexer.scan import FileEntry, scan_paths

__all__ = ["ExtractInput", "RegionExtractor", "IndexSummary", "ProgressHook", "index_paths", "FileEntry", "scan_paths"]
