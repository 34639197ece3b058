"""Calibration statistics on synthetic score sets, checked against scikit-learn and scipy."""
import numpy as np
import pytest

from benchmarks.common import labelled_clusters
from vsearch.faces.calibrate import LabelledFaces, calibrate_faces, calibrate_scores, pair_scores
from vsearch.faces.impostors import ImpostorModel
from vsearch.metrics.verification import clopper_pearson_upper

IMP = [0.75, 0.5, 0.3, 0.2, 0.1]


def _people(n_people: int, per: int, dim: int = 32, spread: float = 0.25, seed: int = 0) -> LabelledFaces:
    emb, labels = labelled_clusters(n_people * per, dim, n_people, seed, noise=spread, balanced=True)
    names = [f"p{i:03d}" for i in labels]
    return LabelledFaces(emb, names, [f"{n}/{i}.jpg" for i, n in enumerate(names)])


def test_report_figures_agree_with_sklearn():
    from sklearn.metrics import roc_auc_score, roc_curve

    faces = _people(60, 4, spread=2.0, seed=1)
    rep = calibrate_faces(faces, target_far=1e-2, default_threshold=0.3, replicates=200)
    y = np.r_[np.ones(rep.n_genuine), np.zeros(rep.n_impostor)]
    s = np.r_[rep.genuine, rep.impostor]
    assert (rep.identities, rep.n_genuine, rep.n_impostor) == (60, 60 * 6, 240 * 239 // 2 - 360)
    assert rep.auc == pytest.approx(roc_auc_score(y, s))
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    # the stored threshold: best TAR with FAR <= target, as sklearn's curve has it
    assert rep.method == "empirical"
    assert rep.tar_at_threshold == pytest.approx(tpr[fpr <= 1e-2].max())
    assert rep.false_accepts / rep.n_impostor == pytest.approx(fpr[fpr <= 1e-2].max())
    assert rep.far_upper == pytest.approx(clopper_pearson_upper(rep.false_accepts, rep.n_impostor))
    assert rep.far_upper > rep.false_accepts / rep.n_impostor
    far = rep.false_accepts / rep.n_impostor
    assert rep.bootstrap.far_low <= far <= rep.bootstrap.far_high
    assert rep.bootstrap.tar_low <= rep.tar_at_threshold <= rep.bootstrap.tar_high
    assert rep.bootstrap.identities == 60 and rep.summary()["bootstrap"]["resampled"] == "identities"
    # enough people and enough impostor pairs for 1e-2, and not looser than the default: no warning
    assert rep.warnings == [] and not rep.looser_than_default


def test_few_people_and_few_pairs_are_warned_about():
    rep = calibrate_faces(_people(8, 3, spread=2.0), target_far=1e-3, default_threshold=0.0, replicates=100)
    assert rep.n_impostor * 1e-3 < 1 and rep.method == "normal-tail extrapolation"
    text = " ".join(rep.warnings)
    assert "only 8 people" in text and "not measurable" in text and "keeps" in text
    # every unresolvable report target comes with its extrapolated threshold and the TAR it keeps
    ext = {f"{e.target_far:g}": e for e in rep.extrapolated}
    assert set(ext) == {"0.001", "0.0001"}
    assert ext["0.0001"].threshold >= ext["0.001"].threshold
    assert ext["0.0001"].tar == pytest.approx(np.mean(rep.genuine >= ext["0.0001"].threshold))


def test_barely_measured_target_is_warned_about():
    rep = calibrate_faces(_people(60, 2, spread=2.0), target_far=1e-3, default_threshold=0.0, replicates=50)
    assert 1 <= rep.n_impostor * 1e-3 < 10
    assert any("barely measured" in w for w in rep.warnings)


def test_threshold_looser_than_default_is_flagged_first():
    rep = calibrate_faces(_people(60, 3, spread=2.0), target_far=0.05, default_threshold=0.99, replicates=50)
    assert rep.looser_than_default and rep.warnings[0].startswith(f"the calibrated threshold {rep.threshold:.3f} is LOOSER")
    assert rep.summary()["looser_than_default"] is True


def test_impostor_model_far_is_an_upper_bound():
    m = ImpostorModel.from_scores(IMP, identities=3)
    assert m.false_accepts(0.5) == 2 and m.far(0.5) == pytest.approx(clopper_pearson_upper(2, 5))
    assert m.far(0.0) == 1.0
    assert m.false_accepts(0.76) == 0 and m.far(0.76) == pytest.approx(1 - 0.05 ** (1 / 5))
    assert m.far_basis(0.3) == {"method": "clopper-pearson upper bound", "confidence": 0.95, "false_accepts": 3,
                                "impostor_pairs": 5, "identities": 3}
    again = ImpostorModel.from_json(m.to_json())
    assert again.far(0.3) == m.far(0.3) and again.identities == 3
    old = {k: v for k, v in m.to_json().items() if k not in ("identities", "confidence")}
    assert ImpostorModel.from_json(old).far(0.3) == m.far(0.3)  # calibrations stored before still load


def test_impostor_model_keeps_the_tail_exact_for_big_sets():
    scores = np.random.default_rng(0).normal(size=20_000)
    m = ImpostorModel.from_scores(scores, tail=100, bulk_points=50)
    assert len(m.scores) <= 150
    top = np.sort(scores)[::-1]
    for s in top[[0, 10, 99]]:
        assert m.false_accepts(s) == np.sum(scores >= s)
    s = np.median(scores)
    assert m.false_accepts(s) <= np.sum(scores >= s) <= m.false_accepts(s) + 400  # one quantile step


def test_calibration_threshold_empirical_or_extrapolated():
    rng = np.random.default_rng(3)
    imp = rng.normal(0.3, 0.1, 2000)
    gen = rng.normal(0.9, 0.05, 200)
    t, method, _ = calibrate_scores(gen, imp, 1e-2)
    assert method == "empirical" and np.mean(imp >= t) <= 1e-2
    t, method, m = calibrate_scores(gen, imp, 1e-5)  # 2000 pairs cannot measure 1e-5
    assert method == "normal-tail extrapolation"
    assert t > imp.max() and t >= m.gaussian_threshold(1e-5)


def test_pair_scores_all_pairs():
    emb = np.eye(4, dtype=np.float32)[[0, 0, 1, 2]]  # a, a, b, c
    g, i = pair_scores(emb, ["a", "a", "b", "c"])
    assert list(g) == [1.0] and sorted(i) == [0.0] * 5  # C(4,2) = 6 pairs: one genuine, five impostor


def test_calibrate_and_eval_embeddings_report_the_same_eer_and_auc():
    """`faces calibrate` and `eval embeddings` go through one implementation: on a small set with
    ties they agree exactly (two EER definitions used to disagree here)."""
    from training.evaluate import score

    faces = _people(6, 3, spread=3.0, seed=4)
    faces.embeddings = np.round(faces.embeddings, 2)  # ties between scores
    rep = calibrate_faces(faces, target_far=0.1, replicates=20)
    ev = score(faces.embeddings, faces.labels).verification
    assert (rep.eer, rep.eer_threshold, rep.auc) == (ev.eer, ev.eer_threshold, ev.roc_auc)
    assert 0 < rep.eer < 0.5
