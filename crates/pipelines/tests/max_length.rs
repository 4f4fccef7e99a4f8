//! `max_length` on feature extraction, sentence embeddings and text classification: with
//! truncation an input is cut to that many tokens, exactly as the tokenizer cuts it; a
//! `max_length` past the model's positions cuts at the positions; 0, or fewer tokens than the
//! special ones, is an error.

mod common;

use common::model_dir;
use oxformer_pipelines::feature_extraction::{FeatureExtractionOptions, FeatureExtractionPipeline};
use oxformer_pipelines::sentence_embeddings::{
    EmbeddingInput, SentenceEmbeddingsOptions, SentenceEmbeddingsPipeline,
};
use oxformer_pipelines::text_classification::{
    ClassificationTopK, TextClassificationOptions, TextClassificationPipeline, TextInput,
};
use oxformer_tokenizer::{EncodeOptions, Tokenizer, Truncation};

/// Words that are one token each in the fixtures' small vocabulary, so that a cut falls
/// between words and the cut ids decode to a text that encodes back to them.
fn long_text(words: usize) -> String {
    (0..words)
        .map(|index| if index % 3 == 0 { "good" } else { "bad" })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The ids the folder's tokenizer makes for `text` cut to `max_length` (special tokens kept).
fn cut_ids(model: &str, text: &str, max_length: usize) -> Vec<u32> {
    let tokenizer = Tokenizer::from_folder(model).unwrap();
    let options = EncodeOptions {
        truncation: Truncation::LongestFirst,
        max_length: Some(max_length),
        ..EncodeOptions::default()
    };
    tokenizer.encode(text, &options).unwrap().ids().to_vec()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn feature_extraction_cuts_to_max_length() {
    let model = model_dir("bert");
    let pipeline = FeatureExtractionPipeline::new(&model).unwrap();
    let text = long_text(40);
    let options = FeatureExtractionOptions {
        truncation: true,
        max_length: Some(8),
        ..FeatureExtractionOptions::default()
    };
    let cut = &pipeline.run(&[text.as_str()], &options).unwrap()[0].0[0];
    assert_eq!(cut.len(), 8);
    let ids = cut_ids(&model, &text, 8);
    let by_ids = &pipeline
        .run_inputs(
            &[EmbeddingInput::TokenIds(&ids)],
            &FeatureExtractionOptions::default(),
            None,
        )
        .unwrap()[0]
        .0[0];
    for (token, (a, b)) in cut.iter().zip(by_ids).enumerate() {
        let difference = max_difference(a, b);
        assert!(difference <= 1e-5, "token {token}: {difference}");
    }
    // Token ids are cut the same way.
    let long_ids = cut_ids(&model, &text, 128);
    let ids_cut = &pipeline
        .run_inputs(&[EmbeddingInput::TokenIds(&long_ids)], &options, None)
        .unwrap()[0]
        .0[0];
    assert_eq!(ids_cut.len(), 8);
    // Without truncation, max_length is not used: a text that fits runs whole.
    let whole = FeatureExtractionOptions {
        truncation: false,
        max_length: Some(8),
        ..FeatureExtractionOptions::default()
    };
    let whole = &pipeline.run(&[text.as_str()], &whole).unwrap()[0].0[0];
    assert_eq!(whole.len(), cut_ids(&model, &text, 128).len());
}

#[test]
fn sentence_embeddings_cut_to_max_length() {
    let model = model_dir("st-mean");
    let pipeline = SentenceEmbeddingsPipeline::new(&model).unwrap();
    let text = long_text(40);
    let options = SentenceEmbeddingsOptions {
        max_length: Some(8),
        ..SentenceEmbeddingsOptions::default()
    };
    let cut = pipeline.run(&[text.as_str()], &options).unwrap();
    let ids = cut_ids(&model, &text, 8);
    let by_ids = pipeline
        .run_inputs(
            &[EmbeddingInput::TokenIds(&ids)],
            &SentenceEmbeddingsOptions::default(),
            None,
        )
        .unwrap();
    let difference = max_difference(&cut[0], &by_ids[0]);
    assert!(difference <= 1e-5, "{difference}");
    let whole = pipeline
        .run(&[text.as_str()], &SentenceEmbeddingsOptions::default())
        .unwrap();
    assert!(
        max_difference(&cut[0], &whole[0]) > 1e-3,
        "the cut changed nothing"
    );
    // Similarity embeds with the same cut.
    let scores = pipeline
        .similarity(&text, &["good bad"], &options)
        .unwrap()
        .0;
    let other = pipeline
        .run(&["good bad"], &SentenceEmbeddingsOptions::default())
        .unwrap();
    let cosine = |a: &[f32], b: &[f32]| {
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (norm(a) * norm(b))
    };
    assert!((scores[0] - cosine(&by_ids[0], &other[0])).abs() <= 1e-5);
}

#[test]
fn text_classification_cuts_to_max_length() {
    let model = model_dir("bert-seqcls-multi");
    let pipeline = TextClassificationPipeline::new(&model).unwrap();
    let tokenizer = Tokenizer::from_folder(&model).unwrap();
    let text = long_text(40);
    let ids = cut_ids(&model, &text, 8);
    let cut_text = tokenizer.decode(&ids, true, None).unwrap();
    let again = tokenizer
        .encode(cut_text.as_str(), &EncodeOptions::default())
        .unwrap();
    assert_eq!(again.ids(), ids.as_slice(), "{cut_text}");
    let options = TextClassificationOptions {
        top_k: ClassificationTopK::All,
        truncation: true,
        max_length: Some(8),
        ..TextClassificationOptions::default()
    };
    let plain = TextClassificationOptions {
        top_k: ClassificationTopK::All,
        ..TextClassificationOptions::default()
    };
    let cut = pipeline
        .run(&[TextInput::from(text.as_str())], &options)
        .unwrap();
    let expected = pipeline
        .run(&[TextInput::from(cut_text.as_str())], &plain)
        .unwrap();
    let json = |value| serde_json::to_value(value).unwrap();
    assert_eq!(json(&cut), json(&expected));
    let whole = pipeline
        .run(&[TextInput::from(text.as_str())], &plain)
        .unwrap();
    assert_ne!(json(&cut), json(&whole), "the cut changed nothing");
}

#[test]
fn max_length_past_the_positions_cuts_at_them_and_zero_is_an_error() {
    let model = model_dir("bert");
    let pipeline = FeatureExtractionPipeline::new(&model).unwrap();
    // Far longer than the fixture's 128 positions.
    let text = long_text(400);
    let over = FeatureExtractionOptions {
        truncation: true,
        max_length: Some(100_000),
        ..FeatureExtractionOptions::default()
    };
    let default = FeatureExtractionOptions {
        truncation: true,
        ..FeatureExtractionOptions::default()
    };
    let over = pipeline.run(&[text.as_str()], &over).unwrap();
    let default = pipeline.run(&[text.as_str()], &default).unwrap();
    assert_eq!(over, default);
    for max_length in [0, 1] {
        let options = FeatureExtractionOptions {
            truncation: true,
            max_length: Some(max_length),
            ..FeatureExtractionOptions::default()
        };
        let error = pipeline.run(&[text.as_str()], &options).unwrap_err();
        assert!(error.is_user_error(), "{max_length}: {error}");
        assert!(error.to_string().contains("max_length"), "{error}");
    }
    let classifier = TextClassificationPipeline::new(&model_dir("bert-seqcls-multi")).unwrap();
    let options = TextClassificationOptions {
        truncation: true,
        max_length: Some(100_000),
        ..TextClassificationOptions::default()
    };
    assert!(
        classifier
            .run(&[TextInput::from(text.as_str())], &options)
            .is_ok()
    );
}
