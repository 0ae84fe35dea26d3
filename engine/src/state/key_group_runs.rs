//! Rows reordered by key group, so that each key group's rows are one slice.

use std::ops::Range;

use arrow::array::UInt32Array;
use arrow::compute::{concat_batches, interleave_record_batch, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};

/// Runs of one key group at least this long on average are copied as
/// slices; shorter ones row by row.
const MIN_MEAN_RUN: usize = 8;

/// The rows of one or more batches in key-group order: the rows of each key
/// group are one contiguous run of [`batch`](Self::batch).
///
/// Built with one copy of the rows, so that writing a namespace to keyed
/// state costs one copy however many key groups it spans; a run is a
/// zero-copy slice. Within a key group, rows keep their order. Batches that
/// come in key-group order already (as a hash exchange sends them) are
/// copied slice by slice, a few `memcpy`s per column and slice; others are
/// sorted by a counting sort and gathered row by row (`take`/`interleave`).
#[derive(Debug, Clone)]
pub struct KeyGroupRuns {
    /// The rows, grouped by key group, in ascending key-group order.
    pub batch: RecordBatch,
    /// `(key group, rows of batch)` of every key group with rows, ascending.
    pub runs: Vec<(usize, Range<usize>)>,
}

impl KeyGroupRuns {
    /// Groups the rows of `batches` (all of `schema`) by key group:
    /// `key_groups[b][i]` is the key group of row `i` of batch `b`.
    pub fn sort<K: AsRef<[usize]>>(
        schema: &SchemaRef,
        batches: &[RecordBatch],
        key_groups: &[K],
    ) -> Result<Self> {
        if batches.len() != key_groups.len()
            || batches
                .iter()
                .zip(key_groups)
                .any(|(b, k)| b.num_rows() != k.as_ref().len())
        {
            return Err(DataFusionError::Internal(
                "key groups do not match the rows they are of".into(),
            ));
        }
        let rows: usize = key_groups.iter().map(|k| k.as_ref().len()).sum();
        let all = key_groups.iter().flat_map(|k| k.as_ref());
        let (Some(&lowest), Some(&highest)) = (all.clone().min(), all.max()) else {
            return Ok(KeyGroupRuns {
                batch: RecordBatch::new_empty(schema.clone()),
                runs: Vec::new(),
            });
        };
        let non_empty: Vec<usize> = (0..batches.len())
            .filter(|b| batches[*b].num_rows() > 0)
            .collect();
        if lowest == highest && non_empty.len() == 1 {
            // One key group in one batch: already in order, no copy.
            return Ok(KeyGroupRuns {
                batch: batches[non_empty[0]].clone(),
                runs: vec![(lowest, 0..rows)],
            });
        }
        if let Some(sorted) = Self::concat_runs(schema, batches, key_groups, rows)? {
            return Ok(sorted);
        }
        // Counting sort: the first position of each key group, then every
        // row to its group's next position.
        let mut next = vec![0usize; highest - lowest + 1];
        for kg in key_groups.iter().flat_map(|k| k.as_ref()) {
            next[kg - lowest] += 1;
        }
        let mut runs = Vec::new();
        let mut start = 0;
        for (offset, count) in next.iter_mut().enumerate() {
            if *count > 0 {
                runs.push((lowest + offset, start..start + *count));
            }
            let n = *count;
            *count = start;
            start += n;
        }
        let batch = if non_empty.len() == 1 {
            let b = non_empty[0];
            let mut order = vec![0u32; rows];
            for (i, kg) in key_groups[b].as_ref().iter().enumerate() {
                order[next[kg - lowest]] = i as u32;
                next[kg - lowest] += 1;
            }
            take_record_batch(&batches[b], &UInt32Array::from(order))?
        } else {
            let mut order = vec![(0usize, 0usize); rows];
            for (b, kgs) in key_groups.iter().enumerate() {
                for (i, kg) in kgs.as_ref().iter().enumerate() {
                    order[next[kg - lowest]] = (b, i);
                    next[kg - lowest] += 1;
                }
            }
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            interleave_record_batch(&refs, &order)?
        };
        Ok(KeyGroupRuns { batch, runs })
    }

    /// The rows as slices of runs of one key group in `batches`, ordered by
    /// key group (then batch): `None` if the runs are too short for slices
    /// to beat a gather (fewer than [`MIN_MEAN_RUN`] rows on average).
    fn concat_runs<K: AsRef<[usize]>>(
        schema: &SchemaRef,
        batches: &[RecordBatch],
        key_groups: &[K],
        rows: usize,
    ) -> Result<Option<Self>> {
        // (key group, batch, first row, rows)
        let mut slices: Vec<(usize, usize, usize, usize)> = Vec::new();
        for (b, kgs) in key_groups.iter().enumerate() {
            let kgs = kgs.as_ref();
            let mut start = 0;
            for i in 1..=kgs.len() {
                if i == kgs.len() || kgs[i] != kgs[start] {
                    slices.push((kgs[start], b, start, i - start));
                    start = i;
                }
                if slices.len() * MIN_MEAN_RUN > rows {
                    return Ok(None);
                }
            }
        }
        slices.sort_unstable();
        let mut runs: Vec<(usize, Range<usize>)> = Vec::new();
        let mut end = 0;
        for &(kg, _, _, len) in &slices {
            match runs.last_mut() {
                Some((last, range)) if *last == kg => range.end += len,
                _ => runs.push((kg, end..end + len)),
            }
            end += len;
        }
        let parts: Vec<RecordBatch> = slices
            .iter()
            .map(|&(_, b, start, len)| batches[b].slice(start, len))
            .collect();
        let batch = concat_batches(schema, &parts)?;
        Ok(Some(KeyGroupRuns { batch, runs }))
    }

    /// Each key group with its rows (zero-copy slices), ascending.
    pub fn slices(&self) -> impl Iterator<Item = (usize, RecordBatch)> + '_ {
        self.runs
            .iter()
            .map(|(kg, rows)| (*kg, self.batch.slice(rows.start, rows.len())))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]))
    }

    fn batch(schema: &SchemaRef, ids: &[i64]) -> RecordBatch {
        let names: Vec<String> = ids.iter().map(|i| format!("row {i}")).collect();
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    fn ids(b: &RecordBatch) -> Vec<i64> {
        let col = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        col.values().to_vec()
    }

    #[test]
    fn groups_rows_of_several_batches_keeping_their_order() {
        let schema = schema();
        let batches = [
            batch(&schema, &[1, 2, 3, 4]),
            batch(&schema, &[]),
            batch(&schema, &[5, 6]),
        ];
        let kgs = [vec![7, 3, 7, 9], vec![], vec![3, 7]];
        let sorted = KeyGroupRuns::sort(&schema, &batches, &kgs).unwrap();
        let groups: Vec<(usize, Vec<i64>)> = sorted.slices().map(|(kg, b)| (kg, ids(&b))).collect();
        assert_eq!(groups, vec![(3, vec![2, 5]), (7, vec![1, 3, 6]), (9, vec![4])]);
        // The other columns moved with their rows.
        let names = sorted
            .batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(names.value(1), "row 5");
    }

    #[test]
    fn one_batch_of_one_key_group_is_not_copied_and_no_rows_make_no_runs() {
        let schema = schema();
        let one = batch(&schema, &[4, 5]);
        let sorted = KeyGroupRuns::sort(
            &schema,
            &[batch(&schema, &[]), one.clone()],
            &[vec![], vec![2, 2]],
        )
        .unwrap();
        assert_eq!(sorted.runs, vec![(2, 0..2)]);
        assert!(sorted.batch.column(0).to_data().ptr_eq(&one.column(0).to_data()));

        let sorted = KeyGroupRuns::sort::<Vec<usize>>(&schema, &[], &[]).unwrap();
        assert!(sorted.runs.is_empty());
        assert_eq!(sorted.batch.num_rows(), 0);
        assert!(KeyGroupRuns::sort(&schema, &[one], &[vec![1]]).is_err());
    }

    #[test]
    fn batches_in_key_group_order_are_copied_as_slices() {
        let schema = schema();
        let first: Vec<i64> = (0..40).collect();
        let second: Vec<i64> = (100..132).collect();
        let kgs_first: Vec<usize> = (0..40).map(|i| [1, 4, 9][i / 14]).collect();
        let kgs_second: Vec<usize> = (0..32).map(|i| [4, 7][i / 16]).collect();
        let batches = [batch(&schema, &first), batch(&schema, &second)];
        let sorted = KeyGroupRuns::sort(&schema, &batches, &[kgs_first, kgs_second]).unwrap();
        let groups: Vec<(usize, usize)> = sorted.runs.iter().map(|(kg, r)| (*kg, r.len())).collect();
        assert_eq!(groups, vec![(1, 14), (4, 30), (7, 16), (9, 12)]);
        let four: Vec<i64> = (14..28).chain(100..116).collect();
        let (_, rows) = sorted.slices().nth(1).unwrap();
        assert_eq!(ids(&rows), four, "batch order, then row order");
        let names = rows.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(names.value(14), "row 100");
    }

    #[test]
    fn one_batch_sorts_with_take() {
        let schema = schema();
        let sorted = KeyGroupRuns::sort(&schema, &[batch(&schema, &[1, 2, 3])], &[vec![5, 0, 5]]).unwrap();
        assert_eq!(sorted.runs, vec![(0, 0..1), (5, 1..3)]);
        assert_eq!(ids(&sorted.batch), vec![2, 1, 3]);
    }
}
