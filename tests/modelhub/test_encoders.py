import numpy as np

from apps.modelhub.encoders import SentenceEncoder, minilm_package_files


def test_package_files_exist():
    onnx_path, tokenizer_path = minilm_package_files()
    assert onnx_path.name == "model.onnx" and onnx_path.stat().st_size > 10_000_000
    assert tokenizer_path.name == "tokenizer.json" and tokenizer_path.is_file()


def test_embeddings_are_normalised_pooled_and_padding_invariant():
    encoder = SentenceEncoder(*minilm_package_files())
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."]
    vectors = encoder.embed(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.6 > similarity[0, 2]
    # Padding to the longest text of a batch must not change a text's vector.
    alone = encoder.embed(["A man is eating food."])
    np.testing.assert_allclose(alone[0], vectors[0], atol=1e-5)
    assert encoder.embed([]).shape == (0, 384)


def test_long_texts_are_truncated_to_max_length():
    encoder = SentenceEncoder(*minilm_package_files(), max_length=16)
    assert encoder.truncated(["short text", "word " * 100]) == [False, True]
    assert encoder.embed(["word " * 100]).shape == (1, 384)
