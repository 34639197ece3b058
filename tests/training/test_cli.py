"""`vsearch train`, `vsearch eval embeddings` and `vsearch.commands.trainer.main(argv)` as a user runs them."""
import json
import shutil

import pytest
from typer.testing import CliRunner

from cli import app
from vsearch.commands.trainer import main

runner = CliRunner()

TINY = ["--backbone", "vsearch_tiny_cnn", "--image-size", "8", "--dim", "16", "--epochs", "2",
        "--steps-per-epoch", "4", "-P", "4", "-K", "4", "--lr", "3e-3", "--val-classes", "7,8,9", "--quiet"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_help_lists_train_and_eval():
    out = invoke("--help")
    assert out.exit_code == 0 and "train" in out.output and "eval" in out.output
    out = invoke("train", "--help")
    assert "--miner" in out.output and "batch-hard" in out.output and "--resume" in out.output
    assert "embeddings" in invoke("eval", "--help").output


def test_train_writes_model_report_and_curves_then_eval_agrees(digits, tmp_path):
    out = tmp_path / "m.pt"
    r = invoke("train", digits, "--out", out, "--miner", "semi-hard", "--loss", "contrastive", *TINY)
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and "R@1" in r.output and "held-out" in r.output
    assert out.exists() and (tmp_path / "m.pt.ckpt").exists()
    report = json.loads((tmp_path / "m.eval.json").read_text())
    assert report["classes"] == 3 and report["images"] == 180 and report["verification"]["genuine_pairs"] == 3 * 60 * 59 // 2
    assert set(report["verification"]["tar_at_far"]) == {"0.001", "0.01", "0.1"}
    assert (tmp_path / "m.eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    held_out = tmp_path / "held_out"
    for label in ("7", "8", "9"):
        shutil.copytree(digits / label, held_out / label)
    r = invoke("eval", "embeddings", held_out, "--model", out, "--json", "--report", tmp_path / "e.json",
               "--plot", tmp_path / "e.png")
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.stdout.strip().splitlines()[-1])
    # the same images through the exported file and the registry give the trainer's numbers
    assert metrics["recall_at"]["1"] == pytest.approx(report["recall_at"]["1"], abs=1e-9)
    assert metrics["map_at_r"] == pytest.approx(report["map_at_r"], abs=1e-6)
    assert metrics["model"] == f"trained:{out}"
    assert (tmp_path / "e.png").exists() and json.loads((tmp_path / "e.json").read_text())["verification"]["roc"]


def test_index_command_takes_the_trained_model(trained, digits_root, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(digits_root / "9", photos)
    r = invoke("index", photos, "--db", tmp_path / "db", "--model", f"trained:{trained.model_path}", "--workers", "0", "--quiet")
    assert r.exit_code == 0, r.output
    assert "added 60" in r.output
    r = invoke("search", "nine", "--db", tmp_path / "db")
    assert r.exit_code == 2 and "image-only" in r.output


@pytest.mark.parametrize("args,message", [
    (["--loss", "hinge"], "hinge"),
    (["--miner", "hardest"], "hardest"),
])
def test_bad_choices_are_usage_errors(digits, tmp_path, args, message):
    r = runner.invoke(app, ["train", str(digits), "--out", str(tmp_path / "m.pt"), *args])
    assert r.exit_code == 2 and message in r.output


def test_library_errors_exit_2_with_one_line(tmp_path, digits):
    r = invoke("train", tmp_path / "nowhere", *TINY)
    assert r.exit_code == 2 and "no such file or folder" in r.output
    r = invoke("train", digits, "--out", tmp_path / "m.pt", "--resume", *TINY)
    assert r.exit_code == 2 and "no checkpoint" in r.output
    r = invoke("train", digits, "--out", tmp_path / "m.pt", "--backbone", "nonet", "--image-size", "8", "--quiet")
    assert r.exit_code == 2 and "unknown backbone" in r.output
    r = invoke("eval", "embeddings", digits, "--model", tmp_path / "absent.pt")
    assert r.exit_code == 2 and "no such model file" in r.output


def test_main_argv_runs_the_same_commands(digits, tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert main(["train", str(digits), "--out", str(out), *TINY]) == 0
    assert out.exists()
    assert main(["train", str(digits), "--out", str(out), "--resume", *TINY]) == 0  # already complete: no-op
    assert main(["eval", "embeddings", str(digits), "--model", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["classes"] == 10
    assert main(["train", str(tmp_path / "nowhere")]) == 2
    assert main(["train", "--loss", "nope", str(digits)]) == 2


def test_progress_reports_loss_active_fraction_and_empty_batches_per_epoch(digits, tmp_path):
    r = invoke("train", digits, "--out", tmp_path / "m.pt", *[a for a in TINY if a != "--quiet"])
    assert r.exit_code == 0, r.output
    for epoch in ("epoch 1:", "epoch 2:"):
        line = next(l for l in r.output.splitlines() if l.startswith(epoch))
        assert "loss" in line and "active" in line and "batches without a valid tuple 0/4" in line
        assert "held-out R@1" in line


def _resized_copy(src, dst, size: int, classes=None):
    from PIL import Image

    for path in sorted(src.rglob("*.png")):
        if classes is not None and path.parent.name not in classes:
            continue
        out = dst / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).resize((size, size)).save(out)
    return dst


def test_input_size_is_chosen_from_the_data(tmp_path, digits_root):
    from training.data import choose_image_size, discover, median_short_side

    side = median_short_side(discover(str(_resized_copy(digits_root, tmp_path / "d", 40, classes={"0", "1"}))).paths)
    assert side == 40
    assert choose_image_size(side, largest=224) == 40
    assert choose_image_size(side, largest=32) == 32  # capped by the backbone
    digits_side = median_short_side(discover(str(digits_root)).paths)
    assert digits_side == 8 and choose_image_size(digits_side, largest=224) == 32  # 8 px: not below 32
    assert median_short_side([str(tmp_path / "missing.png")]) is None
    assert choose_image_size(None, largest=224) is None


def test_held_out_warnings():
    from training.data import LabelledPaths
    from training.run import held_out_warnings

    one_class = LabelledPaths(("a", "b", "c"), ("7", "7", "7"))
    assert "only 1 class" in held_out_warnings(one_class)[0]
    singletons = LabelledPaths(("a", "b"), ("7", "8"))
    assert "2 images" in held_out_warnings(singletons)[0]
    assert held_out_warnings(LabelledPaths(("a", "b", "c", "d"), ("7", "7", "8", "8"))) == []
    assert held_out_warnings(LabelledPaths((), ())) == []


def test_train_prints_size_steps_eta_and_warns_when_held_out_set_measures_nothing(tmp_path, digits_root):
    data = _resized_copy(digits_root, tmp_path / "digits32", 32, classes={"0", "1", "2", "3", "4", "9"})
    r = invoke("train", data, "--out", tmp_path / "m.pt", "--backbone", "efficientnet_lite0", "--weights", "none",
               "--dim", "16", "--epochs", "1", "--steps-per-epoch", "7", "-P", "4", "-K", "4",
               "--val-classes", "9", "--json")
    assert r.exit_code == 0, r.output
    assert "input 32 px, from the data (the backbone takes up to 224" in r.output
    assert "7 steps per epoch" in r.output and "per step: about" in r.output and "ETA" in r.output
    assert "warning: only 1 class is held out" in r.output
    result = json.loads(r.stdout)
    assert result["steps"] == 7 and result["warnings"] and result["held_out"]["classes"] == 1


def test_train_output_in_a_missing_folder_fails_before_any_work(tmp_path, digits):
    r = invoke("train", digits, "--out", tmp_path / "no" / "m.pt", *TINY)
    assert r.exit_code == 2 and "does not exist" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "no").exists()


def test_train_outcome_carries_what_train_json_prints(digits, tmp_path):
    from training.config import TrainConfig
    from training.run import run

    out = tmp_path / "m.pt"
    r = invoke("train", digits, "--out", out, "--json", *TINY)
    assert r.exit_code == 0, r.output
    printed = json.loads(r.stdout)
    for written in tmp_path.glob("m.*"):  # the same run again from Python, into the same files
        written.unlink()
    outcome = run(TrainConfig(data=str(digits), out=str(out), backbone="vsearch_tiny_cnn", image_size=8,
                              embedding_dim=16, epochs=2, steps_per_epoch=4, classes_per_batch=4, samples_per_class=4,
                              lr=3e-3, val_classes=["7", "8", "9"]))
    got = outcome.to_json()
    assert list(got) == list(printed) and "roc" not in got["held_out"]["verification"]
    for d in (got, printed, got["held_out"], printed["held_out"]):
        d.pop("seconds")  # the only figures that differ between two runs of a seeded training
    assert json.loads(json.dumps(got)) == printed
    assert printed["model"] == str(out) and printed["train_classes"] == [str(c) for c in range(7)]


def test_eval_report_and_train_checkpoint_follow_the_output_rule_before_any_work(digits, tmp_path):
    (tmp_path / "out").mkdir()
    for args in (["eval", "embeddings", digits, "--model", tmp_path / "absent.pt", "--report", tmp_path / "out"],
                 ["eval", "embeddings", digits, "--model", tmp_path / "absent.pt", "--report", tmp_path / "no" / "r.json"],
                 ["train", digits, "--out", tmp_path / "m.pt", "--checkpoint", tmp_path / "no" / "c.ckpt", *TINY]):
        r = invoke(*args)
        # the output option is refused first: not the missing model, not after training
        assert r.exit_code == 2 and ("--report" in r.output or "--checkpoint" in r.output), r.output
        assert "no such model file" not in r.output and "Traceback" not in r.output
        assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "no").exists() and not (tmp_path / "m.pt").exists()


def test_a_collapsed_training_is_an_error_and_writes_no_model(digits, tmp_path):
    out = tmp_path / "m.pt"
    args = [a if a != "3e-3" else "1.0" for a in TINY]  # a rate that sends every image to one point
    r = invoke("train", digits, "--out", out, "--epochs", "1", "--patience", "0", *args)
    assert r.exit_code == 1, r.output
    assert "training collapsed" in r.output and "--lr" in r.output and "done" not in r.output
    assert not out.exists() and not (tmp_path / "m.eval.json").exists()


def test_eval_embeddings_compares_with_raw_pixels_the_untrained_model_and_chance(trained, digits_root, tmp_path):
    held_out = tmp_path / "held_out"
    for label in ("7", "8", "9"):
        shutil.copytree(digits_root / label, held_out / label)
    r = invoke("eval", "embeddings", held_out, "--model", trained.model_path, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout.strip().splitlines()[-1])
    # the same held-out images as the trainer's own report: the same baselines
    ours = trained.report.to_dict()["baselines"]
    assert set(d["baselines"]) == set(ours)
    for name, figures in ours.items():
        assert d["baselines"][name] == pytest.approx(figures, abs=1e-6)
    assert d["chance_recall_at_1"] == pytest.approx(59 / 179)
    # piped, the progress is plain lines on stderr
    assert "embedding: 180/180 images" in r.stderr

    r = invoke("eval", "embeddings", held_out, "--model", trained.model_path)
    assert r.exit_code == 0
    lines = dict(line.split("\t") for line in r.stdout.splitlines() if "\t" in line)
    assert {"R@1", "MAP@R", "R@1 raw pixels", "MAP@R raw pixels", "R@1 untrained model", "R@1 chance"} <= set(lines)

    r = invoke("eval", "embeddings", held_out, "--model", trained.model_path, "--json", "--no-baselines", "-q")
    assert json.loads(r.stdout)["baselines"] == {} and "embedding:" not in r.stderr


def test_a_trained_model_finds_the_same_digit_first(trained, digits_root, tmp_path):
    """Index held-out digits with the trained model, then search with other images of each class."""
    photos, queries = tmp_path / "photos", {}
    for label in ("7", "8", "9"):
        files = sorted((digits_root / label).glob("*.png"))
        (photos / label).mkdir(parents=True)
        for f in files[:-1]:
            shutil.copy(f, photos / label / f.name)
        queries[label] = files[-1]  # never indexed
    db = tmp_path / "db"
    r = invoke("index", photos, "--db", db, "--model", f"trained:{trained.model_path}", "--workers", "0", "--quiet")
    assert r.exit_code == 0, r.output
    for label, query in queries.items():
        r = invoke("search", "--image", query, "--db", db, "-k", "3", "--paths")
        assert r.exit_code == 0, r.output
        first = r.stdout.splitlines()[0]
        assert f"/{label}/" in first, (label, r.stdout)


def test_eval_classify_and_retrieval_report_progress_in_plain_lines_when_piped(photo_dir, tmp_path, packaged_encoder):
    root = tmp_path / "ds"
    for label, name in {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket"}.items():
        (root / label).mkdir(parents=True)
        shutil.copy(photo_dir / f"{name}.jpg", root / label / f"{name}.jpg")
    r = invoke("eval", "classify", root, "--model", "packaged", "--json", "--db", tmp_path / "nodb")
    assert r.exit_code == 0, r.output
    assert "embedding: 3/3 images" in r.stderr and json.loads(r.stdout)["images"] == 3
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"image,caption\n{photo_dir}/chelsea.jpg,a cat\n{photo_dir}/rocket.jpg,a rocket\n")
    r = invoke("eval", "retrieval", pairs, "--model", "packaged", "--json", "--db", tmp_path / "nodb")
    assert r.exit_code == 0, r.output
    assert "embedding: 2/2 images" in r.stderr and json.loads(r.stdout)["images"] == 2
