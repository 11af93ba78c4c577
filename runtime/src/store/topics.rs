//! Where the store stands in each Kafka partition it consumes: the next
//! offset to read (`topic_offsets`) and the records skipped
//! (`skipped_records`), written in the transaction that writes the
//! records' rows. A restart resumes at the stored offset, so each record
//! is applied exactly once however the process stops.

use redb::{ReadableTable, WriteTransaction};

use super::error::{Failure, StoreError};
use super::file::{SKIPPED_RECORDS, Store, TOPIC_OFFSETS, optional};

/// Where a write stands in one Kafka partition ([`Store::write_views_at`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPosition {
    /// The push source consuming the topic.
    pub source: String,
    /// The partition.
    pub partition: i32,
    /// The offset the consumer read from: the store's next offset for the
    /// partition, or the write is refused (another consumer moved it).
    pub from: u64,
    /// The offset after the last record the write applies.
    pub next: u64,
    /// Records in `from..next` recorded and skipped: (offset, why).
    pub skipped: Vec<(u64, String)>,
}

/// Records `at` in the write that applies it; refused (nothing of the
/// write kept) unless it starts at the offset stored for the partition, or
/// the partition has none yet: each record applies once, in order.
pub(super) fn record(txn: &WriteTransaction, at: &TopicPosition, path: &std::path::Path) -> Result<(), Failure> {
    let mut offsets = txn.open_table(TOPIC_OFFSETS)?;
    let key = (at.source.as_str(), at.partition);
    let stored = offsets.get(key)?.map(|v| v.value());
    if stored.is_some_and(|stored| stored != at.from) || at.next < at.from {
        return Err(StoreError::TopicMoved {
            path: path.to_path_buf(),
            source_name: at.source.clone(),
            partition: at.partition,
            from: at.from,
            stored,
        }
        .into());
    }
    offsets.insert(key, at.next)?;
    let mut skipped = txn.open_table(SKIPPED_RECORDS)?;
    for (offset, why) in &at.skipped {
        skipped.insert((at.source.as_str(), at.partition, *offset), why.as_str())?;
    }
    Ok(())
}

impl Store {
    /// The next offset to read in each partition `source` has consumed, as
    /// of the latest commit; a partition not listed starts at its earliest.
    pub fn topic_offsets(&self, source: &str) -> Result<std::collections::BTreeMap<i32, u64>, StoreError> {
        self.read(|txn| {
            let Some(table) = optional(txn, TOPIC_OFFSETS)? else {
                return Ok(Default::default());
            };
            let mut out = std::collections::BTreeMap::new();
            for item in table.range((source, i32::MIN)..=(source, i32::MAX))? {
                let (key, next) = item?;
                out.insert(key.value().1, next.value());
            }
            Ok(out)
        })
    }

    /// Records of `source` skipped: (partition, offset, why), in order.
    pub fn skipped_records(&self, source: &str) -> Result<Vec<(i32, u64, String)>, StoreError> {
        self.read(|txn| {
            let Some(table) = optional(txn, SKIPPED_RECORDS)? else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for item in table.range((source, i32::MIN, 0)..=(source, i32::MAX, u64::MAX))? {
                let (key, why) = item?;
                let (_, partition, offset) = key.value();
                out.push((partition, offset, why.value().to_string()));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StreamPosition;

    fn at(partition: i32, from: u64, next: u64, skipped: &[u64]) -> StreamPosition {
        StreamPosition::Topic(TopicPosition {
            source: "clicks".into(),
            partition,
            from,
            next,
            skipped: skipped.iter().map(|o| (*o, format!("bad {o}"))).collect(),
        })
    }

    #[test]
    fn offsets_move_only_from_where_the_store_stands_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let store = Store::open(&path).unwrap();
        // A partition not read yet starts wherever the consumer starts it.
        store.write_views_at(&mut [], Some(&at(0, 7, 10, &[8]))).unwrap();
        store.write_views_at(&mut [], Some(&at(1, 0, 3, &[]))).unwrap();
        // Then only from the stored offset: a replay, or a second consumer, is refused.
        for (from, next) in [(7, 10), (9, 12), (11, 12)] {
            let refused = store
                .write_views_at(&mut [], Some(&at(0, from, next, &[])))
                .unwrap_err();
            assert!(
                matches!(refused, StoreError::TopicMoved { stored: Some(10), .. }),
                "{refused}"
            );
            assert!(
                refused
                    .to_string()
                    .contains("partition 0: a write of records from offset")
            );
        }
        store.write_views_at(&mut [], Some(&at(0, 10, 15, &[12, 14]))).unwrap();
        let commits = store.last_commit().unwrap();
        drop(store);

        let store = Store::open(&path).unwrap();
        assert_eq!(store.topic_offsets("clicks").unwrap(), [(0, 15), (1, 3)].into());
        assert!(store.topic_offsets("other").unwrap().is_empty());
        let skipped: Vec<(i32, u64)> = (store.skipped_records("clicks").unwrap().into_iter())
            .map(|(p, o, _)| (p, o))
            .collect();
        assert_eq!(skipped, [(0, 8), (0, 12), (0, 14)]);
        // Refused writes wrote nothing, not even a commit.
        assert_eq!(store.last_commit().unwrap(), commits);
    }
}
