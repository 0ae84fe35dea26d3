//! The engine's backend conformance suite, and the rocksdb-specific
//! behaviour: incremental checkpoints reuse SST files.

use std::collections::HashSet;
use std::sync::Arc;

use weir_engine::checkpoint::storage::CheckpointStorage;
use weir_engine::key_group::KeyGroupRange;
use weir_engine::state::{
    KeyedStateBackend, KeyedStateHandle, SnapshotTarget, StateBackendFactory, StateScope,
};
use weir_state_rocksdb::RocksDbBackendFactory;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocksdb_backend_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    weir_engine::state::testing::run_backend_suite(Arc::new(RocksDbBackendFactory::default()), dir.path())
        .await;
}

fn scope(dir: &std::path::Path, name: &str) -> StateScope {
    StateScope {
        job_name: "inc".into(),
        operator_id: "op".into(),
        subtask: 0,
        key_groups: KeyGroupRange { start: 0, end: 8 },
        max_parallelism: 8,
        local_dir: dir.join("local").join(name),
    }
}

fn target(storage: &CheckpointStorage, id: u64) -> SnapshotTarget {
    SnapshotTarget {
        checkpoint_id: id,
        storage: storage.clone(),
        exclusive_dir: format!("chk-{id}"),
        shared_dir: Some("shared".into()),
        canonical: false,
    }
}

fn value(i: u32) -> Vec<u8> {
    format!("value-{i}-").repeat(20).into_bytes()
}

fn write(b: &mut dyn KeyedStateBackend, keys: std::ops::Range<u32>) {
    for i in keys {
        b.put(i as usize % 8, &i.to_be_bytes(), &value(i)).unwrap();
    }
}

fn assert_holds(b: &dyn KeyedStateBackend, keys: std::ops::Range<u32>) {
    assert_eq!(b.len(), keys.len() as u64);
    for i in keys {
        assert_eq!(
            b.get(i as usize % 8, &i.to_be_bytes()).unwrap(),
            Some(value(i)),
            "key {i}"
        );
    }
}

/// A fresh backend whose 64 KiB memtables flush often: many level-0 files
/// and compactions from little data.
async fn tiny_memtables(dir: &std::path::Path, name: &str) -> Box<dyn KeyedStateBackend> {
    let factory = RocksDbBackendFactory {
        write_buffer_bytes: 64 << 10,
        ..RocksDbBackendFactory::default()
    };
    factory.create(&scope(dir, name), &[]).await.unwrap()
}

fn shared_paths(h: &KeyedStateHandle) -> HashSet<&str> {
    h.files
        .iter()
        .filter(|f| f.shared)
        .map(|f| f.path.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_checkpoints_reuse_sst_files() {
    let dir = tempfile::tempdir().unwrap();
    let storage = CheckpointStorage::open(dir.path().join("checkpoints").to_str().unwrap()).unwrap();
    let factory = RocksDbBackendFactory::default();
    let mut b = factory.create(&scope(dir.path(), "a"), &[]).await.unwrap();

    write(b.as_mut(), 0..1000);
    let h1 = b.snapshot(target(&storage, 1)).unwrap().await.unwrap();
    assert_eq!(h1.backend, "rocksdb");
    assert_eq!(h1.entries, 1000);
    assert!(
        h1.files.iter().any(|f| f.shared),
        "SST files go to the shared directory"
    );
    assert!(
        h1.files
            .iter()
            .filter(|f| f.shared)
            .all(|f| f.path.starts_with("shared/op-0-"))
    );
    assert!(
        h1.files
            .iter()
            .filter(|f| !f.shared)
            .all(|f| f.path.starts_with("chk-1/op-0/"))
    );
    assert!(h1.files.iter().any(|f| f.name == "CURRENT" && !f.shared));

    write(b.as_mut(), 1000..1100);
    let h2 = b.snapshot(target(&storage, 2)).unwrap().await.unwrap();
    assert_eq!(h2.entries, 1100);
    let reused: Vec<_> = shared_paths(&h1)
        .intersection(&shared_paths(&h2))
        .copied()
        .collect();
    assert!(
        !reused.is_empty(),
        "snapshot 2 reuses the SST files of snapshot 1: {h1:?} {h2:?}"
    );
    // The writes since snapshot 1 are in RocksDB's WAL, which the snapshot
    // copies instead of flushing them into a new SST file.
    assert_eq!(shared_paths(&h2).len(), reused.len(), "no new SST file: {h2:?}");
    assert!(
        h2.files
            .iter()
            .any(|f| f.name.ends_with(".log") && !f.shared && f.size > 0),
        "the WAL is in snapshot 2: {h2:?}"
    );

    // A savepoint (the canonical file, read from the checkpoint's files) and
    // a rescale (entries copied from them) see the WAL's writes too.
    let mut savepoint = target(&storage, 20);
    savepoint.canonical = true;
    let hs = b.snapshot(savepoint).unwrap().await.unwrap();
    assert_eq!(hs.entries, 1100);
    for (name, handle) in [("from-savepoint", hs), ("rescaled", h2.clone())] {
        let mut half = scope(dir.path(), name);
        half.key_groups = KeyGroupRange { start: 0, end: 4 };
        let restored = factory.create(&half, &[(handle, storage.clone())]).await.unwrap();
        assert_eq!(
            restored.len(),
            (0..1100).filter(|i| i % 8 < 4).count() as u64,
            "{name}"
        );
        for i in (1000..1100u32).filter(|i| i % 8 < 4) {
            assert_eq!(
                restored.get(i as usize % 8, &i.to_be_bytes()).unwrap(),
                Some(value(i))
            );
        }
    }

    // Restore from snapshot 2 alone (the engine would delete chk-1, not the
    // shared files snapshot 2 uses).
    storage.delete_dir("chk-1").await.unwrap();
    let mut r = factory
        .create(&scope(dir.path(), "r"), &[(h2.clone(), storage.clone())])
        .await
        .unwrap();
    assert_holds(r.as_ref(), 0..1100);

    // A restored backend goes on sharing the files it restored.
    write(r.as_mut(), 1100..1110);
    let h3 = r.snapshot(target(&storage, 3)).unwrap().await.unwrap();
    assert_eq!(h3.entries, 1110);
    assert!(
        shared_paths(&h2).is_subset(&shared_paths(&h3)),
        "the restored SST files are not uploaded again: {h2:?} {h3:?}"
    );
    let r3 = factory
        .create(&scope(dir.path(), "r3"), &[(h3, storage.clone())])
        .await
        .unwrap();
    assert_holds(r3.as_ref(), 0..1110);

    // Another storage does not have the shared files: they are uploaded there.
    let other = storage.child("elsewhere");
    let h4 = b.snapshot(target(&other, 4)).unwrap().await.unwrap();
    for f in &h4.files {
        assert_eq!(other.size_of(&f.path).await.unwrap(), Some(f.size), "{}", f.path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_files_fail_the_restore_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let storage = CheckpointStorage::open(dir.path().join("checkpoints").to_str().unwrap()).unwrap();
    let factory = RocksDbBackendFactory::default();
    let mut b = factory.create(&scope(dir.path(), "a"), &[]).await.unwrap();
    write(b.as_mut(), 0..100);
    let h = b.snapshot(target(&storage, 1)).unwrap().await.unwrap();
    let victim = h
        .files
        .iter()
        .find(|f| f.name.ends_with(".sst"))
        .unwrap()
        .path
        .clone();
    storage.delete(&victim).await.unwrap();
    for s in ["direct", "copy"] {
        let mut sc = scope(dir.path(), s);
        if s == "copy" {
            // A different range takes the copying path.
            sc.key_groups = KeyGroupRange { start: 0, end: 4 };
        }
        let err = factory
            .create(&sc, &[(h.clone(), storage.clone())])
            .await
            .err()
            .expect("a missing file fails the restore");
        assert!(err.to_string().contains(&victim), "{err}");
        assert!(!sc.local_dir.exists(), "nothing is left behind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_directories_are_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let storage = CheckpointStorage::open(dir.path().join("checkpoints").to_str().unwrap()).unwrap();
    let factory = RocksDbBackendFactory::default();
    let sc = scope(dir.path(), "a");
    std::fs::create_dir_all(sc.local_dir.join("stale")).unwrap();
    let mut b = factory.create(&sc, &[]).await.unwrap();
    assert!(
        !sc.local_dir.join("stale").exists(),
        "the working directory is wiped"
    );
    write(b.as_mut(), 0..10);
    b.snapshot(target(&storage, 1)).unwrap().await.unwrap();
    // A snapshot whose future is dropped leaves nothing behind either.
    drop(b.snapshot(target(&storage, 2)).unwrap());
    drop(b);
    let left: Vec<_> = std::fs::read_dir(dir.path().join("local")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Probes of lookup prefixes use prefix bloom filters (seeks in prefix
/// mode), other scans see every key: over many level-0 files (a tiny
/// memtable), with deletions, every scan returns exactly what a model holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_prefix_probes_find_exactly_their_keys_across_files() {
    use std::collections::BTreeMap;
    use weir_engine::state::lookup_prefix::write_lookup_prefix;

    let dir = tempfile::tempdir().unwrap();
    let mut b = tiny_memtables(dir.path(), "lookup").await;
    let mut model: BTreeMap<(usize, Vec<u8>), Vec<u8>> = BTreeMap::new();
    let prefix = |sub: u8, k: u32| {
        // Keys of different lengths ("7", "70", "700"): a lookup prefix is
        // never a prefix of another key's.
        let mut p = Vec::new();
        write_lookup_prefix(&mut p, b'R', sub, k.to_string().as_bytes());
        p
    };
    for round in 0..4u32 {
        for k in 0..800u32 {
            let kg = k as usize % 8;
            for j in 0..(k + round) % 4 {
                let mut key = prefix((k % 2) as u8, k);
                key.extend_from_slice(&(round * 10 + j).to_be_bytes());
                let value = format!("{k}-{round}-{j}").into_bytes();
                b.put(kg, &key, &value).unwrap();
                model.insert((kg, key), value);
            }
            // Keys of another layout, under the same tag.
            b.put(kg, &[b'R', 9, round as u8, k as u8], b"other").unwrap();
            model.insert((kg, vec![b'R', 9, round as u8, k as u8]), b"other".to_vec());
        }
        // Tombstones between and inside prefixes.
        for k in (round..800).step_by(7) {
            let kg = k as usize % 8;
            let doomed: Vec<Vec<u8>> = model
                .range((kg, prefix((k % 2) as u8, k))..)
                .take_while(|((g, key), _)| *g == kg && key.starts_with(&prefix((k % 2) as u8, k)))
                .map(|((_, key), _)| key.clone())
                .take(1)
                .collect();
            for key in doomed {
                b.delete(kg, &key).unwrap();
                model.remove(&(kg, key));
            }
        }
    }
    for k in 0..900u32 {
        let kg = k as usize % 8;
        for sub in 0..2u8 {
            let p = prefix(sub, k);
            let mut found = Vec::new();
            b.scan_key_group_prefix(kg, &p, &mut |key, value| {
                found.push((key.to_vec(), value.to_vec()));
                Ok(())
            })
            .unwrap();
            let expected: Vec<(Vec<u8>, Vec<u8>)> = model
                .iter()
                .filter(|((g, key), _)| *g == kg && key.starts_with(&p))
                .map(|((_, key), value)| (key.clone(), value.clone()))
                .collect();
            assert_eq!(found, expected, "key {k}, side {sub}");
        }
    }
    // All probes in one call (one shared iterator), in no key order, with a
    // prefix that is no lookup prefix among them.
    let mut probes: Vec<(usize, Vec<u8>)> = (0..900u32)
        .rev()
        .flat_map(|k| [0u8, 1].map(|sub| (k as usize % 8, prefix(sub, k))))
        .collect();
    probes.insert(100, (3, vec![b'R', 9]));
    let probe_refs: Vec<(usize, &[u8])> = probes.iter().map(|(kg, p)| (*kg, p.as_slice())).collect();
    let mut found = Vec::new();
    b.scan_key_group_prefixes(&probe_refs, &mut |i, key, value| {
        found.push((i, key.to_vec(), value.to_vec()));
        Ok(())
    })
    .unwrap();
    let expected: Vec<(usize, Vec<u8>, Vec<u8>)> = probes
        .iter()
        .enumerate()
        .flat_map(|(i, (kg, p))| {
            model
                .iter()
                .filter(move |((g, key), _)| g == kg && key.starts_with(p))
                .map(move |((_, key), value)| (i, key.clone(), value.clone()))
        })
        .collect();
    assert_eq!(found.len(), expected.len());
    assert_eq!(found, expected);
    for kg in 0..8 {
        let mut n = 0;
        b.scan_key_group_prefix(kg, b"R", &mut |_, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(
            n,
            model.keys().filter(|(g, _)| *g == kg).count(),
            "key group {kg}"
        );
    }
    let mut all = 0;
    b.scan_prefix(b"R", &mut |_, _, _| {
        all += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(all, model.len());
    assert_eq!(b.len(), model.len() as u64);
}

/// Entries of one tag expire once a watermark reaches the time in their value.
#[derive(Debug)]
struct ExpiresByValue(Arc<std::sync::atomic::AtomicU64>);

impl weir_engine::state::EntryExpiry for ExpiresByValue {
    fn is_expired(&self, key: &[u8], value: &[u8]) -> bool {
        let watermark = self.0.load(std::sync::atomic::Ordering::Relaxed);
        key.first() == Some(&b'E') && value.try_into().is_ok_and(|t| u64::from_be_bytes(t) <= watermark)
    }
}

/// Compactions drop the entries the operator's expiry calls expired, and
/// only those (no delete written for them): entries past the watermark are
/// gone once compactions ran over them, the others all read back, and the
/// entry count leaves the dropped ones out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compactions_drop_expired_entries() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let mut b = tiny_memtables(dir.path(), "expiry").await;
    let watermark = Arc::new(AtomicU64::new(0));
    assert!(b.drop_expired_entries(Arc::new(ExpiresByValue(watermark.clone()))));
    let expiring_key = |i: u32| [&[b'E'][..], &i.to_be_bytes()].concat();
    // Times 1..=2000; the watermark will pass the first half.
    for i in 0..2000u32 {
        b.put(i as usize % 8, &expiring_key(i), &(i as u64 + 1).to_be_bytes())
            .unwrap();
    }
    watermark.store(1000, Ordering::Relaxed);
    let live = |b: &dyn KeyedStateBackend| {
        let mut times = Vec::new();
        b.scan_prefix(b"E", &mut |_, _, v| {
            times.push(u64::from_be_bytes(v.try_into().unwrap()));
            Ok(())
        })
        .unwrap();
        times.sort();
        times
    };
    // Other entries fill memtables: flushes, and compactions of what they
    // flushed (in the background: wait for them, writing more).
    let mut filler = 0u32;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while live(b.as_ref()).len() > 1000 {
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction dropped the expired entries"
        );
        for _ in 0..2000 {
            b.put(
                filler as usize % 8,
                &[&b"K"[..], &filler.to_be_bytes()].concat(),
                &value(filler),
            )
            .unwrap();
            filler += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(live(b.as_ref()), (1001..=2000).collect::<Vec<u64>>());
    assert_eq!(b.len(), 1000 + filler as u64);
    for i in 0..filler {
        let key = [&b"K"[..], &i.to_be_bytes()].concat();
        assert_eq!(b.get(i as usize % 8, &key).unwrap(), Some(value(i)), "filler {i}");
    }
}
