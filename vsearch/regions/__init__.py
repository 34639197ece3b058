"""Regions: crops from proposals, detectors and segmenters, indexed and searched like photos.

| module | job |
| --- | --- |
| ``base`` | the contract: ``RegionSource(image) -> Regions`` (boxes + optional masks, labels, scores) |
| ``proposals`` | class-agnostic proposals without weights (felzenszwalb segments + a grid) |
| ``detectors`` | torchvision detectors/segmenters from a local weights file |
| ``crops`` | regions -> crops (masks blank the background) -> embeddings; drawing boxes |
| ``extractor`` | ``vsearch index --regions``: regions as vectors in the catalog's ``region`` space |
| ``store`` | the feature's SQL (regions and runs), run inside catalog transactions |
| ``search`` | photos ranked by their best region, with its box |
| ``detect`` | open-vocabulary detection: proposals scored against label texts |
| ``metrics`` | IoU, NMS, Pascal VOC AP and mAP |

The region tables (``schema.py``) are created and versioned by the catalog when it opens, whether
or not this package was imported.
"""
from vsearch.regions.base import RegionError, Regions, RegionSource
from vsearch.regions.schema import REGION_SPACE, Region, RegionRun

__all__ = ["Regions", "RegionSource", "RegionError", "REGION_SPACE", "Region", "RegionRun"]
