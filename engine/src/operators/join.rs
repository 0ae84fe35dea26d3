//! What every stream join shares: the join types, the two inputs, the
//! equality keys as comparable bytes, and the assembly of output rows (joined
//! pairs and NULL-padded unmatched rows).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{DataFusionError, Result};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;

use super::aggregates::{evaluate_exprs, nulls_as_false};

/// Which rows of a join are kept without a match (SQL's join types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinType {
    Inner,
    /// Unmatched left rows too, with NULLs for the right columns.
    Left,
    /// Unmatched right rows too, with NULLs for the left columns.
    Right,
    /// Unmatched rows of both sides.
    Full,
}

impl JoinType {
    /// Whether unmatched rows of `side` are part of the result.
    pub fn preserves(self, side: Side) -> bool {
        match side {
            Side::Left => matches!(self, JoinType::Left | JoinType::Full),
            Side::Right => matches!(self, JoinType::Right | JoinType::Full),
        }
    }
}

impl std::fmt::Display for JoinType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JoinType::Inner => "InnerJoin",
            JoinType::Left => "LeftOuterJoin",
            JoinType::Right => "RightOuterJoin",
            JoinType::Full => "FullOuterJoin",
        })
    }
}

/// An input of a two-input join; its value is the input index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    Left = 0,
    Right = 1,
}

impl Side {
    /// The side of input `input` (0 is left).
    pub fn of_input(input: usize) -> Side {
        if input == 0 { Side::Left } else { Side::Right }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }
}

/// The equality condition and output layout of a join, shared by the
/// interval join and the regular join.
#[derive(Debug)]
pub struct JoinSpec {
    pub join_type: JoinType,
    /// Equality keys of the left input (what it is hash-partitioned on); may
    /// be empty (then every row has the same key and parallelism is 1).
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Equality keys of the right input, pairwise with `left_keys`.
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The rest of the `ON` condition, over the joined row (left columns then
    /// right columns); `NULL` counts as false.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// The rows of each input (without a row-kind column).
    pub left_schema: SchemaRef,
    pub right_schema: SchemaRef,
    /// Left columns then right columns (without a row-kind column).
    pub output_schema: SchemaRef,
}

impl JoinSpec {
    pub fn keys(&self, side: Side) -> &[Arc<dyn PhysicalExpr>] {
        match side {
            Side::Left => &self.left_keys,
            Side::Right => &self.right_keys,
        }
    }

    pub fn schema(&self, side: Side) -> &SchemaRef {
        match side {
            Side::Left => &self.left_schema,
            Side::Right => &self.right_schema,
        }
    }

    /// The encoder of this join's keys (made once per subtask).
    pub fn key_encoder(&self) -> Result<KeyEncoder> {
        let empty = RecordBatch::new_empty(self.left_schema.clone());
        let mut types: Vec<DataType> = evaluate_exprs(&self.left_keys, &empty)?
            .iter()
            .map(|a| a.data_type().clone())
            .collect();
        if types.is_empty() {
            // No equality keys: every row has the same (constant) key.
            types.push(DataType::Int8);
        }
        KeyEncoder::new(types)
    }

    /// The join keys of `rows` (rows of input `side`) as comparable bytes,
    /// whether each row's key has a NULL (it then matches nothing), and the
    /// key columns as evaluated (to compute key groups exactly as the hash
    /// exchange does).
    pub fn join_keys(
        &self,
        encoder: &KeyEncoder,
        side: Side,
        rows: &RecordBatch,
    ) -> Result<(Rows, Vec<bool>, Vec<ArrayRef>)> {
        let (keys, has_null, evaluated) = self.key_columns(encoder, side, rows)?;
        Ok((encoder.rows(&keys)?, has_null, evaluated))
    }

    /// The join keys of `rows` (rows of input `side`) as columns of the
    /// encoder's types (equal keys of either input are equal values of one
    /// type; a join without keys has one constant key), whether each row's
    /// key has a NULL, and the key columns as evaluated.
    pub fn key_columns(
        &self,
        encoder: &KeyEncoder,
        side: Side,
        rows: &RecordBatch,
    ) -> Result<(Vec<ArrayRef>, Vec<bool>, Vec<ArrayRef>)> {
        let evaluated = evaluate_exprs(self.keys(side), rows)?;
        let mut keys = evaluated.clone();
        if keys.is_empty() {
            keys.push(Arc::new(arrow::array::Int8Array::from_value(0, rows.num_rows())));
        }
        for (k, t) in keys.iter_mut().zip(&encoder.types) {
            if k.data_type() != t {
                *k = cast(k, t)?;
            }
        }
        // Per row, without a call per row and key when no key has NULLs.
        let mut has_null = vec![false; rows.num_rows()];
        for nulls in keys.iter().filter_map(|k| k.nulls()) {
            for i in nulls
                .iter()
                .enumerate()
                .filter_map(|(i, valid)| (!valid).then_some(i))
            {
                has_null[i] = true;
            }
        }
        Ok((keys, has_null, evaluated))
    }

    /// Joins `left[i]` with `right[i]` for every `i`.
    pub fn combine(&self, left: &RecordBatch, right: &RecordBatch) -> Result<RecordBatch> {
        let mut columns = left.columns().to_vec();
        columns.extend(right.columns().iter().cloned());
        Ok(RecordBatch::try_new_with_options(
            self.output_schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(left.num_rows())),
        )?)
    }

    /// The rows of `side` padded with NULLs for the other side's columns.
    pub fn pad(&self, side: Side, rows: &RecordBatch) -> Result<RecordBatch> {
        let n = rows.num_rows();
        match side {
            Side::Left => self.combine(rows, &null_batch(&self.right_schema, n)),
            Side::Right => self.combine(&null_batch(&self.left_schema, n), rows),
        }
    }

    /// Which joined rows satisfy the residual filter (all, without one).
    pub fn filter_mask(&self, joined: &RecordBatch) -> Result<Option<BooleanArray>> {
        let Some(f) = &self.filter else { return Ok(None) };
        let mask = f.evaluate(joined)?.into_array(joined.num_rows())?;
        let mask = mask
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| DataFusionError::Plan("a join condition must be a boolean".into()))?;
        Ok(Some(nulls_as_false(mask)))
    }
}

/// Encodes join keys as bytes that are equal exactly when the keys are
/// (the left keys' types; right keys are cast to them).
pub struct KeyEncoder {
    converter: RowConverter,
    types: Vec<DataType>,
}

impl KeyEncoder {
    /// The encoder of keys of these types.
    pub fn new(types: Vec<DataType>) -> Result<Self> {
        let converter = RowConverter::new(types.iter().map(|t| SortField::new(t.clone())).collect())?;
        Ok(KeyEncoder { converter, types })
    }

    /// The types of the key columns [`JoinSpec::key_columns`] returns.
    pub fn types(&self) -> &[DataType] {
        &self.types
    }

    /// Key columns (as [`JoinSpec::key_columns`] returns them) as
    /// comparable bytes.
    pub fn rows(&self, keys: &[ArrayRef]) -> Result<Rows> {
        Ok(self.converter.convert_columns(keys)?)
    }
}

/// The two inputs' rows in Arrow's row format: how a join stores rows and
/// reads them back.
///
/// A stored row leaves out the columns its join key holds exactly (a key
/// expression that is a plain column of the key's own type, e.g. `b.auction`
/// of `a.id = b.auction`): a row is always stored under its key, so they are
/// decoded from the key instead of being stored twice. A side keeps at least
/// one column in its rows.
pub struct RowCodec {
    /// Per side: the converter of the stored columns.
    converters: [RowConverter; 2],
    schemas: [SchemaRef; 2],
    /// Per side: which columns are stored, by index.
    stored: [Vec<usize>; 2],
    /// Per side, per column: the key it is decoded from, if not stored.
    from_key: [Vec<Option<usize>>; 2],
    /// The converter of the join keys (as [`KeyEncoder`]'s).
    keys: RowConverter,
}

impl RowCodec {
    pub fn new(spec: &JoinSpec) -> Result<Self> {
        let key_types = spec.key_encoder()?.types;
        let side_codec = |side: Side| -> Result<(RowConverter, Vec<usize>, Vec<Option<usize>>)> {
            let schema = spec.schema(side);
            let mut from_key: Vec<Option<usize>> = vec![None; schema.fields().len()];
            for (k, expr) in spec.keys(side).iter().enumerate() {
                if let Some(c) = expr.downcast_ref::<Column>()
                    && from_key[c.index()].is_none()
                    && Some(schema.field(c.index()).data_type()) == key_types.get(k)
                    && decodes_from_key(schema.field(c.index()).data_type())
                {
                    from_key[c.index()] = Some(k);
                }
            }
            if from_key.iter().all(Option::is_some) {
                from_key.fill(None);
            }
            let stored: Vec<usize> = (0..from_key.len()).filter(|&c| from_key[c].is_none()).collect();
            let converter = RowConverter::new(
                stored
                    .iter()
                    .map(|&c| SortField::new(schema.field(c).data_type().clone()))
                    .collect(),
            )?;
            Ok((converter, stored, from_key))
        };
        let (left, left_stored, left_from_key) = side_codec(Side::Left)?;
        let (right, right_stored, right_from_key) = side_codec(Side::Right)?;
        Ok(RowCodec {
            converters: [left, right],
            schemas: [spec.left_schema.clone(), spec.right_schema.clone()],
            stored: [left_stored, right_stored],
            from_key: [left_from_key, right_from_key],
            keys: RowConverter::new(key_types.into_iter().map(SortField::new).collect())?,
        })
    }

    /// The rows of `batch`, a batch of input `side` (its stored columns).
    pub fn encode(&self, side: Side, batch: &RecordBatch) -> Result<Rows> {
        let columns: Vec<ArrayRef> = self.stored[side as usize]
            .iter()
            .map(|&c| batch.column(c).clone())
            .collect();
        Ok(self.converters[side as usize].convert_columns(&columns)?)
    }

    /// A batch of input `side` from `(key, row)` pairs: join keys made by
    /// [`KeyEncoder`] and rows made by [`encode`](Self::encode).
    pub fn decode<'a>(
        &self,
        side: Side,
        rows: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<RecordBatch> {
        let s = side as usize;
        let (keys, rows): (Vec<&[u8]>, Vec<&[u8]>) = rows.into_iter().unzip();
        let converter = &self.converters[s];
        let parser = converter.parser();
        let mut stored = converter
            .convert_rows(rows.iter().map(|r| parser.parse(r)))?
            .into_iter();
        let key_columns = if self.from_key[s].iter().any(Option::is_some) {
            let parser = self.keys.parser();
            self.keys.convert_rows(keys.iter().map(|k| parser.parse(k)))?
        } else {
            Vec::new()
        };
        let columns = self.from_key[s]
            .iter()
            .map(|k| match k {
                Some(k) => key_columns[*k].clone(),
                None => stored.next().expect("a stored column"),
            })
            .collect();
        Ok(RecordBatch::try_new_with_options(
            self.schemas[s].clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows.len())),
        )?)
    }
}

/// Whether a key column of type `t` comes back from the key's row format as
/// it went in (dictionaries, for one, come back as their values).
fn decodes_from_key(t: &DataType) -> bool {
    t.is_primitive()
        || matches!(
            t,
            DataType::Boolean
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Binary
                | DataType::LargeBinary
        )
}

/// `rows` NULLs for every column of `schema` (whose fields become nullable).
pub fn null_batch(schema: &SchemaRef, rows: usize) -> RecordBatch {
    let columns = schema
        .fields()
        .iter()
        .map(|f| new_null_array(f.data_type(), rows))
        .collect();
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        )),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .expect("null columns match their schema")
}

pub use super::select_rows::take_rows;
