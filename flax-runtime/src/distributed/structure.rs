//! The check that every rank passes the same tree to the same collective, before the
//! collective runs.
//!
//! Collectives over ranks whose trees differ (a rank that built another model, a leaf of
//! another shape or dtype, a rank in another collective) would exchange buffers of different
//! sizes: Gloo then hangs until the timeout or, worse, sums unrelated values. So each tree
//! collective first gathers one 64-bit hash of the collective's name and the tree's key
//! paths, shapes and dtypes (8 bytes per rank); only when the hashes differ do the ranks
//! exchange the full descriptions, to name the first difference, and every rank returns the
//! same [`Error::TreeStructureMismatch`].

use super::ProcessGroup;
use crate::core::errors::{Error, Result};
use crate::tree::{KeyPath, Tree};
use std::fmt::Write;
use tch::{Device, Kind, Tensor};

/// FNV-1a, 64 bits: a hash that is the same in every process and every build (unlike std's
/// `DefaultHasher`, whose algorithm may change between Rust versions), so that two machines
/// running binaries built apart still agree.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl Write for Fnv {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

/// One leaf as the error message shows it: `params/Dense_0/kernel: Float[784, 256]`.
fn describe(path: &KeyPath<'_>, leaf: &Tensor) -> Result<String> {
    Ok(format!("{path}: {:?}{:?}", leaf.f_kind()?, leaf.size()))
}

/// The hash of what the ranks must agree on; hashes the same text as [`descriptions`]
/// without building it.
fn signature<T: Tree>(collective: &str, tree: &T) -> Result<u64> {
    let mut hash = Fnv::new();
    hash.bytes(collective.as_bytes());
    tree.visit_leaves([], &mut KeyPath::new(), &mut |path, leaf, []| {
        write!(hash, "\n{path}: {:?}{:?}", leaf.f_kind()?, leaf.size()).expect("hashing cannot fail");
        Ok(())
    })?;
    Ok(hash.0)
}

/// The lines that [`signature`] hashes: the collective, then one per leaf.
fn descriptions<T: Tree>(collective: &str, tree: &T) -> Result<Vec<String>> {
    let mut lines = vec![collective.to_owned()];
    tree.visit_leaves([], &mut KeyPath::new(), &mut |path, leaf, []| {
        lines.push(describe(path, leaf)?);
        Ok(())
    })?;
    Ok(lines)
}

impl ProcessGroup {
    /// Fails on every rank, with the first difference, unless every rank called `collective`
    /// with a tree of the same structure, shapes and dtypes.
    pub(super) fn check_same_tree<T: Tree>(&self, collective: &str, tree: &T) -> Result<()> {
        let hash = signature(collective, tree)?;
        let mine = Tensor::from_slice(&[i64::from_ne_bytes(hash.to_ne_bytes())]);
        let hashes = Vec::<i64>::try_from(self.all_gather_tensor(&mine)?.f_reshape([-1])?)?;
        if hashes.iter().all(|h| *h == hashes[0]) {
            return Ok(());
        }
        let all = self.gather_lines(&descriptions(collective, tree)?)?;
        Err(first_difference(&all))
    }

    /// Every rank's lines, in rank order (the rare path: sizes first, then padded bytes).
    fn gather_lines(&self, lines: &[String]) -> Result<Vec<Vec<String>>> {
        let text = lines.join("\n").into_bytes();
        let length = i64::try_from(text.len()).expect("a description fits in i64");
        let lengths =
            Vec::<i64>::try_from(self.all_gather_tensor(&Tensor::from_slice(&[length]))?.f_reshape([-1])?)?;
        let longest = lengths.iter().copied().max().unwrap_or(0);
        let padded = Tensor::f_zeros([longest], (Kind::Uint8, Device::Cpu))?;
        padded.f_narrow(0, 0, length)?.f_copy_(&Tensor::from_slice(&text))?;
        let gathered = self.all_gather_tensor(&padded)?;
        lengths
            .iter()
            .enumerate()
            .map(|(rank, &n)| {
                let bytes = Vec::<u8>::try_from(gathered.f_get(rank as i64)?.f_narrow(0, 0, n)?)?;
                Ok(String::from_utf8_lossy(&bytes).split('\n').map(str::to_owned).collect())
            })
            .collect()
    }
}

/// The first line where a rank differs from rank 0, as the error every rank returns.
fn first_difference(all: &[Vec<String>]) -> Error {
    let reference = &all[0];
    for (rank, lines) in all.iter().enumerate().skip(1) {
        let Some(i) = (0..reference.len().max(lines.len())).find(|&i| reference.get(i) != lines.get(i))
        else {
            continue;
        };
        let show = |line: Option<&String>| line.map_or("no such leaf".to_owned(), |l| format!("`{l}`"));
        let path = [reference.get(i), lines.get(i)]
            .into_iter()
            .flatten()
            .find_map(|line| line.split_once(": ").map(|(path, _)| path.to_owned()))
            .unwrap_or_else(|| ".".to_owned());
        let what = if i == 0 { "collective" } else { "leaf" };
        return Error::TreeStructureMismatch {
            path,
            message: format!(
                "ranks passed different trees to a collective: first differing {what}: rank 0 has {}, rank {rank} has {}",
                show(reference.get(i)),
                show(lines.get(i))
            ),
        };
    }
    Error::TreeStructureMismatch {
        path: ".".to_owned(),
        message: "ranks passed trees whose hashes differ but whose descriptions agree".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn the_first_difference_names_the_leaf_and_both_ranks_values() {
        let all = [
            lines(&["psum", "params/a: Float[2]", "params/b: Float[3]"]),
            lines(&["psum", "params/a: Float[2]", "params/b: Float[4]"]),
        ];
        let Error::TreeStructureMismatch { path, message } = first_difference(&all) else { panic!() };
        assert_eq!(path, "params/b");
        assert!(
            message.contains("rank 0 has `params/b: Float[3]`, rank 1 has `params/b: Float[4]`"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_leaf_and_another_collective_are_differences_too() {
        let all = [lines(&["psum", "a: Float[2]"]), lines(&["psum", "a: Float[2]"]), lines(&["psum"])];
        let Error::TreeStructureMismatch { path, message } = first_difference(&all) else { panic!() };
        assert_eq!(path, "a");
        assert!(message.contains("rank 2 has no such leaf"), "{message}");
        let all = [lines(&["psum", "a: Float[2]"]), lines(&["all_gather", "a: Float[2]"])];
        let Error::TreeStructureMismatch { message, .. } = first_difference(&all) else { panic!() };
        assert!(message.contains("first differing collective"), "{message}");
    }

    #[test]
    fn the_signature_sees_paths_shapes_dtypes_and_the_collective() {
        let t = |shape: &[i64], kind| Tensor::zeros(shape, (kind, Device::Cpu));
        let base = signature("psum", &vec![t(&[2, 3], Kind::Float)]).unwrap();
        assert_eq!(base, signature("psum", &vec![t(&[2, 3], Kind::Float)]).unwrap());
        assert_ne!(base, signature("psum", &vec![t(&[3, 2], Kind::Float)]).unwrap());
        assert_ne!(base, signature("psum", &vec![t(&[2, 3], Kind::Double)]).unwrap());
        assert_ne!(base, signature("pmean", &vec![t(&[2, 3], Kind::Float)]).unwrap());
        let named = |key: &str| std::collections::BTreeMap::from([(key.to_owned(), t(&[2], Kind::Float))]);
        assert_ne!(signature("psum", &named("a")).unwrap(), signature("psum", &named("b")).unwrap());
    }
}
