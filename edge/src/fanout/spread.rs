//! Writing many players from one task without making the last one wait for all the others:
//! the caller keeps the first group and hands the rest to helper tasks.

use std::sync::Arc;

/// Most players one task writes in one go. A write is 5–10 µs of kernel time, so a publisher
/// with thousands of players would otherwise keep the last one waiting for all the others on one
/// thread (p99 latency 182 ms at 2000 players on 2 cores).
pub(crate) const WRITE_PER_TASK: usize = 256;

/// Runs `write` on every outbox of `list`, emptying it: the first [`WRITE_PER_TASK`] (the
/// longest-connected players) from the calling task, the rest in helper tasks of that many each,
/// which the edge's workers take in turn. When the calling thread is busy and relieved by another
/// worker for this stream, the first group goes to that worker as well.
pub(crate) fn write_spread<T: ?Sized + Send + Sync + 'static>(
    list: &mut Vec<Arc<T>>,
    write: impl Fn(&Arc<T>) + Copy + Send + 'static,
) {
    if list.len() > WRITE_PER_TASK && tokio::runtime::Handle::try_current().is_ok() {
        while list.len() > WRITE_PER_TASK {
            let chunk = list.split_off((list.len() - WRITE_PER_TASK).max(WRITE_PER_TASK));
            crate::workers::spawn_helper(async move {
                for outbox in &chunk {
                    write(outbox);
                }
            });
        }
    }
    // This worker is busy and hands part of its streams' writes to a less busy one: keyed by the
    // longest-connected player, so a stream stays on one side until its share changes.
    if let Some(first) = list.first()
        && let Some(worker) = crate::workers::relief(Arc::as_ptr(first) as *const u8 as usize)
    {
        let group: Vec<Arc<T>> = std::mem::take(list);
        worker.spawn(async move {
            for outbox in &group {
                write(outbox);
            }
        });
        return;
    }
    for outbox in list.drain(..) {
        write(&outbox);
    }
}
