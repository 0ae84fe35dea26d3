//! Interval join: two append-only streams joined on equality keys and a time
//! bound between their event times, `r.t - l.t ∈ [lower, upper]`, as Flink's
//! interval join (`... AND p.pay_time BETWEEN o.order_time AND
//! o.order_time + INTERVAL '15' MINUTE`). Its result is append-only, and its
//! state is bounded by the watermark.

use std::sync::Arc;

use arrow::array::{Array, Int64Array};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::common::{HashMap, Result, plan_err};
use datafusion::physical_expr::PhysicalExpr;

use super::join::{JoinSpec, KeyEncoder, RowCodec, Side, take_rows};
use super::join_state::{ArrivalIds, BatchProbe, JoinRowStore, RowValue, StoredRow};
use crate::key_group::key_groups_of;
use crate::message::{Barrier, EventTime};
use crate::metrics::OperatorMetrics;
use crate::operator::{Operator, OperatorContext, Output};
use crate::state::{KeyedState, OperatorSnapshot, StateInit};
use crate::watermark::to_event_time;

/// The plan of an interval join.
#[derive(Debug)]
pub struct IntervalJoinConfig {
    pub spec: JoinSpec,
    /// The event-time (rowtime) column of each input.
    pub left_time: Arc<dyn PhysicalExpr>,
    pub right_time: Arc<dyn PhysicalExpr>,
    /// The bounds, in ns: a pair matches only if `lower <= r.t - l.t <=
    /// upper` (the exact, possibly strict, comparisons are also in
    /// `spec.filter`; these bound the state).
    pub lower: i64,
    pub upper: i64,
}

impl IntervalJoinConfig {
    pub fn validate(&self) -> Result<()> {
        if self.lower > self.upper {
            return plan_err!(
                "the interval join's time bounds are empty: the lower bound ({} ms) is above the upper bound ({} ms)",
                self.lower / 1_000_000,
                self.upper / 1_000_000
            );
        }
        Ok(())
    }

    /// How far the output watermark is held behind the input watermark, so
    /// that no output row is behind it: a pair is emitted when its later
    /// row arrives, and its other row's time is at most this much earlier.
    pub fn watermark_delay(&self) -> i64 {
        self.upper.max(self.lower.saturating_neg()).max(0)
    }

    fn time(&self, side: Side) -> &Arc<dyn PhysicalExpr> {
        match side {
            Side::Left => &self.left_time,
            Side::Right => &self.right_time,
        }
    }

    /// The watermark at which a row of `side` at time `t` can no longer
    /// match a row of the other side that is not late (whose time is above
    /// the watermark).
    fn expiry(&self, side: Side, t: EventTime) -> EventTime {
        match side {
            Side::Left => t.saturating_add(self.upper),
            Side::Right => t.saturating_sub(self.lower),
        }
    }

    /// Whether a row of `side` at `t` and a row of the other side at `other`
    /// satisfy the bounds.
    fn within(&self, side: Side, t: EventTime, other: EventTime) -> bool {
        let d = match side {
            Side::Left => other.saturating_sub(t),
            Side::Right => t.saturating_sub(other),
        };
        self.lower <= d && d <= self.upper
    }
}

/// An interval join subtask.
///
/// # Semantics (Flink's)
///
/// A row is joined, on arrival, with the stored rows of the other side with
/// the same key whose times satisfy the bounds and that pass the join
/// condition; it is stored while rows of the other side that are not late
/// can still match it, i.e. until the watermark reaches `l.t + upper` (left)
/// or `r.t - lower` (right). Then it is dropped, and in an outer join
/// emitted NULL-padded if nothing matched it. A row that arrives behind the
/// watermark is not dropped: it joins with what is stored, as in Flink, and
/// is emitted NULL-padded at once (outer joins) if nothing matched and it
/// cannot be stored. Rows with a NULL key or time match nothing.
///
/// The output watermark is the input watermark minus
/// [`IntervalJoinConfig::watermark_delay`], so that no row emitted for
/// inputs that were on time is behind it: both time columns of the output
/// are rowtime attributes downstream.
///
/// # State
///
/// Rows live in the keyed state backend itself ([`JoinRowStore`], timed),
/// read by key on every probe, with an expiry index scanned on every
/// watermark: nothing but the current batch is held in memory, so RocksDB
/// holds state of any size. A checkpoint is the backend's snapshot. Both
/// inputs are append-only: each arriving row is an entry of its own,
/// written without a read.
pub struct IntervalJoin {
    config: Arc<IntervalJoinConfig>,
    store: JoinRowStore,
    arrival_ids: ArrivalIds,
    keys: KeyEncoder,
    /// Row formats of the left and right rows.
    rows: RowCodec,
    state: Option<KeyedState>,
    watermark: Option<EventTime>,
    /// The watermark up to which expired rows are gone (`None` after a
    /// start: the first expiry scans from the beginning).
    expired_through: Option<EventTime>,
    max_parallelism: usize,
    metrics: Option<Arc<OperatorMetrics>>,
}

impl IntervalJoin {
    pub fn new(config: Arc<IntervalJoinConfig>) -> Result<Self> {
        Ok(IntervalJoin {
            keys: config.spec.key_encoder()?,
            rows: RowCodec::new(&config.spec)?,
            store: JoinRowStore {
                timed: true,
                arrivals: [true, true],
            },
            arrival_ids: ArrivalIds::new(),
            config,
            state: None,
            watermark: None,
            expired_through: None,
            max_parallelism: crate::key_group::DEFAULT_MAX_PARALLELISM,
            metrics: None,
        })
    }

    fn state(&mut self) -> Result<&mut KeyedState> {
        state_of(&mut self.state)
    }

    /// Decodes stored rows of `side` (row bytes) into a batch.
    fn update_state_metrics(&self) {
        if let (Some(m), Some(state)) = (&self.metrics, &self.state) {
            state.report_size(m);
        }
    }

    /// Drops the rows the watermark has expired, emitting unmatched rows of
    /// preserved sides NULL-padded.
    fn expire(&mut self, watermark: EventTime, out: &mut Output) -> Result<()> {
        let (store, after) = (self.store, self.expired_through);
        for side in [Side::Left, Side::Right] {
            let preserved = self.config.spec.join_type.preserves(side);
            let backend = self.state()?.backend();
            let due = store.take_expired(backend, side, after, watermark)?;
            let mut unmatched: Vec<StoredRow> = Vec::new();
            for (kg, entry) in due {
                let value = if preserved {
                    store.get(backend, kg, &entry)?
                } else {
                    None
                };
                store.delete(backend, kg, &entry, value)?;
                if let Some(value) = value
                    && value.matches == 0
                {
                    unmatched.push(store.stored_row(kg, entry, value)?);
                }
            }
            if !unmatched.is_empty() {
                let copies = unmatched
                    .iter()
                    .flat_map(|r| std::iter::repeat_n(r.key_and_row(), r.value.count.max(1) as usize));
                let rows = self.rows.decode(side, copies)?;
                out.emit(self.config.spec.pad(side, &rows)?);
            }
        }
        self.expired_through = Some(watermark);
        Ok(())
    }
}

/// The state of an initialized join (a field borrow, beside others).
fn state_of(state: &mut Option<KeyedState>) -> Result<&mut KeyedState> {
    state
        .as_mut()
        .ok_or_else(|| datafusion::common::DataFusionError::Internal("interval join without state".into()))
}

#[async_trait]
impl Operator for IntervalJoin {
    async fn initialize_state(&mut self, ctx: &OperatorContext, mut init: StateInit) -> Result<()> {
        self.max_parallelism = ctx.max_parallelism;
        let mut state = init.keyed_state().await?;
        self.store.upgrade_counted_arrivals(
            state.backend(),
            &mut self.arrival_ids,
            &ctx.operator_name,
            ctx.subtask,
        )?;
        self.state = Some(state);
        Ok(())
    }

    async fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.max_parallelism = ctx.max_parallelism;
        self.metrics = Some(ctx.metrics.clone());
        self.update_state_metrics();
        Ok(())
    }

    async fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let side = Side::of_input(input);
        let other = side.other();
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let config = self.config.clone();
        let spec = &config.spec;
        let times: Int64Array = to_event_time(config.time(side).evaluate(&batch)?.into_array(n)?.as_ref())?;
        let (keys, null_key, hash_columns) = spec.join_keys(&self.keys, side, &batch)?;
        let kgs = key_groups_of(&hash_columns, n, self.max_parallelism)?;
        let rows = self.rows.encode(side, &batch)?;
        let store = self.store;
        let watermark = self.watermark;

        // Probe each distinct key once (one pass of the backend); pairs
        // within the time bounds.
        let probes =
            (0..n).map(|i| (!null_key[i] && !times.is_null(i)).then(|| (kgs[i], keys.row(i).data())));
        let BatchProbe { candidates, ranges } =
            store.probe_batch(self.state()?.backend_ref(), other, probes, &mut Some)?;
        let (mut this_idx, mut other_idx) = (Vec::new(), Vec::new());
        for (i, range) in ranges.into_iter().enumerate() {
            let t = times.value(i);
            for c in range {
                let cand = &candidates[c];
                if config.within(side, t, cand.time.unwrap_or(EventTime::MIN)) {
                    for _ in 0..cand.value.count.max(1) {
                        this_idx.push(i as u32);
                        other_idx.push(c);
                    }
                }
            }
        }

        // Join the pairs and apply the condition.
        let mut matches = vec![0i64; n];
        let mut other_matched = vec![0i64; candidates.len()];
        if !this_idx.is_empty() {
            let mut used: Vec<usize> = other_idx.clone();
            used.sort_unstable();
            used.dedup();
            let position: HashMap<usize, u32> =
                used.iter().enumerate().map(|(p, &c)| (c, p as u32)).collect();
            let decoded = self
                .rows
                .decode(other, used.iter().map(|&c| candidates[c].key_and_row()))?;
            let other_rows = take_rows(
                &decoded,
                &other_idx.iter().map(|c| position[c]).collect::<Vec<_>>(),
            )?;
            let this_rows = take_rows(&batch, &this_idx)?;
            let joined = match side {
                Side::Left => spec.combine(&this_rows, &other_rows)?,
                Side::Right => spec.combine(&other_rows, &this_rows)?,
            };
            let joined = match spec.filter_mask(&joined)? {
                Some(mask) => {
                    for (k, keep) in mask.values().iter().enumerate() {
                        if keep {
                            matches[this_idx[k] as usize] += 1;
                            other_matched[other_idx[k]] += 1;
                        }
                    }
                    super::select_rows::filter_rows(&joined, &mask)?
                }
                None => {
                    for k in 0..this_idx.len() {
                        matches[this_idx[k] as usize] += 1;
                        other_matched[other_idx[k]] += 1;
                    }
                    joined
                }
            };
            out.emit(joined);
        }

        // Record matches of stored rows whose side keeps unmatched rows.
        let ids = &mut self.arrival_ids;
        let backend = state_of(&mut self.state)?.backend();
        if spec.join_type.preserves(other) {
            for (c, m) in other_matched.iter().enumerate() {
                if *m > 0 && candidates[c].value.matches == 0 {
                    let cand = &candidates[c];
                    let value = RowValue {
                        matches: cand.value.matches + m,
                        ..cand.value
                    };
                    store.put(backend, cand.kg, &cand.entry, value, Some(cand.value))?;
                }
            }
        }

        // Store the rows that can still match; pad the others if unmatched.
        let preserved = spec.join_type.preserves(side);
        let mut padded = Vec::new();
        let mut entry = Vec::new();
        for i in 0..n {
            let storable = !null_key[i] && !times.is_null(i);
            let expiry = if storable {
                Some(config.expiry(side, times.value(i)))
            } else {
                None
            };
            match expiry {
                Some(expiry) if watermark.is_none_or(|w| expiry > w) => {
                    store.entry_key_into(
                        &mut entry,
                        side,
                        keys.row(i).data(),
                        times.value(i),
                        rows.row(i).data(),
                        ids,
                    );
                    // Read only for rows of a preserved side.
                    let matches = if preserved { matches[i] } else { 0 };
                    let fresh = RowValue {
                        count: 1,
                        matches,
                        touched_ms: None,
                        expires: None,
                    };
                    // Both inputs are append-only: the entry is new.
                    store.put(backend, kgs[i], &entry, fresh, None)?;
                    store.add_expiry(backend, kgs[i], expiry, &entry)?;
                }
                _ if preserved && matches[i] == 0 => padded.push(i as u32),
                _ => {}
            }
        }
        if !padded.is_empty() {
            out.emit(spec.pad(side, &take_rows(&batch, &padded)?)?);
        }
        Ok(())
    }

    async fn process_watermark(&mut self, watermark: EventTime, out: &mut Output) -> Result<()> {
        self.watermark = Some(watermark);
        self.expire(watermark, out)?;
        self.update_state_metrics();
        let delayed = if watermark == EventTime::MAX {
            watermark
        } else {
            watermark.saturating_sub(self.config.watermark_delay())
        };
        out.emit_watermark(delayed);
        Ok(())
    }

    async fn snapshot_state(&mut self, barrier: Barrier, _out: &mut Output) -> Result<OperatorSnapshot> {
        self.update_state_metrics();
        let pending = self.state()?.snapshot(barrier)?;
        Ok(OperatorSnapshot::keyed(pending))
    }
}
