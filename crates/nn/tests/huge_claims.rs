//! Files that claim more than they hold (a header length of 2^60 bytes, a tensor of 2^62 bytes,
//! an index with a total size of 2^60) are refused without allocating what they claim: the
//! largest single allocation while opening each is measured by a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use oxformer_nn::SafeTensors;

thread_local! {
    /// The largest single allocation of this thread since the last reset.
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

struct Peak;

// SAFETY: every call is forwarded to the system allocator unchanged; the thread-local is
// const-initialised and has no destructor, so reading it never allocates.
unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        PEAK.with(|peak| peak.set(peak.get().max(layout.size())));
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` came from `System` with this layout.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        PEAK.with(|peak| peak.set(peak.get().max(new_size)));
        // SAFETY: `pointer` came from `System` with `layout`.
        unsafe { System.realloc(pointer, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Peak = Peak;

/// The error of opening `bytes` as a safetensors file, and the largest allocation it made.
fn open_bytes(bytes: &[u8]) -> (String, usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, bytes).unwrap();
    PEAK.with(|peak| peak.set(0));
    let result = SafeTensors::open_file(&path);
    let peak = PEAK.with(Cell::get);
    let error = match result {
        Ok(_) => panic!("a file claiming more than it holds was accepted"),
        Err(error) => error.to_string(),
    };
    (error, peak)
}

fn with_header(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// A bound no claim of these files justifies, far above what reading them takes.
const SMALL: usize = 1 << 20;

#[test]
fn a_header_length_of_2_to_the_60_is_refused_without_allocating_it() {
    let mut bytes = (1u64 << 60).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    let (error, peak) = open_bytes(&bytes);
    assert!(error.contains("header"), "{error}");
    assert!(peak < SMALL, "allocated {peak} bytes");
}

#[test]
fn a_four_byte_file_is_refused_without_allocating() {
    let (error, peak) = open_bytes(&[0xff, 0xff, 0xff, 0x0f]);
    assert!(error.contains("model.safetensors"), "{error}");
    assert!(peak < SMALL, "allocated {peak} bytes");
}

#[test]
fn a_tensor_of_2_to_the_62_bytes_in_a_small_file_is_refused_without_allocating_it() {
    let shape = 1u64 << 30;
    let header = format!(
        r#"{{"w":{{"dtype":"F32","shape":[{shape},{shape}],"data_offsets":[0,{}]}}}}"#,
        (1u128 << 62).min(u64::MAX as u128)
    );
    let (error, peak) = open_bytes(&with_header(&header, &[0; 16]));
    assert!(error.contains('w'), "{error}");
    assert!(peak < SMALL, "allocated {peak} bytes");

    // offsets that agree with the file but not with a shape of 2^62 elements
    let header =
        format!(r#"{{"w":{{"dtype":"F32","shape":[{shape},{shape}],"data_offsets":[0,16]}}}}"#);
    let (error, peak) = open_bytes(&with_header(&header, &[0; 16]));
    assert!(error.contains("`w`"), "{error}");
    assert!(peak < SMALL, "allocated {peak} bytes");
}

#[test]
fn a_shard_index_claiming_2_to_the_60_bytes_allocates_no_more_than_its_shards() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/xlmr-qa-sharded");
    let dir = tempfile::tempdir().unwrap();
    let mut index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture.join(oxformer_nn::WEIGHTS_INDEX_FILE)).unwrap(),
    )
    .unwrap();
    index["metadata"]["total_size"] = serde_json::Value::from(1u64 << 60);
    std::fs::write(
        dir.path().join(oxformer_nn::WEIGHTS_INDEX_FILE),
        index.to_string(),
    )
    .unwrap();
    for shard in 1..=3 {
        let name = format!("model-0000{shard}-of-00003.safetensors");
        std::fs::copy(fixture.join(&name), dir.path().join(&name)).unwrap();
    }
    PEAK.with(|peak| peak.set(0));
    let result = SafeTensors::open_folder(dir.path());
    let peak = PEAK.with(Cell::get);
    // total_size is informative (transformers does not check it); what matters is the bound
    drop(result);
    assert!(peak < SMALL, "allocated {peak} bytes");
}
