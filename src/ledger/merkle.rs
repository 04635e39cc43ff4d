//! Merkle tree over transaction hashes, laid out as in RFC 6962 (Certificate
//! Transparency): leaves and inner nodes are domain-separated so a leaf can
//! never be passed off as a node, and a single transaction can later be proven
//! in its block with a log-sized audit path.

use super::Hash32;

/// Hash of one leaf: `H(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash32 {
    Hash32::digest(&[&[0x00], data])
}

/// Hash of an inner node: `H(0x01 || left || right)`.
pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    Hash32::digest(&[&[0x01], &left.0, &right.0])
}

/// Merkle tree hash of already-hashed leaves. The empty tree hashes to `H()`.
///
/// The split point is the largest power of two below `n` (RFC 6962 §2.1), so
/// no leaf is duplicated and trees of different sizes never collide.
pub fn root(leaves: &[Hash32]) -> Hash32 {
    match leaves.len() {
        0 => Hash32::digest(&[]),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The largest power of two strictly less than `n` (for `n >= 2`).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The audit path proving leaf `index` is in the tree over `leaves`.
///
/// ```
/// use bank_ledger::ledger::merkle::{audit_path, leaf_hash, root, verify_path};
/// let leaves: Vec<_> = [b"a", b"b", b"c"].iter().map(|d| leaf_hash(*d)).collect();
/// let path = audit_path(&leaves, 2);
/// assert!(verify_path(leaves[2], 2, 3, &path, root(&leaves)));
/// ```
pub fn audit_path(leaves: &[Hash32], index: usize) -> Vec<Hash32> {
    let mut path = Vec::new();
    collect_path(leaves, index, &mut path);
    path
}

fn collect_path(leaves: &[Hash32], index: usize, path: &mut Vec<Hash32>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if index < k {
        collect_path(&leaves[..k], index, path);
        path.push(root(&leaves[k..]));
    } else {
        collect_path(&leaves[k..], index - k, path);
        path.push(root(&leaves[..k]));
    }
}

/// Checks an audit path (RFC 6962 §2.1.1) for leaf `index` of a tree of `size` leaves.
pub fn verify_path(leaf: Hash32, index: usize, size: usize, path: &[Hash32], root: Hash32) -> bool {
    if index >= size {
        return false;
    }
    fn walk(leaf: Hash32, index: usize, size: usize, path: &[Hash32]) -> Option<Hash32> {
        if size == 1 {
            return if path.is_empty() { Some(leaf) } else { None };
        }
        let (last, rest) = path.split_last()?;
        let k = split_point(size);
        if index < k {
            Some(node_hash(&walk(leaf, index, k, rest)?, last))
        } else {
            Some(node_hash(last, &walk(leaf, index - k, size - k, rest)?))
        }
    }
    walk(leaf, index, size, path) == Some(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash32> {
        (0..n).map(|i| leaf_hash(&(i as u64).to_be_bytes())).collect()
    }

    #[test]
    fn leaf_and_node_hashes_are_domain_separated() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        let mut concat = Vec::new();
        concat.extend_from_slice(&a.0);
        concat.extend_from_slice(&b.0);
        assert_ne!(node_hash(&a, &b), leaf_hash(&concat));
    }

    #[test]
    fn rfc6962_shape_for_three_leaves() {
        let l = leaves(3);
        let expected = node_hash(&node_hash(&l[0], &l[1]), &l[2]);
        assert_eq!(root(&l), expected);
    }

    #[test]
    fn empty_tree_is_hash_of_nothing() {
        assert_eq!(root(&[]), Hash32::digest(&[]));
    }

    proptest! {
        #[test]
        fn every_leaf_has_a_valid_audit_path(n in 1usize..70, pick in 0usize..70) {
            let l = leaves(n);
            let i = pick % n;
            let r = root(&l);
            let path = audit_path(&l, i);
            prop_assert!(verify_path(l[i], i, n, &path, r));
            // A different leaf at that position must not verify.
            prop_assert!(!verify_path(leaf_hash(b"forged"), i, n, &path, r));
        }

        #[test]
        fn changing_any_leaf_changes_the_root(n in 1usize..40, pick in 0usize..40) {
            let mut l = leaves(n);
            let before = root(&l);
            l[pick % n] = leaf_hash(b"tampered");
            prop_assert_ne!(before, root(&l));
        }

        #[test]
        fn trees_of_different_sizes_differ(n in 1usize..40) {
            prop_assert_ne!(root(&leaves(n)), root(&leaves(n + 1)));
        }
    }
}
