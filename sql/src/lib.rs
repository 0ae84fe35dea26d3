//! placeholder
pub mod parser;
