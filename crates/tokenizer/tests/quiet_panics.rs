//! A panic of the tokenizers library that oxformer catches and turns into an error prints
//! nothing: the panic hook sees only the panics nobody catches for it. (Its own test binary:
//! the panic hook is process-wide.)

mod common;

use std::panic::catch_unwind;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use oxformer_tokenizer::Tokenizer;

#[test]
fn a_caught_tokenizers_panic_does_not_reach_the_panic_hook() {
    let reported = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&reported);
    std::panic::set_hook(Box::new(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
    }));

    // tokenizers 0.22.2 `expect`s the decoder's JSON (decoders/mod.rs): a tokenizer.json cut
    // inside it panics in the library, and oxformer answers an error.
    let fixture = common::fixtures_dir()
        .join("tokenizers")
        .join("wordpiece-cased");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture.join("tokenizer_config.json"),
        dir.path().join("tokenizer_config.json"),
    )
    .unwrap();
    let text = std::fs::read_to_string(fixture.join("tokenizer.json")).unwrap();
    let decoder = text.find("\"decoder\"").expect("the fixture has a decoder");
    let cut = decoder + text[decoder..].find('{').unwrap() + 3;
    std::fs::write(dir.path().join("tokenizer.json"), &text[..cut]).unwrap();
    let error = Tokenizer::from_folder(dir.path()).unwrap_err();
    assert!(error.to_string().contains("tokenizer.json"), "{error}");
    assert_eq!(
        reported.load(Ordering::SeqCst),
        0,
        "the caught panic was reported"
    );

    // Any other panic still goes to the hook installed before.
    let outcome = catch_unwind(|| panic!("an application's own panic"));
    assert!(outcome.is_err());
    assert_eq!(reported.load(Ordering::SeqCst), 1);
}
