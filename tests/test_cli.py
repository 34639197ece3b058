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
