import numpy as np

from tests.faces.conftest import unit_rows
from vsearch.faces.cluster import cluster_faces


def _people(n_people: int, per: int, dim: int = 32, spread: float = 0.05, seed: int = 0):
    centres = unit_rows(n_people, dim, seed)
    rng = np.random.default_rng(seed + 1)
    emb = np.repeat(centres, per, axis=0) + rng.normal(scale=spread, size=(n_people * per, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb.astype(np.float32), np.repeat(np.arange(n_people), per)


def test_clusters_recover_people_by_size():
    emb, who = _people(3, 4)
    emb, who = emb[:-2], who[:-2]  # person 2 has 2 faces
    labels = cluster_faces(emb, list(range(len(who))), threshold=0.8)
    # same person <-> same cluster, and clusters numbered by decreasing size
    assert all((labels[a] == labels[b]) == (who[a] == who[b]) for a in range(len(who)) for b in range(len(who)))
    assert sorted(set(labels[who == 2])) == [2]


def test_two_faces_of_one_photo_never_share_a_cluster():
    emb, who = _people(2, 3)
    emb = np.vstack([emb, emb[0]])  # an exact duplicate of face 0 ...
    photos = [0, 1, 2, 3, 4, 5, 0]  # ... in the same photo as face 0
    labels = cluster_faces(emb, photos, threshold=0.8)
    assert labels[0] != labels[6]
    for p in set(photos):
        members = [labels[i] for i in range(len(photos)) if photos[i] == p and labels[i] >= 0]
        assert len(members) == len(set(members))


def test_singletons_and_empty():
    emb, _ = _people(3, 1)
    assert list(cluster_faces(emb, [0, 1, 2], threshold=0.8)) == [-1, -1, -1]
    assert list(cluster_faces(emb, [0, 1, 2], threshold=0.8, min_size=1)) == [0, 1, 2]
    assert len(cluster_faces(np.zeros((0, 8)), [], threshold=0.8)) == 0
