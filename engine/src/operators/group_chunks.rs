//! One row per group, in columns: the state of a `GROUP BY` held as Arrow
//! batches ("chunks") that are only ever appended, never changed in place.

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::interleave;
use arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};

/// Chunks of one level merged into one of the next level once there are
/// this many.
const FANOUT: usize = 8;

/// Rows that may be superseded before everything is merged into one chunk:
/// at most the live rows plus this.
const SLACK_ROWS: usize = 4096;

/// The current row of every group, in chunks of rows.
///
/// Groups are numbered densely (0, 1, ...) by the caller. Updating groups
/// appends one chunk with their new rows ([`push`](Self::push)); the rows
/// they replace become garbage. As in a log-structured merge tree, chunks
/// of a level are merged into one of the next level when there are
/// [`FANOUT`] of them, and everything is merged into one chunk when the
/// garbage outgrows the live rows, so a group's update costs amortized
/// O(log n) row copies and memory stays within about twice the live rows.
///
/// # Invariants
///
/// `locations[g]` names the row of group `g`, if it has one; a chunk's
/// `live` counts the rows that some location names, and a chunk whose
/// `live` drops to 0 is freed. Every chunk has the schema given at
/// creation.
#[derive(Debug)]
pub struct GroupChunks {
    schema: SchemaRef,
    locations: Vec<Option<Location>>,
    chunks: Vec<Option<Chunk>>,
    free_chunks: Vec<u32>,
    /// Chunk ids per level.
    levels: Vec<Vec<u32>>,
    /// Groups with a row.
    live: usize,
    /// Rows in all chunks.
    rows: usize,
}

/// A chunk's position among the chunks handed to `interleave`, and a row.
type ChunkRow = (usize, usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Location {
    chunk: u32,
    row: u32,
}

#[derive(Debug)]
struct Chunk {
    batch: RecordBatch,
    /// The group of each row.
    groups: Vec<u32>,
    /// Rows still current for their group.
    live: usize,
    level: usize,
}

impl GroupChunks {
    pub fn new(schema: SchemaRef) -> Self {
        GroupChunks {
            schema,
            locations: Vec::new(),
            chunks: Vec::new(),
            free_chunks: Vec::new(),
            levels: Vec::new(),
            live: 0,
            rows: 0,
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Whether group `group` has a row.
    pub fn contains(&self, group: u32) -> bool {
        self.locations.get(group as usize).is_some_and(Option::is_some)
    }

    /// Groups with a row.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Columns `columns` of the rows of `groups` (each must have one), in
    /// that order.
    pub fn gather(&self, groups: &[u32], columns: &[usize]) -> Result<Vec<ArrayRef>> {
        let (positions, indices) = self.indices_of(groups)?;
        columns
            .iter()
            .map(|&c| {
                let arrays: Vec<&dyn Array> = positions
                    .iter()
                    .map(|&chunk| self.chunk(chunk).batch.column(c).as_ref())
                    .collect();
                Ok(interleave(&arrays, &indices)?)
            })
            .collect()
    }

    /// The rows of `groups` as one batch of every column.
    pub fn gather_batch(&self, groups: &[u32]) -> Result<RecordBatch> {
        let all: Vec<usize> = (0..self.schema.fields().len()).collect();
        Ok(RecordBatch::try_new(
            self.schema.clone(),
            self.gather(groups, &all)?,
        )?)
    }

    /// The groups that have a row, in group order.
    pub fn groups(&self) -> Vec<u32> {
        (0..self.locations.len() as u32)
            .filter(|&g| self.contains(g))
            .collect()
    }

    /// The chunks holding the rows of `groups` and, per group, which of
    /// them and which row: `interleave`'s arguments.
    fn indices_of(&self, groups: &[u32]) -> Result<(Vec<u32>, Vec<ChunkRow>)> {
        let mut positions: Vec<u32> = Vec::new();
        let mut position_of: Vec<u32> = vec![u32::MAX; self.chunks.len()];
        let mut indices = Vec::with_capacity(groups.len());
        for &g in groups {
            let at = self
                .locations
                .get(g as usize)
                .copied()
                .flatten()
                .ok_or_else(|| DataFusionError::Internal(format!("group {g} has no row")))?;
            let p = &mut position_of[at.chunk as usize];
            if *p == u32::MAX {
                *p = positions.len() as u32;
                positions.push(at.chunk);
            }
            indices.push((*p as usize, at.row as usize));
        }
        Ok((positions, indices))
    }

    fn chunk(&self, id: u32) -> &Chunk {
        self.chunks[id as usize].as_ref().expect("a live chunk id")
    }

    /// Makes row `i` of `batch` the row of group `groups[i]` (the last one,
    /// if a group repeats), replacing the rows they had.
    pub fn push(&mut self, groups: Vec<u32>, batch: RecordBatch) -> Result<()> {
        if groups.len() != batch.num_rows() {
            return Err(DataFusionError::Internal(
                "a chunk's groups do not match its rows".into(),
            ));
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = if batch.schema() == self.schema {
            batch
        } else {
            RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?
        };
        self.add_chunk(groups, batch, 0);
        self.merge_levels()?;
        if self.rows > 2 * self.live + SLACK_ROWS {
            let all: Vec<u32> = self
                .chunks
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.as_ref().map(|_| i as u32))
                .collect();
            let level = self.levels.len().saturating_sub(1);
            self.merge(&all, level)?;
        }
        Ok(())
    }

    fn add_chunk(&mut self, groups: Vec<u32>, batch: RecordBatch, level: usize) {
        let rows = groups.len();
        let chunk = Chunk {
            batch,
            groups,
            live: 0,
            level,
        };
        let id = match self.free_chunks.pop() {
            Some(id) => {
                self.chunks[id as usize] = Some(chunk);
                id
            }
            None => {
                self.chunks.push(Some(chunk));
                (self.chunks.len() - 1) as u32
            }
        };
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        self.levels[level].push(id);
        self.rows += rows;
        for row in 0..rows {
            let group = self.chunk(id).groups[row] as usize;
            if self.locations.len() <= group {
                self.locations.resize(group + 1, None);
            }
            self.chunks[id as usize].as_mut().expect("just added").live += 1;
            match self.locations[group].replace(Location {
                chunk: id,
                row: row as u32,
            }) {
                // (Before the count of `id` may drop: a group may repeat in it.)
                Some(old) => self.release(old.chunk),
                None => self.live += 1,
            }
        }
    }

    /// One row of chunk `id` is no longer current; frees the chunk if none is.
    fn release(&mut self, id: u32) {
        let chunk = self.chunks[id as usize].as_mut().expect("a live chunk id");
        chunk.live -= 1;
        if chunk.live == 0 {
            let chunk = self.chunks[id as usize].take().expect("a live chunk id");
            self.rows -= chunk.groups.len();
            self.levels[chunk.level].retain(|&c| c != id);
            self.free_chunks.push(id);
        }
    }

    fn merge_levels(&mut self) -> Result<()> {
        let mut level = 0;
        while level < self.levels.len() {
            if self.levels[level].len() >= FANOUT {
                let ids = self.levels[level].clone();
                self.merge(&ids, level + 1)?;
            }
            level += 1;
        }
        Ok(())
    }

    /// Replaces chunks `ids` by one chunk of their live rows at `level`.
    fn merge(&mut self, ids: &[u32], level: usize) -> Result<()> {
        let mut groups = Vec::new();
        for &id in ids {
            let chunk = self.chunk(id);
            groups.extend(chunk.groups.iter().enumerate().filter_map(|(row, &g)| {
                let current = self.locations[g as usize]
                    == Some(Location {
                        chunk: id,
                        row: row as u32,
                    });
                current.then_some(g)
            }));
        }
        if groups.is_empty() {
            return Ok(());
        }
        let batch = self.gather_batch(&groups)?;
        // The merged chunk takes over every row: the old chunks free themselves.
        self.add_chunk(groups, batch, level);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(schema: &SchemaRef, values: &[i64]) -> RecordBatch {
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    #[test]
    fn every_group_reads_its_last_row_however_chunks_merge() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let mut chunks = GroupChunks::new(schema.clone());
        let mut expected: Vec<Option<i64>> = vec![None; 1000];
        let mut x: u64 = 7;
        for step in 0..3000i64 {
            // A few pseudo-random groups per step, sometimes repeating.
            let n = (step % 5 + 1) as usize;
            let mut groups = Vec::new();
            let mut values = Vec::new();
            for i in 0..n {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let g = ((x >> 33) % if step < 1500 { 1000 } else { 50 }) as u32;
                groups.push(g);
                values.push(step * 10 + i as i64);
                expected[g as usize] = Some(step * 10 + i as i64);
            }
            chunks.push(groups, batch(&schema, &values)).unwrap();
            assert!(chunks.rows <= 2 * chunks.live + SLACK_ROWS + n);
        }
        let groups = chunks.groups();
        let want: Vec<u32> = (0..1000).filter(|&g| expected[g as usize].is_some()).collect();
        assert_eq!(groups, want);
        assert_eq!(chunks.live(), want.len());
        let got = chunks.gather(&groups, &[0]).unwrap();
        let got = got[0].as_any().downcast_ref::<Int64Array>().unwrap();
        let want: Int64Array = want.iter().map(|&g| expected[g as usize]).collect();
        assert_eq!(got, &want);
        // Levels stay small, and chunks that hold no current row are freed.
        assert!(chunks.levels.iter().all(|l| l.len() < FANOUT));
        assert!(chunks.chunks.iter().flatten().all(|c| c.live > 0));
    }
}
