//! Bad checkpoint files: each must fail with a message naming the file and the tensor.

mod common;

use common::{f32_bytes, message, write_f32_file, write_raw};
use oxformer_nn::{Error, SafeTensors};

/// A valid one-tensor header for `[2, 3]` f32 at the given offsets.
fn header(dtype: &str, shape: &str, offsets: &str) -> String {
    format!(r#"{{"w":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}}}"#)
}

#[test]
fn missing_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.safetensors");
    let error = SafeTensors::open_file(&path).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    assert!(error.to_string().contains("absent.safetensors"), "{error}");
}

#[test]
fn file_shorter_than_the_length_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.safetensors");
    std::fs::write(&path, [1u8, 2, 3]).unwrap();
    let text = message(SafeTensors::open_file(&path));
    assert!(
        text.contains("tiny.safetensors") && text.contains("3 bytes"),
        "{text}"
    );
}

#[test]
fn header_length_beyond_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.safetensors");
    let mut bytes = 1000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&path, bytes).unwrap();
    let text = message(SafeTensors::open_file(&path));
    assert!(text.contains("long.safetensors"), "{text}");
    assert!(
        text.contains("header length 1000 reaches beyond the end"),
        "{text}"
    );
}

#[test]
fn header_not_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.safetensors");
    write_raw(&path, "{not json", &[]);
    let text = message(SafeTensors::open_file(&path));
    assert!(
        text.contains("garbage.safetensors") && text.contains("not JSON"),
        "{text}"
    );
}

#[test]
fn header_json_but_not_an_object() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("list.safetensors");
    write_raw(&path, "[1, 2]", &[]);
    let text = message(SafeTensors::open_file(&path));
    assert!(text.contains("not an object"), "{text}");
}

#[test]
fn unknown_dtype_names_tensor_and_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dtype.safetensors");
    write_raw(&path, &header("F31", "[2,3]", "[0,24]"), &[0; 24]);
    let error = SafeTensors::open_file(&path).unwrap_err();
    assert!(
        matches!(error, Error::InvalidTensorEntry { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("dtype.safetensors") && text.contains("`w`"),
        "{text}"
    );
    assert!(text.contains("unknown dtype `F31`"), "{text}");
}

#[test]
fn offsets_not_matching_shape_times_dtype_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("size.safetensors");
    // [2, 3] f32 needs 24 bytes; the offsets claim 20.
    write_raw(&path, &header("F32", "[2,3]", "[0,20]"), &[0; 20]);
    let text = message(SafeTensors::open_file(&path));
    assert!(
        text.contains("`w`") && text.contains("hold 20 bytes"),
        "{text}"
    );
    assert!(text.contains("needs 24"), "{text}");
}

#[test]
fn offsets_reversed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reversed.safetensors");
    write_raw(&path, &header("F32", "[0]", "[8,0]"), &[0; 8]);
    let text = message(SafeTensors::open_file(&path));
    assert!(
        text.contains("`w`") && text.contains("end before they begin"),
        "{text}"
    );
}

#[test]
fn offsets_out_of_bounds_are_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bounds.safetensors");
    write_raw(&path, &header("F32", "[2,3]", "[0,24]"), &[0; 16]);
    let text = message(SafeTensors::open_file(&path));
    assert!(
        text.contains("bounds.safetensors") && text.contains("truncated"),
        "{text}"
    );
    assert!(text.contains("`w`"), "{text}");
}

#[test]
fn overlapping_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overlap.safetensors");
    let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                     "b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    write_raw(&path, header, &[0; 12]);
    let text = message(SafeTensors::open_file(&path));
    assert!(
        text.contains("`b`") && text.contains("overlap tensor `a`"),
        "{text}"
    );
}

#[test]
fn gap_between_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gap.safetensors");
    let header = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
                     "b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#;
    write_raw(&path, header, &[0; 12]);
    let text = message(SafeTensors::open_file(&path));
    assert!(
        text.contains("`b`") && text.contains("bytes 4..8"),
        "{text}"
    );
}

#[test]
fn trailing_bytes_after_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trailing.safetensors");
    write_raw(&path, &header("F32", "[2,3]", "[0,24]"), &[0; 28]);
    let text = message(SafeTensors::open_file(&path));
    assert!(text.contains("4 trailing bytes"), "{text}");
}

#[test]
fn truncated_file_written_by_the_serializer() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_f32_file(
        dir.path(),
        "cut.safetensors",
        &[("a", vec![4, 4]), ("b", vec![8])],
    );
    let bytes = std::fs::read(&path).unwrap();
    assert!(SafeTensors::open_file(&path).is_ok());
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    let text = message(SafeTensors::open_file(&path));
    assert!(
        text.contains("cut.safetensors") && text.contains("truncated"),
        "{text}"
    );
}

#[test]
fn corrupted_header_byte_in_a_serialized_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_f32_file(dir.path(), "flip.safetensors", &[("a", vec![3])]);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8] = b'x'; // the opening `{` of the header
    std::fs::write(&path, bytes).unwrap();
    let text = message(SafeTensors::open_file(&path));
    assert!(
        text.contains("flip.safetensors") && text.contains("not JSON"),
        "{text}"
    );
}

#[test]
fn bad_shape_and_offsets_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shape.safetensors");
    write_raw(&path, &header("F32", "[-1]", "[0,4]"), &[0; 4]);
    assert!(message(SafeTensors::open_file(&path)).contains("`shape`"));
    write_raw(&path, &header("F32", "[1]", "[0]"), &[0; 4]);
    assert!(message(SafeTensors::open_file(&path)).contains("`data_offsets`"));
    write_raw(
        &path,
        r#"{"w":{"shape":[1],"data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    assert!(message(SafeTensors::open_file(&path)).contains("no `dtype`"));
}

#[test]
fn integer_tensor_is_unsupported_as_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ids.safetensors");
    write_raw(&path, &header("I64", "[3]", "[0,24]"), &[0; 24]);
    let tensors = SafeTensors::open_file(&path).unwrap();
    let error = tensors.tensor("w").unwrap_err();
    assert!(matches!(error, Error::UnsupportedDtype { .. }), "{error:?}");
    assert!(error.to_string().contains("I64") && error.to_string().contains("`w`"));
}

#[test]
fn valid_hand_written_file_opens() {
    // The checks above must not reject a well-formed file written by hand.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.safetensors");
    let values = [1.5f32, -2.0, 3.25];
    write_raw(&path, &header("F32", "[3]", "[0,12]"), &f32_bytes(&values));
    let tensors = SafeTensors::open_file(&path).unwrap();
    assert_eq!(tensors.tensor("w").unwrap().as_slice(), values);
}
