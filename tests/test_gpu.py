"""GPU search paths. The torch exact-search code runs on the CPU too, so it is checked against
FAISS here; the FAISS GPU fallback is checked by making the GPU conversion fail the way a build
without kernels for the card fails. Tests marked `gpu` need CUDA and skip without it."""
import os

import numpy as np
import pytest
import torch

from tests.conftest import unit as _unit
from vsearch import gpu
from vsearch.vector_index import VectorIndex


def test_torch_exact_search_matches_faiss_flat_on_cpu():
    rng = np.random.default_rng(0)
    db, q = _unit(rng.normal(size=(3000, 64))), _unit(rng.normal(size=(50, 64)))
    ids = np.arange(3000, dtype=np.int64) * 7 + 1
    want_s, want_i = VectorIndex.build(64, db, ids).search(q, 10)
    # a tiny block size exercises the blocked loop
    got_s, got_i = gpu.TorchExactSearch(db, ids, device="cpu", max_scores=3000 * 7).search(q, 10)
    np.testing.assert_allclose(got_s, want_s, rtol=1e-4, atol=1e-5)
    assert (got_i == want_i).mean() > 0.99


def test_faiss_gpu_absent_falls_back(monkeypatch):
    import faiss

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0, raising=False)
    index = faiss.IndexFlatIP(8)
    out, note = gpu.faiss_to_gpu(index)
    assert out is index and "no GPU" in note


def test_faiss_gpu_without_kernels_falls_back_naming_the_fix(monkeypatch):
    import faiss

    def broken(*_a, **_k):  # what faiss-gpu-cu12 1.14.1 raises on an H100 at first use
        raise RuntimeError("CUDA error 209 no kernel image is available for execution on the device")

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: object(), raising=False)
    monkeypatch.setattr(faiss, "GpuClonerOptions", lambda: type("O", (), {})(), raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", broken, raising=False)
    index = faiss.IndexFlatIP(8)
    out, note = gpu.faiss_to_gpu(index)
    assert out is index and "faiss-gpu==1.15.1" in note


def test_gpu_searcher_on_cpu_returns_the_cpu_index():
    vi = VectorIndex.build(4, _unit(np.eye(4, dtype=np.float32)), [1, 2, 3, 4])
    searcher, note = gpu.gpu_searcher(vi, device="cpu")
    assert searcher is vi and "CPU" in note


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_exact_search_agrees_with_cpu():
    rng = np.random.default_rng(1)
    db, q = _unit(rng.normal(size=(20000, 128))), _unit(rng.normal(size=(100, 128)))
    vi = VectorIndex.build(128, db, np.arange(20000))
    searcher, _ = gpu.gpu_searcher(vi, device="cuda")
    _, want = vi.search(q, 10)
    _, got = searcher.search(q, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)]) > 0.98  # fp16 ties aside


# --- batch JPEG decoding (nvJPEG on a GPU; the same code runs decode_jpeg's libjpeg-turbo on the CPU)

def _jpeg_bytes(image, **save) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=92, **save)
    return buf.getvalue()


def _pillow_pixels(data: bytes, transform, draft_size=None):
    from vsearch.images import decode_image

    return transform(decode_image(data, draft_size=draft_size).image)


class _DecodingParts:
    """The parts of an encoder that decoding uses (its device and transforms), without a model."""

    def __init__(self, transform, device="cpu"):
        self.device = torch.device(device)
        self._preprocess = self.preprocess = transform
        self.info = type("Info", (), {"image_size": 224})()


@pytest.fixture(scope="module")
def clip_transform():
    import open_clip

    return open_clip.image_transform(224, is_train=False)


@pytest.mark.parametrize("which", ["clip", "imagenet"])
def test_tensor_preprocess_matches_the_pillow_preprocessing(which, clip_transform):
    """Resize short side + centre crop + normalise on uint8 tensors gives what the encoder's PIL
    transform gives, to within resampling rounding (mean 0.002 in normalised units, i.e. under
    one grey level)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    from indexer.gpu_decode import TensorPreprocess
    from tests.conftest import skimage_rgb
    from vsearch.encoders.conse import imagenet_preprocess

    transform = clip_transform if which == "clip" else imagenet_preprocess()
    blobs = [_jpeg_bytes(skimage_rgb(n)) for n in ("chelsea", "astronaut", "coffee", "camera")]
    blobs.append(_jpeg_bytes(skimage_rgb("coffee").resize((640, 480))))
    tensor_preprocess = TensorPreprocess.from_transform(transform)
    assert tensor_preprocess is not None
    images = [decode_jpeg(torch.frombuffer(bytearray(b), dtype=torch.uint8), mode=ImageReadMode.RGB) for b in blobs]
    got = tensor_preprocess(images)
    assert got.shape == (len(blobs), 3, 224, 224) and got.dtype == torch.float32
    for row, data in zip(got, blobs):
        want = _pillow_pixels(data, transform)
        assert (row - want).abs().mean() < 0.006
        assert (row - want).abs().max() < 0.2


def test_tensor_preprocess_refuses_transforms_it_cannot_do_on_tensors(clip_transform):
    import torchvision.transforms as T

    from indexer.gpu_decode import TensorPreprocess

    assert TensorPreprocess.from_transform(T.Compose([T.Grayscale(3), T.ToTensor()])) is None
    assert TensorPreprocess.from_transform(lambda im: im) is None
    assert TensorPreprocess.from_transform(T.Compose([T.Resize(32)])) is None  # never becomes a tensor


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_like_pillow(orientation):
    from torchvision.io import ImageReadMode, decode_jpeg

    from indexer.gpu_decode import jpeg_header, upright
    from tests.conftest import skimage_rgb
    from vsearch.images import decode_image

    image = skimage_rgb("chelsea").resize((120, 80))
    exif = image.getexif()
    exif[0x0112] = orientation
    data = _jpeg_bytes(image, exif=exif)
    want = decode_image(data).image
    width, height, got_orientation, _ = jpeg_header(data)
    assert (width, height, got_orientation) == (*want.size, orientation)
    got = upright(decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB), orientation)
    assert tuple(got.shape[1:]) == (want.size[1], want.size[0])
    assert np.abs(got.permute(1, 2, 0).numpy().astype(int) - np.asarray(want).astype(int)).mean() < 2


def test_decoder_selection(tiny_clip_spec, monkeypatch):
    from indexer.gpu_decode import BatchJpegDecoder, select_decoder
    from vsearch.encoders import load_encoder

    encoder = load_encoder(tiny_clip_spec, "cpu")
    monkeypatch.delenv("VSEARCH_JPEG_DECODER", raising=False)
    assert select_decoder(encoder) is None  # auto on a CPU encoder: Pillow with draft is faster
    forced = select_decoder(encoder, choice="torchvision")
    assert isinstance(forced, BatchJpegDecoder) and forced.device.type == "cpu"
    assert select_decoder(encoder, extract_side=512, choice="torchvision") is None  # extractors need PIL
    monkeypatch.setenv("VSEARCH_JPEG_DECODER", "torchvision")
    assert select_decoder(encoder) is not None
    monkeypatch.setenv("VSEARCH_JPEG_DECODER", "pillow")
    assert select_decoder(encoder) is None
    monkeypatch.setenv("VSEARCH_JPEG_DECODER", "nvjpg")
    with pytest.raises(ValueError, match="VSEARCH_JPEG_DECODER"):
        select_decoder(encoder)
    monkeypatch.delenv("VSEARCH_JPEG_DECODER")
    # what auto decides for an encoder on CUDA (nothing runs there)
    chosen = select_decoder(_DecodingParts(encoder._preprocess, "cuda"))
    assert isinstance(chosen, BatchJpegDecoder) and chosen.device.type == "cuda"


@pytest.fixture
def mixed_folder(tmp_path):
    """Real files of every kind the batch decoder must route: plain and EXIF-rotated JPEGs, a PNG,
    a CMYK JPEG, a truncated JPEG, a non-image named .jpg and an empty file."""
    from tests.conftest import skimage_rgb

    d = tmp_path / "mixed"
    d.mkdir()
    cat, coffee = skimage_rgb("chelsea"), skimage_rgb("coffee")
    (d / "a_plain.jpg").write_bytes(_jpeg_bytes(coffee))
    exif = cat.getexif()
    exif[0x0112] = 6
    (d / "b_rotated.jpg").write_bytes(_jpeg_bytes(cat, exif=exif))
    cat.save(d / "c_cat.png")
    (d / "d_cmyk.jpg").write_bytes(_jpeg_bytes(coffee.convert("CMYK")))
    whole = _jpeg_bytes(skimage_rgb("astronaut"))
    (d / "e_truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (d / "f_text.jpg").write_bytes(b"not an image at all\n" * 10)
    (d / "g_empty.jpg").write_bytes(b"")
    (d / "h_gray.jpg").write_bytes(_jpeg_bytes(skimage_rgb("camera").convert("L")))
    return d


def test_batch_decoding_routes_every_file_and_agrees_with_pillow(mixed_folder, clip_transform):
    from indexer.gpu_decode import select_decoder
    from indexer.decode import DecodeDataset
    from indexer.scan import scan_paths

    entries = scan_paths([str(mixed_folder)]).files
    pillow = DecodeDataset(entries, clip_transform, draft_size=224)
    decoder = select_decoder(_DecodingParts(clip_transform), choice="torchvision")
    decoder.max_pixels = 300_000  # below two of these photos: decoded in several calls, same result
    deferred = decoder.wrap(pillow)
    pairs = [deferred[i] for i in range(len(deferred))]
    to_batch = {os.path.basename(item.entry.path) for item, jpeg in pairs if jpeg is not None}
    assert to_batch == {"a_plain.jpg", "b_rotated.jpg", "h_gray.jpg"}

    items, pixels = decoder.finish(*decoder.collate(pairs))
    want = [pillow[i] for i in range(len(pillow))]
    assert [i.entry.path for i in items] == [w.entry.path for w in want]
    for got, ref in zip(items, want):
        assert (got.error is None) == (ref.error is None), (got.entry.path, got.error, ref.error)
        assert got.error == ref.error  # the same one-line reason as the Pillow path
        assert got.record == ref.record  # sha256, size after rotation, orientation, date
        if got.error is None:
            ref_pixels = _pillow_pixels(open(got.entry.path, "rb").read(), clip_transform)
            assert (pixels[got.row] - ref_pixels).abs().mean() < 0.006
    assert pixels.shape[0] == sum(1 for i in items if i.error is None) == 5
    assert decoder.counts == {"batch": 3, "pillow": 2, "refused": 0}


def test_files_the_batch_decoder_refuses_go_to_pillow(tmp_path, clip_transform):
    """decode_jpeg refuses these bytes for real (a PNG, a truncated JPEG); Pillow then decodes what
    it can and names the problem of what it cannot, and the good JPEG beside them is not lost."""
    from indexer.gpu_decode import BatchJpegDecoder, TensorPreprocess
    from indexer.decode import DecodedFile
    from indexer.scan import FileEntry
    from tests.conftest import skimage_rgb
    from vsearch.catalog import MediaRecord

    whole = _jpeg_bytes(skimage_rgb("astronaut"))
    png = tmp_path / "x.png"
    skimage_rgb("coffee").save(png)
    blobs = {"good.jpg": _jpeg_bytes(skimage_rgb("chelsea")), "png.jpg": png.read_bytes(),
             "cut.jpg": whole[: len(whole) // 2]}
    pairs = []
    for name, data in blobs.items():
        entry = FileEntry(str(tmp_path / name), len(data), 0.0)
        pairs.append((DecodedFile(entry, MediaRecord(entry.path, entry.size, entry.mtime), None, None),
                      torch.frombuffer(bytearray(data), dtype=torch.uint8)))
    decoder = BatchJpegDecoder("cpu", TensorPreprocess.from_transform(clip_transform), clip_transform, 224)
    items, pixels = decoder.finish(*decoder.collate(pairs))
    good, png_item, cut = items
    assert good.error is None and png_item.error is None and png_item.record.width == 600
    assert cut.error and "truncated" in cut.error
    assert pixels.shape == (2, 3, 224, 224) and (good.row, png_item.row, cut.row) == (0, 1, None)
    assert (pixels[1] - _pillow_pixels(blobs["png.jpg"], clip_transform)).abs().max() < 1e-6  # Pillow's own pixels
    assert decoder.counts == {"batch": 1, "pillow": 1, "refused": 2}


def test_shard_embedder_batch_decoding_gives_the_pillow_vectors(mixed_folder, tiny_clip_spec, monkeypatch):
    from indexer.embed import ShardEmbedder
    from indexer.scan import scan_paths

    entries = scan_paths([str(mixed_folder)]).files
    results = {}
    for choice in ("pillow", "torchvision"):
        monkeypatch.setenv("VSEARCH_JPEG_DECODER", choice)
        embedder = ShardEmbedder(tiny_clip_spec, "cpu", batch_size=3, decode_threads=2)
        assert (embedder.jpeg_decoder is None) == (choice == "pillow")
        results[choice] = embedder.embed(entries)
    (rec_p, vec_p, fail_p, _), (rec_t, vec_t, fail_t, _) = results["pillow"], results["torchvision"]
    assert rec_p == rec_t and [(r.path, e) for r, e in fail_p] == [(r.path, e) for r, e in fail_t]
    assert len(rec_p) == 5 and len(fail_p) == 3
    # the tiny model sees 32×32 pixels; Pillow's draft decode and a full decode differ a little there
    assert (vec_p * vec_t).sum(axis=1).min() > 0.98


def test_flat_contents_pairs_each_vector_with_its_id_after_removals():
    rng = np.random.default_rng(3)
    db = _unit(rng.normal(size=(500, 16)))
    ids = np.arange(500, dtype=np.int64) * 5 + 3
    vi = VectorIndex.build(16, db, ids)
    vi.remove(ids[::7])
    vectors, got_ids = gpu.flat_contents(vi)
    keep = np.ones(500, bool)
    keep[::7] = False
    assert sorted(got_ids.tolist()) == sorted(ids[keep].tolist())
    by_id = dict(zip(ids.tolist(), db))
    assert np.allclose(vectors, np.stack([by_id[i] for i in got_ids.tolist()]))


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@needs_cuda
def test_nvjpeg_batch_decoding_agrees_with_pillow(mixed_folder, clip_transform):
    from indexer.gpu_decode import select_decoder
    from indexer.decode import DecodeDataset
    from indexer.scan import scan_paths

    entries = scan_paths([str(mixed_folder)]).files
    pillow = DecodeDataset(entries, clip_transform, draft_size=224)
    decoder = select_decoder(_DecodingParts(clip_transform, "cuda"))  # auto picks it on CUDA
    assert decoder is not None and decoder.device.type == "cuda"
    deferred = decoder.wrap(pillow)
    items, pixels = decoder.finish(*decoder.collate([deferred[i] for i in range(len(deferred))]))
    assert pixels.is_cuda and pixels.shape[0] == 5
    for got, ref in zip(items, (pillow[i] for i in range(len(pillow)))):
        assert (got.error, got.record) == (ref.error, ref.record)
        if got.error is None:
            ref_pixels = _pillow_pixels(open(got.entry.path, "rb").read(), clip_transform)
            assert (pixels[got.row].cpu() - ref_pixels).abs().mean() < 0.01  # nvJPEG's IDCT differs a little
    assert decoder.counts["batch"] == 3 and decoder.counts["refused"] == 0


@pytest.mark.gpu
@needs_cuda
def test_cuda_encoder_with_nvjpeg_gives_the_cpu_vectors(mixed_folder, tiny_clip_spec, monkeypatch):
    """fp16 on the GPU with nvJPEG against fp32 on the CPU with Pillow: the same photos, failures
    and (nearly) the same vectors."""
    from indexer.embed import ShardEmbedder
    from indexer.scan import scan_paths

    monkeypatch.delenv("VSEARCH_JPEG_DECODER", raising=False)
    entries = scan_paths([str(mixed_folder)]).files
    gpu_embedder = ShardEmbedder(tiny_clip_spec, "cuda", batch_size=4, decode_threads=2)
    assert gpu_embedder.jpeg_decoder is not None
    rec_g, vec_g, fail_g, _ = gpu_embedder.embed(entries)
    rec_c, vec_c, fail_c, _ = ShardEmbedder(tiny_clip_spec, "cpu", batch_size=4).embed(entries)
    assert rec_g == rec_c and [r.path for r, _ in fail_g] == [r.path for r, _ in fail_c]
    assert (vec_g * vec_c).sum(axis=1).min() > 0.98


def test_index_with_batch_decoding_indexes_what_pillow_indexes(mixed_folder, tiny_clip_spec, monkeypatch, tmp_path):
    """`vsearch index` through the batch decoder (forced on the CPU): the same photos indexed, the
    same failures, close vectors; a 1×2000 strip JPEG goes through Pillow's aspect crop."""
    import vsearch
    from indexer import index_paths
    from tests.conftest import skimage_rgb
    from vsearch.catalog import IMAGE_SPACE
    from vsearch.encoders import load_encoder

    skimage_rgb("coffee").resize((2000, 8)).save(mixed_folder / "i_strip.jpg")
    encoder = load_encoder(tiny_clip_spec)
    found = {}
    for choice in ("pillow", "torchvision"):
        monkeypatch.setenv("VSEARCH_JPEG_DECODER", choice)
        coll = vsearch.open(str(tmp_path / f"db_{choice}"))
        try:
            summary = index_paths(coll.catalog, encoder, [str(mixed_folder)], workers=0, batch_size=4)
            names, vectors = coll.catalog.media_vectors(IMAGE_SPACE)
        finally:
            coll.catalog.close()
        found[choice] = (summary, dict(zip(names, vectors)))
    (sum_p, vec_p), (sum_t, vec_t) = found["pillow"], found["torchvision"]
    assert sum_t.added == sum_p.added == 6
    assert sorted(p for p, _ in sum_t.failed) == sorted(p for p, _ in sum_p.failed)
    assert vec_t.keys() == vec_p.keys()
    assert min(float(vec_t[p] @ vec_p[p]) for p in vec_p) > 0.98
