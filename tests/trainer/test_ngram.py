"""`--model ngram`: trained through `clsrun.trainer.train` and `clsrun train`, a linear model over the
runtime encoder's features, exported through the gate, scored by predict and eval like any bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from clsrun.runtime.batching import BatchOptions
from clsrun.runtime.bundle import NGRAM_FEATURES_FILE, Bundle
from clsrun.runtime.classifier import Classifier
from clsrun.runtime.cli import app
from clsrun.runtime.encode_ngram import NgramEncoder
from clsrun.runtime.errors import BundleError
from clsrun.runtime.readers import RecordChunk
from clsrun.runtime.textnorm import normalize_many
from clsrun.runtime.variant import Variant
from clsrun.trainer.models import load_model

TEXTS = ["房间很好，服务棒", "太差了，讨厌", "the room was good", "x"]


def _eager(bundle: Bundle, texts: list[str]) -> np.ndarray:
    """(N, C) logits of the bundle's eager model on ``texts``, padded together in one batch."""
    encoder = NgramEncoder.from_bundle(bundle)
    feeds = encoder.pad(
        encoder.tokenize(normalize_many(texts, bundle.spec.normalization)), np.arange(len(texts))
    )
    with torch.no_grad():
        return load_model(bundle)(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()


def test_train_writes_an_ngram_bundle_with_both_fits_and_the_baseline(tiny_ngram_bundle: Path) -> None:
    bundle = Bundle.load(tiny_ngram_bundle)
    assert bundle.spec.kind == "ngram" and NGRAM_FEATURES_FILE in bundle.files
    features = bundle.spec.model["features"]
    assert (features["script"], features["char_ngrams"], features["word_ngrams"]) == ("cjk", [1, 3], 0)
    assert features["tf"] == "raw"  # short texts: --tf auto keeps raw term frequency
    record = bundle.spec.training["ngram"]
    assert set(record["fits"]) == {"logreg", "torch"} and record["kept"] == bundle.spec.model["fit"]
    assert record["chosen_by"] == "accuracy"
    kept = record["fits"][record["kept"]]
    assert kept["accuracy"] == max(f["accuracy"] for f in record["fits"].values())
    assert bundle.spec.training["metrics"]["accuracy"] == pytest.approx(kept["accuracy"])
    assert kept["accuracy"] >= 0.9  # the tiny rows are separable by one character
    baseline = bundle.spec.training["baseline"]
    assert "TfidfVectorizer(char 1-3" in baseline["recipe"] and baseline["compared_on"] == "accuracy"
    assert 0.0 <= baseline["accuracy"] <= 1.0


def test_the_model_is_the_weighted_sum_of_its_table_rows(tiny_ngram_bundle: Path) -> None:
    bundle = Bundle.load(tiny_ngram_bundle)
    model = load_model(bundle)
    table = model.table.weight.detach().numpy()  # (V, C)
    bias = model.bias.detach().numpy()  # (C,)
    encoder = NgramEncoder.from_bundle(bundle)
    tokens = encoder.tokenize(normalize_many(TEXTS, bundle.spec.normalization))
    assert tokens.weights is not None
    together = _eager(bundle, TEXTS)
    for i in range(len(TEXTS)):
        ids = tokens.ids[tokens.offsets[i] : tokens.offsets[i + 1]]
        weights = tokens.weights[tokens.offsets[i] : tokens.offsets[i + 1]]
        expected = (weights[:, None] * table[ids]).sum(axis=0) + bias
        np.testing.assert_allclose(together[i], expected, rtol=1e-5, atol=1e-5)  # padding adds nothing
        np.testing.assert_allclose(_eager(bundle, [TEXTS[i]])[0], expected, rtol=1e-5, atol=1e-5)


def test_export_gate_predict_and_eval_score_what_the_eager_model_scores(
    exported_ngram_bundle: Path, small_charcnn_data: Path, tmp_path: Path
) -> None:
    bundle = Bundle.load(exported_ngram_bundle)
    report = (exported_ngram_bundle / "onnx" / "export_report.json").read_text(encoding="utf-8")
    assert '"fp32"' in report and (exported_ngram_bundle / "onnx" / "model.onnx").is_file()
    clf = Classifier.load(exported_ngram_bundle, Variant(precision="fp32"))
    assert clf.choice.backend == "onnx"
    # fp32 is a sparse graph: rows go in unpadded, in order; int8 derives from the dense graph (padded).
    # Raw tf: the counting graph (its encoder computes no weights) or the weighing one, whichever export
    # measured faster; the report says which, with both rates, and the other file is gone.
    fp32 = json.loads(report)["variants"]["fp32"]
    assert bundle.spec.model["features"]["tf"] == "raw" and fp32["sparse_graph"] in ("counting", "weighing")
    assert set(fp32["sparse_graph_rows_per_s"]) == {"counting", "weighing"}
    assert min(fp32["sparse_graph_rows_per_s"].values()) > 0
    counting = fp32["sparse_graph"] == "counting"
    expected = frozenset({"counts" if counting else "features"})
    assert clf.runner.sparse_inputs == expected and not clf.batching.padded  # type: ignore[attr-defined]
    assert clf.encoder.weigh is not counting  # type: ignore[attr-defined]
    assert sorted(p.name for p in (exported_ngram_bundle / "onnx").iterdir()) == [
        "export_report.json",
        "model.int8.onnx",
        "model.onnx",
    ]
    probs = clf.predict(TEXTS).probs
    eager = _eager(bundle, TEXTS)
    np.testing.assert_allclose(probs, torch.softmax(torch.from_numpy(eager), dim=1).numpy(), atol=1e-5)
    int8 = Classifier.load(exported_ngram_bundle, Variant(backend="onnx", precision="int8"))
    assert not int8.runner.sparse_inputs and int8.batching.padded  # type: ignore[attr-defined]
    np.testing.assert_allclose(int8.predict(TEXTS).probs, probs, atol=0.05)
    many = [TEXTS[i % 4] + str(i) for i in range(300)]
    small = BatchOptions(batch_tokens=64)  # many batches of consecutive rows, run by two streams
    streamed = Classifier.load(exported_ngram_bundle, Variant(precision="fp32", threads=2, streams=2), small)
    assert len(streamed.prepare(RecordChunk(0, None, list(many), [""] * 300)).batches) > 10
    np.testing.assert_allclose(
        streamed.score_records(many)["score"].to_numpy(),
        Classifier.load(exported_ngram_bundle, Variant(backend="torch"))
        .score_records(many)["score"]
        .to_numpy(),
        atol=1e-5,
    )

    out = tmp_path / "scores.csv"
    predicted = CliRunner().invoke(
        app, ["predict", str(small_charcnn_data), "--model", str(exported_ngram_bundle), "--out", str(out)]
    )
    assert predicted.exit_code == 0, predicted.output
    assert len(out.read_text(encoding="utf-8").splitlines()) == 301
    evaluated = CliRunner().invoke(app, ["eval", str(exported_ngram_bundle), str(small_charcnn_data)])
    assert evaluated.exit_code == 0, evaluated.output
    assert "accuracy" in evaluated.stdout


@pytest.mark.parametrize("tf", ["raw", "sublinear"])
def test_both_sparse_graphs_score_what_the_eager_model_scores(tf: str, tmp_path: Path) -> None:
    """A counting graph (raw tf: the encoder gives counts, the graph weighs them) and a weighing graph (the
    encoder's weights; sublinear tf, and raw-tf bundles exported before the counting graph) give the eager
    model's logits, texts without any kept n-gram included (their logits are the bias)."""
    import onnxruntime as ort

    from clsrun.export.ngram_graph import write_sparse_graph
    from clsrun.runtime.encode_ngram import NgramScheme, NgramVocabulary, hash_features
    from clsrun.trainer.ngram import NgramConfig, NgramLinear

    rng = np.random.default_rng(5)
    texts = ["".join(rng.choice(list("好差很服务酒店 ab"), size=rng.integers(1, 40))) for _ in range(80)]
    texts += ["龘", "zz"]  # n-grams seen in no training text: nothing kept
    scheme = NgramScheme("cjk", (1, 3), 0, False, 12, tf)  # type: ignore[arg-type]
    vocabulary = NgramVocabulary.build(*hash_features(texts[:80], scheme), 1 << 12, 2, None)
    encoder = NgramEncoder(scheme, vocabulary, 64)
    config = NgramConfig(n_features=vocabulary.size, n_labels=3)
    table = rng.standard_normal((vocabulary.size, 3)).astype(np.float32)
    model = NgramLinear.from_linear(config, table, rng.standard_normal(3).astype(np.float32))
    tokens = encoder.tokenize(texts)
    with torch.no_grad():
        feeds = encoder.pad(tokens, np.arange(len(texts)))
        eager = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
    np.testing.assert_allclose(eager[-2:], np.tile(model.bias.detach().numpy(), (2, 1)), atol=1e-6)

    for counting in [True, False] if tf == "raw" else [False]:
        path = write_sparse_graph(
            model, tmp_path / f"{counting}.onnx", "logits", vocabulary.idf if counting else None
        )
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = frozenset(i.name for i in session.get_inputs())
        assert names == {"counts" if counting else "features"}
        scoring = encoder.for_sparse_inputs(names)
        assert scoring.weigh is not counting and (scoring is encoder) is not counting
        scored = scoring.tokenize(texts)
        assert (scored.weights is None) is counting
        np.testing.assert_array_equal(scored.ids, tokens.ids)
        for rows in (np.arange(len(texts)), np.array([81, 3, 40, 80])):  # a slice, and gathered rows
            ((name, csr),) = scoring.sparse(scored, rows).items()
            shape = np.array([len(csr), csr.width], np.int64)
            tensor = ort.SparseTensor.sparse_csr_from_numpy(
                shape, csr.values, csr.columns, csr.offsets, ort.OrtDevice.make("cpu", 0)
            )
            feeds = {name: ort.OrtValue.ort_value_from_sparse_tensor(tensor)}
            logits = session.run_with_ort_values(["logits"], feeds)[0].numpy()
            np.testing.assert_allclose(logits, eager[rows], rtol=1e-5, atol=1e-5)
    if tf == "sublinear":
        with pytest.raises(BundleError, match="raw tf"):
            encoder.for_sparse_inputs(frozenset({"counts"}))


def test_cli_flags_set_the_scheme_and_the_fit(small_charcnn_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    args = ["train", str(small_charcnn_data), "--model", "ngram", "--out", str(out), "--quiet", "--no-logs"]
    flags = [
        "--char-ngrams",
        "1,2",
        "--fit",
        "logreg",
        "--min-df",
        "1",
        "--max-features",
        "50",
        "--tf",
        "sublinear",
        "--no-baseline",
    ]
    result = CliRunner().invoke(app, [*args, *flags])
    assert result.exit_code == 0, result.output
    bundle = Bundle.load(out)
    assert bundle.spec.model["features"]["char_ngrams"] == [1, 2] and bundle.spec.model["fit"] == "logreg"
    assert bundle.spec.model["n_features"] == 51  # 50 kept buckets + padding
    assert bundle.spec.model["features"]["tf"] == "sublinear"
    assert set(bundle.spec.training["ngram"]["fits"]) == {"logreg"}
    assert "baseline" not in bundle.spec.training and "TF-IDF" not in result.stdout


def test_english_text_gets_lowercased_words_pairs_and_character_2_to_4_grams(tmp_path: Path) -> None:
    import csv

    from clsrun.trainer import train

    good, bad = (
        ["Good room", "GREAT staff", "good food, great view"],
        ["Bad room", "AWFUL staff", "bad food, awful view"],
    )
    data = tmp_path / "en.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        rows = [("label", "text"), *[("pos", t) for t in good * 10], *[("neg", t) for t in bad * 10]]
        csv.writer(f).writerows(rows)
    result = train(
        data, tmp_path / "b", model="ngram", options={"fit": "logreg"}, config={"logs": False, "quiet": True}
    )
    features = Bundle.load(result.bundle).spec.model["features"]
    assert (features["script"], features["char_ngrams"], features["word_ngrams"], features["lowercase"]) == (
        "alphabetic",
        [2, 4],
        2,
        True,
    )


def test_long_texts_get_sublinear_tf_and_scoring_weighs_them_as_training_did(tmp_path: Path) -> None:
    """``--tf auto``: texts averaging 500+ characters get sublinear tf, recorded in the bundle; the bundle's
    eager model, fed by the runtime encoder, reproduces the validation loss the trainer measured."""
    import csv
    import gzip
    import json

    from clsrun.trainer import train
    from clsrun.trainer.options import NGRAM_LONG_TEXT_CHARS

    rng = np.random.default_rng(0)
    pool = {"pos": list("好很棒赞服务的了是"), "neg": list("差很烂坏服务的了是")}
    rows = [
        (label, "".join(rng.choice(pool[label], size=600))) for label in ("pos", "neg") for _ in range(30)
    ]
    data = tmp_path / "long.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("label", "text"), *rows])
    assert min(len(t) for _, t in rows) >= NGRAM_LONG_TEXT_CHARS
    options = {"fit": "logreg"}
    result = train(
        data, tmp_path / "b", model="ngram", options=options, config={"logs": False, "quiet": True}
    )
    bundle = Bundle.load(result.bundle)
    assert bundle.spec.model["features"]["tf"] == "sublinear"
    assert bundle.spec.model["features"]["bucket_bits"] == 22  # long texts: fewer collisions
    with gzip.open(result.bundle / "validation.jsonl.gz", "rt", encoding="utf-8") as f:
        val = [json.loads(line) for line in f]
    logits = torch.from_numpy(_eager(bundle, [r["text"] for r in val]))
    targets = torch.tensor([bundle.spec.labels.index(r["label"]) for r in val])
    loss = torch.nn.functional.cross_entropy(logits, targets).item()
    assert loss == pytest.approx(bundle.spec.training["ngram"]["fits"]["logreg"]["val_loss"], rel=1e-4)

    short = train(
        data,
        tmp_path / "c",
        model="ngram",
        options={**options, "tf": "raw"},
        config={"logs": False, "quiet": True},
    )
    raw = Bundle.load(short.bundle).spec.model["features"]
    assert (raw["tf"], raw["bucket_bits"]) == ("raw", 20)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--char-ngrams", "3,1"], "--char-ngrams must be MIN,MAX with 1 <= MIN <= MAX <= 8"),
        (["--fit", "sgd"], "--fit must be one of best, torch, logreg"),
        (["--bucket-bits", "40"], "--bucket-bits must be between 8 and 30"),
        (["--logreg-c", "0"], "--logreg-c must be > 0"),
        (["--tf", "log"], "--tf must be one of auto, raw, sublinear"),
        (["--embed-dim", "8"], "--embed-dim applies to charcnn models, not ngram"),
        (["--pooling", "mean"], "error: --pooling applies to charcnn and BERT models, not ngram\n"),  # once
        (["--min-df", "100000", "--no-baseline"], "no n-gram occurs in --min-df 100000 of the"),
    ],
)
def test_bad_ngram_flags_exit_2_naming_the_flag(
    small_charcnn_data: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "b"
    result = CliRunner().invoke(
        app, ["train", str(small_charcnn_data), "--model", "ngram", "--out", str(out), *args]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists() or not any(out.iterdir())


def test_ngram_flags_on_another_kind_are_refused(small_charcnn_data: Path, tmp_path: Path) -> None:
    args = ["train", str(small_charcnn_data), "--model", "charcnn", "--out", str(tmp_path / "b")]
    result = CliRunner().invoke(app, [*args, "--char-ngrams", "1,3", "--fit", "logreg"])
    assert (
        result.exit_code == 2
        and "--char-ngrams and --fit apply to ngram models, not charcnn" in result.output
    )


def test_the_logistic_regression_fit_leaves_the_torch_fit_its_features() -> None:
    """Summing repeated ids for scikit-learn once sorted the shared arrays in place: AdamW then trained on
    scrambled rows (reviews_zh validation 0.58 instead of 0.86)."""
    from clsrun.trainer.options import NgramOptions
    from clsrun.trainer.train_ngram import build_encoder, features_matrix

    texts = ["好好好差好", "差差好", "服务很好很好"]
    encoder = build_encoder(texts * 2, NgramOptions(min_df=1), 100)
    tokens = encoder.tokenize(texts)
    assert tokens.weights is not None
    ids, weights = tokens.ids.copy(), tokens.weights.copy()
    matrix = features_matrix(tokens, encoder.vocabulary.size)
    np.testing.assert_array_equal(tokens.ids, ids)
    np.testing.assert_array_equal(tokens.weights, weights)
    assert matrix.nnz < len(ids)  # repeats were summed, in the copy


def test_training_settings_that_the_logreg_fit_ignores_are_said(
    small_charcnn_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """--fit logreg --epochs 3 accepted the epochs and did nothing with them, silently."""
    from clsrun.trainer import train

    config = {"epochs": 3, "lr": 0.5, "quiet": True, "logs": False}
    said = {}
    for fit in ("logreg", "torch"):
        caplog.clear()
        options = {"fit": fit}
        train(
            small_charcnn_data, tmp_path / fit, model="ngram", config=config, options=options, baseline=False
        )
        said[fit] = caplog.text
    assert "--epochs, --lr: unused with --fit logreg" in said["logreg"]
    assert "unused with" not in said["torch"]


def test_a_class_weighted_validation_loss_is_named_so_beside_the_unweighted_fit_figures(
    small_charcnn_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Under --class-weights auto the epoch lines and the kept epoch give the weighted loss early stopping
    watches, the fit summary the plain one: both were "validation loss", with different values."""
    from clsrun.trainer import train

    config = {"epochs": 2, "quiet": True, "logs": False, "class_weights": "auto"}
    with caplog.at_level("INFO", logger="clsrun"):
        train(small_charcnn_data, tmp_path / "b", model="ngram", config=config, options={"fit": "best"},
              baseline=False)  # fmt: skip
    assert "lowest class-weighted validation loss" in caplog.text
    assert "AdamW fit: validation accuracy" in caplog.text and "unweighted loss" in caplog.text


def test_the_share_of_training_texts_cut_at_max_length_is_said(
    small_charcnn_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The char-CNN and BERT said it; the n-gram model cut nearly every text at --max-length 5 silently."""
    from clsrun.trainer import train

    with caplog.at_level("INFO", logger="clsrun"):
        train(small_charcnn_data, tmp_path / "b", model="ngram", config={"max_length": 5, "quiet": True},
              options={"fit": "logreg"}, baseline=False)  # fmt: skip
    assert "% of training texts cut to 5 characters (--max-length)" in caplog.text
    share = int(caplog.text.split("% of training texts cut to 5")[0].rsplit(" ", 1)[-1])
    assert share > 50
