//! The operators the SQL planner lowers to: stateless ones evaluating
//! DataFusion physical expressions, and stateful window and group
//! aggregates built on DataFusion's accumulators.

pub mod aggregates;
pub mod collect;
pub mod factory;
pub mod filter;
pub mod group_chunks;
pub mod group_state;
pub mod interval_join;
pub mod join;
pub mod join_heads;
pub mod join_index;
pub mod join_key_match;
pub mod join_state;
pub mod projection;
pub mod select_rows;
pub mod session_window;
pub mod stream_join;
pub mod stream_join_in_memory;
pub mod union;
pub mod updating_aggregate;
pub mod updating_aggregate_in_memory;
pub mod window;
pub mod window_aggregate;
pub mod window_assign;
pub mod window_join;
