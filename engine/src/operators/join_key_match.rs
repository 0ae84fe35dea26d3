//! How the in-memory join hashes its keys and tells the rows with equal
//! keys apart from the others a hash names: a column at a time, with
//! DataFusion's hashing and Arrow's comparison kernels, as DataFusion's hash
//! join does, instead of encoding every key in Arrow's row format.

use std::hash::BuildHasher;

use arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array, new_null_array};
use arrow::compute::kernels::cmp::eq;
use arrow::compute::{and, take};
use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::common::hash_utils::{RandomState, create_hashes};

use super::join::KeyEncoder;

/// Hashes of join keys and equality of candidate pairs, for one join.
///
/// Key columns are those of [`super::join::JoinSpec::key_columns`]: of one
/// type per key on both inputs, so equal keys are equal values. Where a key
/// type has no hash or comparison kernel (nested types), keys are compared
/// and hashed in Arrow's row format instead.
///
/// # Invariants
///
/// Equal keys have equal hashes. The hashes are not the exchange's (another
/// seed): every key a subtask sees shares its key-group range, which would
/// leave parts of a table indexed by the exchange's hash unused. They are
/// not stored in checkpoints, so they need not be stable across versions.
#[derive(Debug)]
pub struct KeyMatcher {
    /// Whether every key type has DataFusion's hash and Arrow's `eq`.
    by_column: bool,
    hasher: RandomState,
}

impl KeyMatcher {
    pub fn new(encoder: &KeyEncoder) -> Self {
        let by_column = encoder.types().iter().all(has_kernels);
        KeyMatcher {
            by_column,
            hasher: RandomState::with_seed(0x6a6f_696e_6b65_7973),
        }
    }

    /// The hash of every row's key.
    pub fn hashes(&self, encoder: &KeyEncoder, keys: &[ArrayRef]) -> Result<Vec<u64>> {
        let n = keys.first().map_or(0, |k| k.len());
        if self.by_column {
            let mut hashes = vec![0; n];
            create_hashes(keys, &self.hasher, &mut hashes)?;
            return Ok(hashes);
        }
        let rows = encoder.rows(keys)?;
        Ok(rows.iter().map(|r| self.hasher.hash_one(r.data())).collect())
    }

    /// Per candidate pair `p`, whether the key of row `rows[p]` of `keys`
    /// equals the key of row `p` of `candidates` (keys without NULLs).
    pub fn equal(
        &self,
        encoder: &KeyEncoder,
        keys: &[ArrayRef],
        rows: &[u32],
        candidates: &[ArrayRef],
    ) -> Result<BooleanArray> {
        if self.by_column {
            let at = UInt32Array::from(rows.to_vec());
            let mut equal: Option<BooleanArray> = None;
            for (key, candidate) in keys.iter().zip(candidates) {
                let column = eq(&take(key.as_ref(), &at, None)?, candidate)?;
                equal = Some(match equal {
                    Some(e) => and(&e, &column)?,
                    None => column,
                });
            }
            return Ok(equal.unwrap_or_else(|| BooleanArray::from(vec![true; rows.len()])));
        }
        let (keys, candidates) = (encoder.rows(keys)?, encoder.rows(candidates)?);
        Ok(rows
            .iter()
            .enumerate()
            .map(|(p, &r)| Some(keys.row(r as usize) == candidates.row(p)))
            .collect())
    }
}

/// Whether DataFusion hashes and Arrow's `eq` compares columns of type `t`.
fn has_kernels(t: &DataType) -> bool {
    let probe = new_null_array(t, 1);
    let mut hashes = vec![0; 1];
    !t.is_nested()
        && create_hashes(
            std::slice::from_ref(&probe),
            &RandomState::with_seed(0),
            &mut hashes,
        )
        .is_ok()
        && eq(&probe, &probe).is_ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray, StructArray};
    use arrow::datatypes::{Field, Fields};

    use super::*;

    /// Hashes and equality of keys `(a, b)` of `left` against `right`, row by
    /// row, under `encoder`.
    fn check(encoder: &KeyEncoder, left: &[ArrayRef], right: &[ArrayRef], expected: &[bool]) {
        let matcher = KeyMatcher::new(encoder);
        let (l, r) = (
            matcher.hashes(encoder, left).unwrap(),
            matcher.hashes(encoder, right).unwrap(),
        );
        let rows: Vec<u32> = (0..expected.len() as u32).collect();
        let equal = matcher.equal(encoder, left, &rows, right).unwrap();
        for (p, &e) in expected.iter().enumerate() {
            assert_eq!(equal.value(p), e, "pair {p}");
            if e {
                assert_eq!(l[p], r[p], "equal keys, equal hashes: pair {p}");
            }
        }
        // Rows picked out of order: row 1 of the left against each right row.
        let equal = matcher
            .equal(
                encoder,
                left,
                &[1, 1],
                &[right[0].slice(0, 2), right[1].slice(0, 2)],
            )
            .unwrap();
        assert_eq!(equal.value(1), expected[1]);
    }

    #[test]
    fn flat_keys_by_column_nested_keys_by_row_format() {
        let ints = |v: &[i64]| Arc::new(Int64Array::from(v.to_vec())) as ArrayRef;
        let strs = |v: &[&str]| Arc::new(StringArray::from(v.to_vec())) as ArrayRef;
        let flat = KeyEncoder::new(vec![DataType::Int64, DataType::Utf8]).unwrap();
        assert!(KeyMatcher::new(&flat).by_column);
        check(
            &flat,
            &[ints(&[1, 2, 3]), strs(&["x", "y", "z"])],
            &[ints(&[1, 2, 4]), strs(&["x", "q", "z"])],
            &[true, false, false],
        );

        let fields = Fields::from(vec![Field::new("v", DataType::Int64, false)]);
        let nested = |v: &[i64]| Arc::new(StructArray::new(fields.clone(), vec![ints(v)], None)) as ArrayRef;
        let encoder = KeyEncoder::new(vec![DataType::Struct(fields.clone()), DataType::Int64]).unwrap();
        assert!(!KeyMatcher::new(&encoder).by_column);
        check(
            &encoder,
            &[nested(&[1, 2, 3]), ints(&[7, 8, 9])],
            &[nested(&[1, 2, 5]), ints(&[7, 0, 9])],
            &[true, false, false],
        );
    }
}
