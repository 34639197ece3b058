import numpy as np

from benchmarks.common import labelled_clusters
from tests.faces.conftest import unit_rows
from vsearch.faces.cluster import cluster_faces


def _people(n_people: int, per: int, dim: int = 32, spread: float = 0.05, seed: int = 0):
    """``per`` faces of each of ``n_people``; ``spread``: the noise's standard deviation per dimension."""
    return labelled_clusters(n_people * per, dim, n_people, seed, noise=spread * np.sqrt(dim), balanced=True)


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


def test_faces_of_one_photo_are_split_even_when_they_are_near_duplicates():
    emb, who = _people(1, 6)
    photos = [0, 0, 0, 1, 2, 3]  # three faces of person 0 in one photo (a collage)
    labels = cluster_faces(emb, photos, threshold=0.8)
    assert len({labels[i] for i in range(3)} - {-1}) == len([i for i in range(3) if labels[i] >= 0])
    assert (labels[3:] == labels[3]).all() and labels[3] >= 0


def test_approximate_graph_above_the_exact_limit(monkeypatch):
    import vsearch.faces.cluster as cluster

    emb, who = _people(300, 5, dim=64, spread=0.03, seed=3)
    exact = cluster_faces(emb, list(range(len(who))), threshold=0.8)
    monkeypatch.setattr(cluster, "EXACT_UP_TO", 100)  # force the IVF path on 1,500 faces
    approx = cluster_faces(emb, list(range(len(who))), threshold=0.8)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(who, exact) == 1.0
    assert adjusted_rand_score(who, approx) > 0.99


def test_a_chain_of_look_alikes_does_not_merge_two_people():
    """Two tight groups of 8 faces joined by one pair of similar faces: connected components
    would make them one person; Chinese whispers keeps two."""
    rng = np.random.default_rng(0)
    a, b = unit_rows(2, 64, 1)
    bridge = (a + b) / np.linalg.norm(a + b)
    faces = [a + rng.normal(scale=0.02, size=64) for _ in range(8)] + [b + rng.normal(scale=0.02, size=64) for _ in range(8)]
    faces += [bridge]
    emb = np.stack(faces)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    threshold = float(emb[16] @ emb[0]) - 0.01  # the bridge reaches both groups, the groups not each other
    assert float(emb[0] @ emb[8]) < threshold and (emb[8:16] @ emb[16] >= threshold).any()
    labels = cluster_faces(emb, list(range(17)), threshold=threshold)
    assert len(set(labels[:8])) == 1 and len(set(labels[8:16])) == 1 and labels[0] != labels[8]


def test_two_photos_of_the_same_two_faces_make_two_clusters():
    """Photo 0 and photo 1 both show faces x and y, identical to each other: every cross pair
    links, so the graph is one group; it must come out as two clusters of one face per photo."""
    emb, _ = _people(1, 4)
    emb[:] = emb[0]
    labels = cluster_faces(emb, [0, 0, 1, 1], threshold=0.8)
    assert sorted(np.bincount(labels).tolist()) == [2, 2]
    assert labels[0] != labels[1] and labels[2] != labels[3]
