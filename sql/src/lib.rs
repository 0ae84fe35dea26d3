//! weir's SQL front end: Flink-style statements parsed by sqlparser, a
//! catalog of connector-backed tables and views, and the streaming planner
//! that turns DataFusion logical plans into weir job graphs.

pub mod catalog;
pub mod config;
pub mod parser;
pub mod planner;
