//! Linear, Embedding and LayerNorm loaded from small files, against the tensor core's references.

mod common;

use common::{message, ramp, write_f32_file};
use ndarray::{Array2, s};
use oxformer_nn::{Embedding, Error, LayerNorm, Linear, Weights};
use oxformer_tensor::{Activation, Epilogue, gemm_reference, layer_norm_reference};

fn input(rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_vec((rows, cols), ramp(rows * cols, -0.7)).unwrap()
}

fn assert_close(ours: &Array2<f32>, reference: &Array2<f32>) {
    assert_eq!(ours.dim(), reference.dim());
    for ((index, a), b) in ours.indexed_iter().zip(reference.iter()) {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "{index:?}: {a} vs {b}"
        );
    }
}

#[test]
fn linear_matches_the_reference_product_with_fused_epilogue() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_f32_file(
        dir.path(),
        "model.safetensors",
        &[("dense.weight", vec![5, 3]), ("dense.bias", vec![5])],
    );
    let weights = Weights::from_file(&path).unwrap();
    let linear = Linear::load(&weights.sub("dense"), 3, 5).unwrap();
    assert_eq!((linear.in_features(), linear.out_features()), (3, 5));
    let weight = weights.get("dense.weight", &[5, 3]).unwrap();
    let bias = weights.get("dense.bias", &[5]).unwrap();
    let x = input(7, 3);
    let residual = input(7, 5);

    let plain = linear.forward(x.view()).unwrap();
    let expected = gemm_reference(
        x.view(),
        weight.view2().unwrap().t(),
        &Epilogue::bias(bias.as_slice()),
    );
    assert_close(&plain, &expected);

    let fused = linear
        .forward_with(x.view(), Activation::Gelu, Some(residual.view()))
        .unwrap();
    let epilogue = Epilogue {
        bias: Some(bias.as_slice()),
        activation: Activation::Gelu,
        residual: Some(residual.view()),
        layer_norm: None,
    };
    assert_close(
        &fused,
        &gemm_reference(x.view(), weight.view2().unwrap().t(), &epilogue),
    );
}

#[test]
fn conv1d_layout_gives_the_same_product_as_the_transposed_linear() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_f32_file(
        dir.path(),
        "model.safetensors",
        &[("c_attn.weight", vec![3, 6]), ("c_attn.bias", vec![6])],
    );
    let weights = Weights::from_file(&path).unwrap();
    let conv = Linear::from_conv1d(&weights.sub("c_attn"), 3, 6).unwrap();
    let weight = weights.get("c_attn.weight", &[3, 6]).unwrap();
    let bias = weights.get("c_attn.bias", &[6]).unwrap();
    let x = input(4, 3);
    let expected = gemm_reference(
        x.view(),
        weight.view2().unwrap(),
        &Epilogue::bias(bias.as_slice()),
    );
    assert_close(&conv.forward(x.view()).unwrap(), &expected);
    // The [out, in] weight of the same layer loaded as a Linear is refused by shape.
    let error = message(Linear::load(&weights.sub("c_attn"), 3, 6));
    assert!(
        error.contains("c_attn.weight") && error.contains("[6, 3]"),
        "{error}"
    );
}

#[test]
fn fused_linear_outputs_each_part_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["query", "key", "value"];
    let tensors: Vec<(String, Vec<usize>)> = names
        .iter()
        .flat_map(|name| {
            [
                (format!("self.{name}.weight"), vec![4, 4]),
                (format!("self.{name}.bias"), vec![4]),
            ]
        })
        .collect();
    let borrowed: Vec<(&str, Vec<usize>)> = tensors
        .iter()
        .map(|(name, shape)| (name.as_str(), shape.clone()))
        .collect();
    let path = write_f32_file(dir.path(), "model.safetensors", &borrowed);
    let weights = Weights::from_file(&path).unwrap().sub("self");
    let parts: Vec<Weights> = names.iter().map(|name| weights.sub(name)).collect();
    let fused = Linear::load_fused(&parts, 4, 4).unwrap();
    assert_eq!(fused.out_features(), 12);
    let x = input(3, 4);
    let all = fused.forward(x.view()).unwrap();
    for (index, part) in parts.iter().enumerate() {
        let alone = Linear::load(part, 4, 4).unwrap().forward(x.view()).unwrap();
        assert_close(
            &all.slice(s![.., index * 4..(index + 1) * 4]).to_owned(),
            &alone,
        );
    }
}

#[test]
fn linear_refuses_inputs_of_the_wrong_width() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_f32_file(
        dir.path(),
        "model.safetensors",
        &[("dense.weight", vec![5, 3]), ("dense.bias", vec![5])],
    );
    let linear = Linear::load(&Weights::from_file(&path).unwrap().sub("dense"), 3, 5).unwrap();
    let error = linear.forward(input(2, 4).view()).unwrap_err();
    assert!(matches!(error, Error::Layer { .. }), "{error:?}");
    assert!(error.to_string().contains("dense"), "{error}");
    let wrong_residual = input(2, 4);
    let error = linear
        .forward_with(
            input(2, 3).view(),
            Activation::Identity,
            Some(wrong_residual.view()),
        )
        .unwrap_err();
    assert!(error.to_string().contains("residual"), "{error}");
    let missing = Linear::load(&Weights::from_file(&path).unwrap().sub("other"), 3, 5);
    assert!(message(missing).contains("other.weight"));
}

#[test]
fn embedding_gathers_rows_and_refuses_ids_beyond_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_f32_file(
        dir.path(),
        "model.safetensors",
        &[("embeddings.word_embeddings.weight", vec![6, 4])],
    );
    let weights = Weights::from_file(&path).unwrap();
    let table = weights
        .get("embeddings.word_embeddings.weight", &[6, 4])
        .unwrap();
    let embedding = Embedding::load(&weights.sub("embeddings.word_embeddings"), 6, 4).unwrap();
    let rows = embedding.forward(&[5, 0, 5]).unwrap();
    let table = table.view2().unwrap();
    for (row, id) in [5, 0, 5].into_iter().enumerate() {
        assert_eq!(rows.row(row), table.row(id));
    }
    let error = message(embedding.forward(&[1, 6]));
    assert!(
        error.contains("embeddings.word_embeddings.weight") && error.contains("id 6"),
        "{error}"
    );
}

#[test]
fn layer_norm_matches_the_reference_and_reads_gamma_beta() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_f32_file(
        dir.path(),
        "model.safetensors",
        &[("LayerNorm.gamma", vec![5]), ("LayerNorm.beta", vec![5])],
    );
    let weights = Weights::from_file(&path).unwrap();
    let norm = LayerNorm::load(&weights.sub("LayerNorm"), 5, 1e-12).unwrap();
    let gamma = weights.get("LayerNorm.gamma", &[5]).unwrap();
    let beta = weights.get("LayerNorm.beta", &[5]).unwrap();
    let (x, residual) = (input(3, 5), input(3, 5) * 0.5);
    let ours = norm.forward(x.view(), Some(residual.view())).unwrap();
    let expected = layer_norm_reference(
        x.view(),
        Some(residual.view()),
        gamma.as_slice(),
        beta.as_slice(),
        1e-12,
    );
    assert_close(&ours, &expected);
    let error = norm.forward(input(3, 4).view(), None).unwrap_err();
    assert!(matches!(error, Error::Layer { .. }), "{error:?}");
    let missing = message(LayerNorm::load(&weights.sub("norm"), 5, 1e-5));
    assert!(
        missing.contains("norm.weight") && missing.contains("norm.gamma"),
        "{missing}"
    );
}

#[test]
fn released_mapped_pages_read_back_the_same_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_f32_file(
        dir.path(),
        "model.safetensors",
        &[("dense.weight", vec![300, 40]), ("dense.bias", vec![300])],
    );
    let weights = Weights::from_file(&path).unwrap();
    let weight = weights.get("dense.weight", &[300, 40]).unwrap();
    assert!(weight.is_mapped());
    let before = weight.as_slice().to_vec();
    weight.release_mapped_pages();
    assert_eq!(weight.as_slice(), before.as_slice());
    // Linear::load releases the pages it packed; the layer and the tensor still agree.
    let linear = Linear::load(&weights.sub("dense"), 40, 300).unwrap();
    let x = input(2, 40);
    let bias = weights.get("dense.bias", &[300]).unwrap();
    let expected = gemm_reference(
        x.view(),
        weight.view2().unwrap().t(),
        &Epilogue::bias(bias.as_slice()),
    );
    assert_close(&linear.forward(x.view()).unwrap(), &expected);
    assert_eq!(weight.as_slice(), before.as_slice());
}

#[test]
fn linear_into_a_layer_norm_is_the_norm_of_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_f32_file(
        dir.path(),
        "model.safetensors",
        &[
            ("dense.weight", vec![5, 3]),
            ("dense.bias", vec![5]),
            ("LayerNorm.weight", vec![5]),
            ("LayerNorm.bias", vec![5]),
            ("small.weight", vec![4]),
            ("small.bias", vec![4]),
        ],
    );
    let weights = Weights::from_file(&path).unwrap();
    let linear = Linear::load(&weights.sub("dense"), 3, 5).unwrap();
    let norm = LayerNorm::load(&weights.sub("LayerNorm"), 5, 1e-12).unwrap();
    let x = input(7, 3);
    let residual = input(7, 5);

    let mut fused = Array2::<f32>::zeros((7, 5));
    linear
        .forward_into_normed(x.view(), residual.view(), &norm, fused.view_mut())
        .unwrap();
    let separate = linear
        .forward_with(x.view(), Activation::Identity, Some(residual.view()))
        .unwrap();
    assert_eq!(fused, norm.forward(separate.view(), None).unwrap());

    let small = LayerNorm::load(&weights.sub("small"), 4, 1e-12).unwrap();
    let error =
        message(linear.forward_into_normed(x.view(), residual.view(), &small, fused.view_mut()));
    assert!(
        error.contains("dense")
            && error.contains("small.weight")
            && error.contains("of 4 features"),
        "{error}"
    );
}

#[test]
fn layers_built_from_arrays_check_their_parts() {
    use oxformer_nn::{FeedForward, MultiHeadAttention};
    use oxformer_tensor::AttentionMask;

    let table = ndarray::Array2::from_shape_fn((5, 3), |(i, j)| (i * 3 + j) as f32);
    let embedding = Embedding::from_table("tokens", table.view());
    assert_eq!(embedding.row(4).unwrap(), &[12.0, 13.0, 14.0]);
    assert!(embedding.row(5).unwrap_err().to_string().contains("tokens"));

    let message = LayerNorm::from_parts("norm", &[1.0; 4], &[0.0; 3], 1e-5)
        .unwrap_err()
        .to_string();
    assert!(message.contains("norm"), "{message}");

    let linear = |name: &str, inputs: usize, outputs: usize| {
        let weight = ndarray::Array2::from_shape_fn((outputs, inputs), |(i, j)| {
            ((i * 7 + j * 3) % 5) as f32 * 0.1
        });
        Linear::from_weight(name, weight.view(), None).unwrap()
    };
    let message =
        FeedForward::from_parts(linear("fc1", 8, 16), linear("fc2", 15, 8), Activation::Gelu)
            .unwrap_err()
            .to_string();
    assert!(
        message.contains("fc1") && message.contains("fc2"),
        "{message}"
    );

    let message = MultiHeadAttention::from_parts(linear("qkv", 8, 24), linear("out", 8, 8), 3)
        .unwrap_err()
        .to_string();
    assert!(message.contains("heads"), "{message}");
    let message = MultiHeadAttention::from_parts(linear("qkv", 8, 16), linear("out", 8, 8), 2)
        .unwrap_err()
        .to_string();
    assert!(message.contains("qkv"), "{message}");

    let attention =
        MultiHeadAttention::from_parts(linear("qkv", 8, 24), linear("out", 8, 8), 2).unwrap();
    let wrong_width = ndarray::Array3::<f32>::zeros((1, 3, 7));
    assert!(
        attention
            .forward(wrong_width.view(), &AttentionMask::default())
            .is_err()
    );
    let x = ndarray::Array3::<f32>::ones((2, 3, 8));
    let padding = ndarray::Array2::<f32>::ones((2, 4));
    let mask = AttentionMask {
        key_padding: Some(padding.view()),
        causal: false,
        bias: None,
    };
    assert!(attention.forward(x.view(), &mask).is_err());
    assert_eq!(
        attention
            .forward(x.view(), &AttentionMask::default())
            .unwrap()
            .dim(),
        (2, 3, 8)
    );
}
