//! The conformance suite every [`StateBackendFactory`] must pass: the same
//! tests run for `hashmap` (here) and `rocksdb` (in its crate).

use std::sync::Arc;

use datafusion::common::Result;

use super::backend::{KeyedStateBackend, SnapshotTarget, StateBackendFactory, StateScope};
use crate::checkpoint::storage::CheckpointStorage;
use crate::key_group::KeyGroupRange;

/// The scope of subtask `subtask` of `parallelism`, of 16 key groups in all.
pub(crate) fn scope(dir: &std::path::Path, subtask: usize, parallelism: usize, name: &str) -> StateScope {
    StateScope {
        job_name: "suite".into(),
        operator_id: "op".into(),
        subtask,
        key_groups: KeyGroupRange::for_subtask(subtask, parallelism, 16),
        max_parallelism: 16,
        local_dir: dir.join(format!("local-{name}-{subtask}-{parallelism}")),
    }
}

type Entry = (usize, Vec<u8>, Vec<u8>);

/// Every entry under `prefix`, in scan order.
pub(crate) fn collect(b: &dyn KeyedStateBackend, prefix: &[u8]) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    b.scan_prefix(prefix, &mut |kg, k, v| {
        out.push((kg, k.to_vec(), v.to_vec()));
        Ok(())
    })?;
    Ok(out)
}

/// The target of snapshot `id`: into `chk-<id>`, with a `shared` directory
/// (incremental) or not, canonical or not.
pub(crate) fn target(storage: &CheckpointStorage, id: u64, shared: bool, canonical: bool) -> SnapshotTarget {
    SnapshotTarget {
        checkpoint_id: id,
        storage: storage.clone(),
        exclusive_dir: format!("chk-{id}"),
        shared_dir: shared.then(|| "shared".to_string()),
        canonical,
    }
}

/// Runs every check against `factory`, in directory `dir`. Panics on failure
/// (it is a test suite).
pub async fn run_backend_suite(factory: Arc<dyn StateBackendFactory>, dir: &std::path::Path) {
    let storage = CheckpointStorage::open(dir.join("checkpoints").to_str().unwrap()).unwrap();

    // Basic operations at parallelism 1 (all 16 key groups).
    let mut b = factory.create(&scope(dir, 0, 1, "a"), &[]).await.unwrap();
    assert_eq!(b.name(), factory.name());
    for kg in 0..16usize {
        for i in 0..10u8 {
            b.put(kg, &[1, i], &[kg as u8, i]).unwrap();
        }
        b.put(kg, &[2, 0], b"other").unwrap();
    }
    assert_eq!(b.len(), 16 * 11);
    assert_eq!(b.get(3, &[1, 4]).unwrap(), Some(vec![3, 4]));
    assert_eq!(b.get(3, &[9]).unwrap(), None);
    b.put(3, &[1, 4], b"new").unwrap();
    assert_eq!(b.get(3, &[1, 4]).unwrap(), Some(b"new".to_vec()));
    b.delete(3, &[1, 4]).unwrap();
    b.delete(3, &[1, 4]).unwrap();
    assert_eq!(b.get(3, &[1, 4]).unwrap(), None);
    assert_eq!(b.len(), 16 * 11 - 1);
    let scanned = collect(b.as_ref(), &[1]).unwrap();
    assert_eq!(scanned.len(), 16 * 10 - 1);
    assert!(
        scanned.windows(2).all(|w| (w[0].0, &w[0].1) < (w[1].0, &w[1].1)),
        "ordered"
    );
    // Writes by a caller that knows the current value keep `len` exact.
    let before = b.len();
    b.put_known(3, &[9, 9], b"v", None).unwrap();
    b.put_known(3, &[9, 9], b"vw", Some(1)).unwrap();
    assert_eq!(
        (b.len(), b.get(3, &[9, 9]).unwrap()),
        (before + 1, Some(b"vw".to_vec()))
    );
    b.delete_known(3, &[9, 9], 2).unwrap();
    assert_eq!((b.len(), b.get(3, &[9, 9]).unwrap()), (before, None));
    let mut in_group = Vec::new();
    b.scan_key_group_prefix(5, &[1], &mut |k, v| {
        in_group.push((k.to_vec(), v.to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        in_group,
        (0..10u8).map(|i| (vec![1, i], vec![5, i])).collect::<Vec<_>>(),
        "one key group's entries under a prefix, in key order"
    );
    let mut ranged = Vec::new();
    b.scan_range(&[1, 3], &[1, 5], &mut |kg, k, _| {
        ranged.push((kg, k.to_vec()));
        Ok(())
    })
    .unwrap();
    let expected: Vec<_> = (0..16usize)
        .flat_map(|kg| [3u8, 4].into_iter().map(move |i| (kg, vec![1, i])))
        .filter(|(kg, k)| !(*kg == 3 && k == &vec![1, 4]))
        .collect();
    assert_eq!(ranged, expected, "start <= key < end, in every key group");
    assert!(
        b.put(99, b"x", b"y").is_err(),
        "a key group out of range is an error"
    );

    // Snapshot isolation: writes after the synchronous part are not in it.
    let pending = b.snapshot(target(&storage, 1, true, false)).unwrap();
    b.put(0, &[1, 0], b"after").unwrap();
    b.put(0, &[7], b"after").unwrap();
    let h1 = pending.await.unwrap();
    assert_eq!(h1.entries, 16 * 11 - 1);
    for f in &h1.files {
        assert_eq!(
            storage.size_of(&f.path).await.unwrap(),
            Some(f.size),
            "{}",
            f.path
        );
    }
    let restored = factory
        .create(&scope(dir, 0, 1, "r1"), &[(h1.clone(), storage.clone())])
        .await
        .unwrap();
    assert_eq!(restored.len(), 16 * 11 - 1);
    assert_eq!(restored.get(0, &[1, 0]).unwrap(), Some(vec![0, 0]));
    assert_eq!(restored.get(0, &[7]).unwrap(), None);
    assert_eq!(collect(restored.as_ref(), &[]).unwrap(), {
        let mut v = collect(b.as_ref(), &[]).unwrap();
        v.retain(|(_, k, _)| k != &vec![7u8]);
        for e in v.iter_mut() {
            if e.0 == 0 && e.1 == vec![1, 0] {
                e.2 = vec![0, 0];
            }
        }
        v
    });

    // A second snapshot, then rescale: 1 -> 3 subtasks, each gets its key groups only.
    let h2 = b
        .snapshot(target(&storage, 2, true, false))
        .unwrap()
        .await
        .unwrap();
    let mut total = 0;
    for s in 0..3 {
        let sc = scope(dir, s, 3, "up");
        let r = factory
            .create(&sc, &[(h2.clone(), storage.clone())])
            .await
            .unwrap();
        let all = collect(r.as_ref(), &[]).unwrap();
        assert!(all.iter().all(|(kg, _, _)| sc.key_groups.contains(*kg)));
        total += all.len();
    }
    assert_eq!(total as u64, h2.entries);

    // ... and 3 -> 2: each new subtask reads the overlapping old handles.
    let mut handles = Vec::new();
    for s in 0..3 {
        let sc = scope(dir, s, 3, "up");
        let mut r = factory
            .create(&sc, &[(h2.clone(), storage.clone())])
            .await
            .unwrap();
        let mut t = target(&storage, 3, false, false);
        t.exclusive_dir = format!("chk-3-{s}");
        handles.push((r.snapshot(t).unwrap().await.unwrap(), storage.clone()));
    }
    let mut total = 0;
    for s in 0..2 {
        let sc = scope(dir, s, 2, "down");
        let r = factory.create(&sc, &handles).await.unwrap();
        total += r.len();
    }
    assert_eq!(total, h2.entries);

    // The canonical (savepoint) format is readable by the hashmap backend and
    // by this one.
    let sp_storage = storage.child("savepoint-x");
    let mut sp_target = target(&sp_storage, 4, false, true);
    sp_target.exclusive_dir = String::new();
    let sp = b.snapshot(sp_target).unwrap().await.unwrap();
    assert_eq!(sp.backend, "hashmap", "savepoints use the canonical format");
    let r = factory
        .create(&scope(dir, 0, 1, "sp"), &[(sp.clone(), sp_storage.clone())])
        .await
        .unwrap();
    assert_eq!(r.len(), b.len());
    let r = super::HashMapBackendFactory
        .create(&scope(dir, 0, 1, "sp-h"), &[(sp, sp_storage)])
        .await
        .unwrap();
    assert_eq!(r.len(), b.len());

    // An incremental `hashmap` checkpoint (manifest and segment files)
    // restores into this backend too.
    let expected = collect(b.as_ref(), &[]).unwrap();
    let mut hm = super::HashMapBackendFactory
        .create(&scope(dir, 0, 1, "hm"), &[])
        .await
        .unwrap();
    for (kg, k, v) in &expected {
        hm.put(*kg, k, v).unwrap();
    }
    let from_hm = hm
        .snapshot(target(&storage, 5, true, false))
        .unwrap()
        .await
        .unwrap();
    let r = factory
        .create(&scope(dir, 0, 1, "from-hm"), &[(from_hm, storage.clone())])
        .await
        .unwrap();
    assert_eq!(collect(r.as_ref(), &[]).unwrap(), expected);

    // A truncated file fails the restore instead of restoring half.
    let victim = h2.files.iter().max_by_key(|f| f.size).unwrap();
    if let Some(local) = storage.local_path(&victim.path) {
        let data = std::fs::read(&local).unwrap();
        std::fs::write(&local, &data[..data.len() / 2]).unwrap();
        let r = factory
            .create(&scope(dir, 0, 1, "trunc"), &[(h2.clone(), storage.clone())])
            .await;
        assert!(r.is_err(), "a truncated snapshot must not restore");
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn hashmap_backend_passes_the_suite() {
        let dir = tempfile::tempdir().unwrap();
        super::run_backend_suite(
            std::sync::Arc::new(super::super::HashMapBackendFactory),
            dir.path(),
        )
        .await;
    }
}
