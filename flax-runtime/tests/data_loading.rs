//! `flax::data`: the IDX reader (every dtype, gzipped or not, typed errors on corrupt and
//! truncated files), the MNIST-format loader, and the batch iterator (JAX's permutation
//! order, drop / keep / pad-with-mask remainders, errors).

use flate2::write::GzEncoder;
use flate2::Compression;
use flax::data::{load_mnist, parse_idx, read_idx, Batches, Remainder, Split};
use flax::random::permutation;
use flax::tch::{Device, Kind, Tensor};
use flax::{Error, PRNGKey};
use std::io::Write;
use std::path::PathBuf;

/// An IDX file: magic, big-endian dimensions, then `data` (already big-endian).
fn idx(code: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, code, dims.len() as u8];
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend(data);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("flax-data-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn format_message(result: flax::Result<Tensor>) -> String {
    match result {
        Err(Error::Format { message, .. }) => message,
        other => panic!("expected a format error, got {other:?}"),
    }
}

#[test]
fn idx_reads_every_dtype_big_endian() {
    let t = parse_idx(&idx(0x08, &[2, 3], &[0, 1, 2, 253, 254, 255])).unwrap();
    assert_eq!((t.kind(), t.size()), (Kind::Uint8, vec![2, 3]));
    assert_eq!(Vec::<u8>::try_from(t.flatten(0, -1)).unwrap(), [0, 1, 2, 253, 254, 255]);

    let t = parse_idx(&idx(0x09, &[2], &[0xff, 0x05])).unwrap();
    assert_eq!(Vec::<i8>::try_from(&t).unwrap(), [-1, 5]);

    let t = parse_idx(&idx(0x0B, &[2], &[0x01, 0x02, 0xff, 0xfe])).unwrap();
    assert_eq!(Vec::<i16>::try_from(&t).unwrap(), [0x0102, -2]);

    let data: Vec<u8> = [-7i32, 70000].iter().flat_map(|v| v.to_be_bytes()).collect();
    assert_eq!(Vec::<i32>::try_from(&parse_idx(&idx(0x0C, &[2], &data)).unwrap()).unwrap(), [-7, 70000]);

    let data: Vec<u8> = [1.5f32, -0.25].iter().flat_map(|v| v.to_be_bytes()).collect();
    assert_eq!(Vec::<f32>::try_from(&parse_idx(&idx(0x0D, &[2], &data)).unwrap()).unwrap(), [1.5, -0.25]);

    let data: Vec<u8> = [1e300f64].iter().flat_map(|v| v.to_be_bytes()).collect();
    let t = parse_idx(&idx(0x0E, &[1, 1], &data)).unwrap();
    assert_eq!((t.kind(), t.double_value(&[0, 0])), (Kind::Double, 1e300));

    let scalar = parse_idx(&idx(0x08, &[], &[42])).unwrap();
    assert_eq!((scalar.dim(), scalar.int64_value(&[])), (0, 42));
}

#[test]
fn idx_reads_gzipped_files_by_content() {
    let plain = idx(0x08, &[3], &[7, 8, 9]);
    let t = parse_idx(&gzip(&plain)).unwrap();
    assert_eq!(Vec::<u8>::try_from(&t).unwrap(), [7, 8, 9]);
}

#[test]
fn corrupt_and_truncated_idx_files_are_format_errors() {
    assert!(format_message(parse_idx(&[0, 0, 8])).contains("truncated in the magic number"));
    assert!(format_message(parse_idx(&[1, 0, 8, 1, 0, 0, 0, 1, 5])).contains("bad magic number"));
    assert!(format_message(parse_idx(&idx(0x0A, &[1], &[0]))).contains("unknown dtype code 0x0a"));
    assert!(format_message(parse_idx(&[0, 0, 8, 2, 0, 0, 0, 1])).contains("truncated in the dimensions"));
    assert!(format_message(parse_idx(&idx(0x08, &[2, 2], &[1, 2, 3]))).contains("the data is truncated"));
    assert!(format_message(parse_idx(&idx(0x0C, &[1], &[0, 0, 0, 1, 9]))).contains("longer than its header"));
    assert!(format_message(parse_idx(&idx(0x0D, &[u32::MAX, u32::MAX, u32::MAX], &[]))).contains("too large"));
    let gz = gzip(&idx(0x08, &[4], &[1, 2, 3, 4]));
    let err = parse_idx(&gz[..gz.len() - 6]).unwrap_err();
    assert!(matches!(err, Error::Format { format: "gzip", .. }), "{err}");
}

#[test]
fn read_idx_names_the_file_in_its_errors() {
    let dir = TempDir::new("read");
    let path = dir.0.join("bad-idx");
    std::fs::write(&path, idx(0x08, &[5], &[1])).unwrap();
    let message = read_idx(&path).unwrap_err().to_string();
    assert!(message.contains("bad-idx") && message.contains("truncated"), "{message}");
    let missing = read_idx(dir.0.join("absent")).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }), "{missing}");
}

#[test]
fn load_mnist_reads_a_directory_of_idx_files() {
    let dir = TempDir::new("mnist");
    // Train split gzipped, test split plain: both spellings are found.
    let pixels: Vec<u8> = (0..2 * 2 * 3).map(|i| (i * 20) as u8).collect();
    std::fs::write(dir.0.join("train-images-idx3-ubyte.gz"), gzip(&idx(0x08, &[2, 2, 3], &pixels))).unwrap();
    std::fs::write(dir.0.join("train-labels-idx1-ubyte.gz"), gzip(&idx(0x08, &[2], &[3, 9]))).unwrap();
    std::fs::write(dir.0.join("t10k-images-idx3-ubyte"), idx(0x08, &[1, 2, 3], &pixels[..6])).unwrap();
    std::fs::write(dir.0.join("t10k-labels-idx1-ubyte"), idx(0x08, &[2], &[1, 2])).unwrap();

    let train = load_mnist(&dir.0, Split::Train).unwrap();
    assert_eq!((train.image.size(), train.image.kind()), (vec![2, 2, 3, 1], Kind::Float));
    assert!((train.image.double_value(&[1, 1, 2, 0]) - 220.0 / 255.0).abs() < 1e-7);
    assert_eq!(Vec::<i64>::try_from(&train.label).unwrap(), [3, 9]);
    assert_eq!(train.len(), 2);
    assert_eq!(train.take(1).unwrap().len(), 1);

    let err = load_mnist(&dir.0, Split::Test).unwrap_err().to_string();
    assert!(err.contains("1 images but 2 labels"), "{err}");
    let err = load_mnist(dir.0.join("nowhere"), Split::Train).unwrap_err().to_string();
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");
}

fn data(n: i64) -> (Tensor, Tensor) {
    let x = Tensor::arange(n * 2, (Kind::Float, Device::Cpu)).reshape([n, 2]);
    (x, Tensor::arange(n, (Kind::Int64, Device::Cpu)))
}

fn labels_of(batches: Batches<'_, (Tensor, Tensor)>) -> Vec<Vec<i64>> {
    batches.map(|b| Vec::<i64>::try_from(&b.unwrap().data.1).unwrap()).collect()
}

#[test]
fn shuffled_batches_follow_jax_permutation() {
    let data = data(10);
    let key = PRNGKey::new(3).fold_in(2);
    let perm = Vec::<i64>::try_from(permutation(key, 10, Device::Cpu).unwrap()).unwrap();
    let batches = Batches::new(&data, 3).unwrap().shuffle(key).unwrap();
    assert_eq!(batches.len(), 3);
    let got = labels_of(batches);
    assert_eq!(got, [perm[0..3].to_vec(), perm[3..6].to_vec(), perm[6..9].to_vec()]);
    // The features travel with their labels.
    let first = Batches::new(&data, 3).unwrap().shuffle(key).unwrap().next().unwrap().unwrap();
    let expected = data.0.index_select(0, &Tensor::from_slice(&perm[0..3]));
    assert!(first.data.0.equal(&expected));
    assert!(first.mask.is_none());
}

#[test]
fn remainders_are_dropped_kept_or_padded_with_a_mask() {
    let data = data(5);
    assert_eq!(labels_of(Batches::new(&data, 2).unwrap()), [vec![0, 1], vec![2, 3]]);
    let kept = Batches::new(&data, 2).unwrap().remainder(Remainder::Keep);
    assert_eq!(kept.len(), 3);
    assert_eq!(labels_of(kept), [vec![0, 1], vec![2, 3], vec![4]]);

    let padded: Vec<_> =
        Batches::new(&data, 2).unwrap().remainder(Remainder::Pad).map(Result::unwrap).collect();
    assert_eq!(padded.len(), 3);
    let last = &padded[2];
    assert_eq!(last.data.0.size(), [2, 2]);
    assert_eq!(Vec::<f32>::try_from(last.data.0.flatten(0, -1)).unwrap(), [8.0, 9.0, 0.0, 0.0]);
    assert_eq!(Vec::<i64>::try_from(&last.data.1).unwrap(), [4, 0]);
    assert_eq!(Vec::<bool>::try_from(last.mask.as_ref().unwrap()).unwrap(), [true, false]);
    assert_eq!(Vec::<bool>::try_from(padded[0].mask.as_ref().unwrap()).unwrap(), [true, true]);
    // Fewer examples than one batch: dropped entirely, or one padded batch.
    assert_eq!(Batches::new(&data, 8).unwrap().count(), 0);
    assert_eq!(Batches::new(&data, 8).unwrap().remainder(Remainder::Pad).count(), 1);
}

#[test]
fn batching_rejects_what_it_cannot_batch() {
    let data = data(4);
    assert!(matches!(Batches::new(&data, 0), Err(Error::Value(_))));
    let ragged =
        (Tensor::zeros([4, 2], (Kind::Float, Device::Cpu)), Tensor::zeros([3], (Kind::Int64, Device::Cpu)));
    let err = Batches::new(&ragged, 2).unwrap_err().to_string();
    assert!(err.contains("same leading dimension"), "{err}");
    let scalar = Tensor::from(1.0f32);
    assert!(matches!(Batches::new(&scalar, 1), Err(Error::Value(_))));
    let empty: Vec<Tensor> = Vec::new();
    assert!(matches!(Batches::new(&empty, 1), Err(Error::Value(_))));
}
