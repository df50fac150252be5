//! Class-name lookup and the IDX loader's validation.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use flate2::{Compression, write::GzEncoder};
use flowgrad_models::fashion::{DEFAULT_DIR, FashionError, FashionMnist, SIDE, Split, to_padded};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowgrad-fashion-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_gz(path: &Path, bytes: &[u8]) {
    let mut enc = GzEncoder::new(std::fs::File::create(path).unwrap(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap();
}

fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

#[test]
fn valid_small_files_load_and_pad_with_black() {
    let dir = scratch("valid");
    let pixels = vec![255u8; 2 * 28 * 28];
    write_gz(&dir.join("i.gz"), &idx(0x803, &[2, 28, 28], &pixels));
    write_gz(&dir.join("l.gz"), &idx(0x801, &[2], &[4, 9]));
    let data = FashionMnist::load_files(&dir.join("i.gz"), &dir.join("l.gz")).unwrap();
    assert_eq!(data.len(), 2);
    let img = data.images::<Flex>(&[1], &Default::default());
    assert_eq!(img.dims(), [1, 1, SIDE, SIDE]);
    let v: Vec<f32> = img.into_data().to_vec().unwrap();
    assert_eq!(v[0], -1.0, "corner is padding");
    assert_eq!(v[2 * SIDE + 2], 1.0, "first real pixel is white");
    assert_eq!(v.iter().filter(|&&x| x == -1.0).count(), SIDE * SIDE - 28 * 28);
}

#[test]
fn corrupt_files_are_rejected_clearly() {
    let dir = scratch("corrupt");
    let labels = dir.join("l.gz");
    write_gz(&labels, &idx(0x801, &[1], &[0]));
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("magic", idx(0x801, &[1, 28, 28], &[0; 784]), "magic number"),
        ("truncated", idx(0x803, &[1, 28, 28], &[0; 700]), "header announces 784"),
        ("dims", idx(0x803, &[1, 27, 29], &[0; 783]), "item dimensions"),
        ("short", vec![0, 0, 8], "shorter than"),
    ];
    for (name, bytes, needle) in cases {
        let path = dir.join(format!("{name}.gz"));
        write_gz(&path, &bytes);
        let err = FashionMnist::load_files(&path, &labels).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, FashionError::Format { .. }), "{name}: {msg}");
        assert!(msg.contains(needle) && msg.contains(&*path.to_string_lossy()), "{name}: {msg}");
    }
    let not_gzip = dir.join("plain.gz");
    std::fs::write(&not_gzip, idx(0x803, &[1, 28, 28], &[0; 784])).unwrap();
    assert!(FashionMnist::load_files(&not_gzip, &labels).unwrap_err().to_string().contains("gzip"));
    let missing = FashionMnist::load_files(&dir.join("absent.gz"), &labels).unwrap_err();
    assert!(matches!(missing, FashionError::Io { .. }));
}

#[test]
fn label_out_of_range_and_count_mismatch_are_rejected() {
    let dir = scratch("labels");
    write_gz(&dir.join("i.gz"), &idx(0x803, &[1, 28, 28], &[0; 784]));
    write_gz(&dir.join("bad.gz"), &idx(0x801, &[1], &[10]));
    write_gz(&dir.join("two.gz"), &idx(0x801, &[2], &[1, 2]));
    let bad = FashionMnist::load_files(&dir.join("i.gz"), &dir.join("bad.gz")).unwrap_err();
    assert!(bad.to_string().contains("label 10 out of range"), "{bad}");
    let two = FashionMnist::load_files(&dir.join("i.gz"), &dir.join("two.gz")).unwrap_err();
    assert!(matches!(two, FashionError::CountMismatch { images: 1, labels: 2 }), "{two}");
}

#[test]
fn installed_test_split_loads() {
    let data = FashionMnist::load(Path::new(DEFAULT_DIR), Split::Test).unwrap();
    assert_eq!(data.len(), 10_000);
    assert!(data.labels.iter().all(|&l| l < 10));
    let padded = to_padded(data.raw(0));
    assert!(padded.iter().all(|v| (-1.0..=1.0).contains(v)));
}
