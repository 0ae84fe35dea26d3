//! Operator state: keyed state in a [`KeyedStateBackend`] (partitioned by key
//! group, so it can be redistributed on rescale), operator list state (e.g.
//! source positions, pending sink commits), and what an operator hands to the
//! runtime at a checkpoint barrier ([`OperatorSnapshot`]) and receives on
//! restore ([`StateInit`]).
//!
//! Operators keep their hot state in vectorized in-memory structures (DataFusion
//! `GroupsAccumulator`s, buffered batches). Window operators keep theirs as
//! [`BatchState`]: batches per namespace that each snapshot writes, in its
//! asynchronous part, as Arrow IPC files of the checkpoint (incrementally),
//! whatever the backend. Other operators write what changed into the keyed
//! backend at each barrier, or as they go. The backend then snapshots
//! durably: `hashmap` writes a file per subtask (or, with incremental
//! checkpoints, only the leaves of its maps that changed: [`segments`]),
//! `rocksdb` takes a RocksDB checkpoint and uploads new SST files only
//! (incremental).

mod backend;
mod backend_batches;
mod batch_files;
mod batch_state;
mod hashmap;
mod init;
mod key_group_map;
mod kv_file;
mod leaf;
pub mod lookup_prefix;
mod nonce;
pub mod segments;
mod separator;
pub mod testing;
mod time_key;
pub(crate) mod varint;

pub use backend::{
    EntryExpiry, EntryVisitor, KeyVisitor, KeyedStateBackend, KeyedStateHandle, PendingSnapshot,
    ProbeVisitor, SendEntryVisitor, SharedBackendFactory, SnapshotTarget, StateBackendFactory, StateFile,
    StateScope,
};
pub use backend_batches::BackendBatches;
pub use batch_state::BatchState;
pub use hashmap::{HashMapBackendFactory, HashMapStateBackend, read_canonical_handle};
pub use init::{KeyedState, OperatorSnapshot, StateInit};
pub use kv_file::{KvFileWriter, read_kv_file, write_kv_entries};
pub use nonce::{instance_nonce, instance_seed};
pub use time_key::{time_key, time_of_key};
