//! The edge's worker threads, and which one a connection runs on.
//!
//! Each worker is a single-threaded runtime that serves the connections placed on it from accept
//! to close, as nginx-rtmp's worker processes do; there is no work-stealing pool. With a pool, an
//! idle second thread answers each socket the moment it turns readable, so the audio and the
//! video message an encoder writes for one instant cost two wake-ups and two reads instead of
//! one: two threads cost 14–17 % more CPU per ingested GB than one (docs/benchmarks.md).
//!
//! So connections are packed, not spread: a new one goes to the first worker that is not
//! [full](Shared::full), and a lightly loaded edge runs on its first thread alone while the
//! others wait for the load that needs them. Connections never move once placed. A publisher's
//! players are written from its own thread, on whichever workers they run, with two exceptions
//! that keep a thread from carrying what another has room for: [`spawn_helper`] spreads a large
//! fan-out over all workers, and a busy worker hands a growing share of its streams' writes to
//! the least busy one ([`relief`]).
//!
//! The first worker is the thread that runs the edge (it also accepts, serves HTTP and talks to
//! the registry); [`Workers::start`] adds the others and [`Workers`]'s drop stops them.

use std::{
    cell::RefCell,
    future::Future,
    sync::{
        Arc, Weak,
        atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use tokio::{net::TcpStream, runtime::Handle, sync::oneshot};

/// How often each worker's load is measured; also the window [`BURST`] counts in.
const SAMPLE: Duration = Duration::from_millis(100);

/// A worker busier than this (in thousandths of the last [`SAMPLE`]) takes no new connection
/// while another is below it. Low enough that the connections already there keep room to grow
/// (a publisher's players joining, a keyframe burst), high enough that two threads are not woken
/// for a load one carries.
const BUSY_PERMILLE: u32 = 600;

/// Connections a worker takes in one [`SAMPLE`] before the next takes the rest: its measured load
/// cannot show connections that have not sent anything yet, and a fleet reconnecting after a
/// restart must not land on one thread.
const BURST: u32 = 64;

/// Relief (see [`relief`]) grows by this share of a busy worker's streams (in thousandths) per
/// [`SAMPLE`] while another worker is at least [`RELIEF_MARGIN`] less busy, and shrinks by it once
/// the worker is below [`BUSY_PERMILLE`] by that margin: a stream at a time moves, never all at
/// once, which would only move the whole load to the other thread and back each sample.
const RELIEF_STEP: u32 = 100;

/// How much less busy (in thousandths) another worker must be to take a busy one's writes.
const RELIEF_MARGIN: u32 = 150;

/// The workers of one edge, shared by all of them.
struct Shared {
    handles: Vec<Handle>,
    /// Per worker: busy time over the last sample, in thousandths.
    busy: Vec<AtomicU32>,
    /// Per worker: connections placed on it since the last sample.
    placed: Vec<AtomicU32>,
    /// Per worker: connections running on it now.
    connections: Vec<Arc<AtomicUsize>>,
    /// Round-robin position of [`spawn_helper`].
    next_helper: AtomicUsize,
    /// Per worker: the share of its streams (thousandths) whose players another worker writes.
    relief: Vec<AtomicU32>,
    /// Per worker: the worker that writes them.
    relief_to: Vec<AtomicUsize>,
}

thread_local! {
    /// The workers of the edge this thread is one of, and its index; `None` on any other thread
    /// (tests, blocking threads), where everything is spawned on the current runtime.
    static CURRENT: RefCell<Option<(Arc<Shared>, usize)>> = const { RefCell::new(None) };
}

/// The running workers; dropping it stops all but the first (the caller's thread).
pub(crate) struct Workers {
    shared: Arc<Shared>,
    _stop: Vec<oneshot::Sender<()>>,
}

/// One worker's load, for the metrics.
pub(crate) struct Load {
    pub(crate) busy: f64,
    pub(crate) connections: usize,
}

impl Workers {
    /// Makes the calling thread, inside its single-threaded runtime, the first of `count`
    /// workers and starts the others. Fails only when the OS refuses a thread or a runtime.
    pub(crate) fn start(count: usize) -> std::io::Result<Workers> {
        Workers::start_measured(count, true)
    }

    /// [`Workers::start`], optionally without the load measurement (tests set the loads).
    fn start_measured(count: usize, measured: bool) -> std::io::Result<Workers> {
        let count = count.max(1);
        let mut handles = vec![Handle::current()];
        let mut stop = Vec::new();
        let mut runtimes = Vec::new();
        for _ in 1..count {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(rt.handle().clone());
            runtimes.push(rt);
        }
        let shared = Arc::new(Shared {
            busy: (0..count).map(|_| AtomicU32::new(0)).collect(),
            placed: (0..count).map(|_| AtomicU32::new(0)).collect(),
            connections: (0..count).map(|_| Arc::new(AtomicUsize::new(0))).collect(),
            next_helper: AtomicUsize::new(0),
            relief: (0..count).map(|_| AtomicU32::new(0)).collect(),
            relief_to: (0..count).map(|_| AtomicUsize::new(0)).collect(),
            handles,
        });
        for (i, rt) in runtimes.into_iter().enumerate() {
            let index = i + 1;
            let (tx, rx) = oneshot::channel::<()>();
            let s = shared.clone();
            std::thread::Builder::new().name(format!("edge-worker-{index}")).spawn(move || {
                CURRENT.with(|c| *c.borrow_mut() = Some((s, index)));
                // Until the edge drops its `Workers`; the runtime's drop then ends what is left.
                let _ = rt.block_on(rx);
                CURRENT.with(|c| c.borrow_mut().take());
            })?;
            stop.push(tx);
        }
        CURRENT.with(|c| *c.borrow_mut() = Some((shared.clone(), 0)));
        if count > 1 && measured {
            tokio::spawn(measure(Arc::downgrade(&shared)));
        }
        Ok(Workers { shared, _stop: stop })
    }

    /// How many workers run, this thread included.
    pub(crate) fn count(&self) -> usize {
        self.shared.handles.len()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Dropping the senders (after this) ends the other workers' `block_on`.
        CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            if c.as_ref().is_some_and(|(s, _)| Arc::ptr_eq(s, &self.shared)) {
                c.take();
            }
        });
    }
}

impl Shared {
    /// Whether worker `i` takes no new connection while another does.
    fn full(&self, i: usize) -> bool {
        self.busy[i].load(Relaxed) >= BUSY_PERMILLE || self.placed[i].load(Relaxed) >= BURST
    }

    /// The first worker not full; when all are, the least busy (then the one that took fewest
    /// connections in this sample).
    fn choose(&self) -> usize {
        (0..self.handles.len()).find(|&i| !self.full(i)).unwrap_or_else(|| {
            (0..self.handles.len())
                .min_by_key(|&i| (self.busy[i].load(Relaxed), self.placed[i].load(Relaxed)))
                .unwrap_or(0)
        })
    }

    /// Moves each worker's relief one step after a sample: up while it is busy and the least
    /// busy other worker has room, down once it has room itself (see [`RELIEF_STEP`]).
    fn adjust_relief(&self) {
        let busy: Vec<u32> = self.busy.iter().map(|b| b.load(Relaxed)).collect();
        for (i, &mine) in busy.iter().enumerate() {
            let other = (0..busy.len()).filter(|&j| j != i).min_by_key(|&j| busy[j]);
            let share = self.relief[i].load(Relaxed);
            let share = match other {
                Some(j) if mine >= BUSY_PERMILLE && busy[j] + RELIEF_MARGIN <= mine => {
                    self.relief_to[i].store(j, Relaxed);
                    (share + RELIEF_STEP).min(1000)
                }
                _ if mine + RELIEF_MARGIN < BUSY_PERMILLE => share.saturating_sub(RELIEF_STEP),
                _ => share,
            };
            self.relief[i].store(share, Relaxed);
        }
    }

    /// Chooses the worker for a new connection and counts the connection on it.
    fn place(&self) -> (usize, Placed) {
        let target = self.choose();
        self.placed[target].fetch_add(1, Relaxed);
        let counted = self.connections[target].clone();
        counted.fetch_add(1, Relaxed);
        (target, Placed(counted))
    }
}

/// Updates each worker's busy share every [`SAMPLE`] from its runtime's own accounting (time
/// spent running tasks, not waiting for events), until the workers are dropped.
async fn measure(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(SAMPLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let busy_now =
        |s: &Shared| -> Vec<Duration> { s.handles.iter().map(|h| h.metrics().worker_total_busy_duration(0)).collect() };
    tick.tick().await; // the first tick is now: a sample starts here
    let Some(s) = shared.upgrade() else { return };
    let (mut last, mut at) = (busy_now(&s), tokio::time::Instant::now());
    drop(s);
    loop {
        tick.tick().await;
        let Some(s) = shared.upgrade() else { return };
        let (busy, now) = (busy_now(&s), tokio::time::Instant::now());
        let wall = now.saturating_duration_since(at).as_nanos().max(1);
        for (i, (b, l)) in busy.iter().zip(&last).enumerate() {
            let share = b.saturating_sub(*l).as_nanos().saturating_mul(1000) / wall;
            s.busy[i].store(u32::try_from(share.min(1000)).unwrap_or(1000), Relaxed);
            s.placed[i].store(0, Relaxed);
        }
        s.adjust_relief();
        (last, at) = (busy, now);
    }
}

/// Counts a connection on its worker for as long as it lives.
struct Placed(Arc<AtomicUsize>);

impl Drop for Placed {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Runs a new connection's task (`serve`, from accept to close) on the worker chosen for it.
/// On another worker the socket is registered with that worker's event loop, so its reads wake
/// that thread only. Called on a worker thread; elsewhere it runs on the current runtime.
pub(crate) fn spawn_connection<F, Fut>(socket: TcpStream, serve: F)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some((shared, me)) = CURRENT.with(|c| c.borrow().clone()) else {
        tokio::spawn(serve(socket));
        return;
    };
    let (target, placed) = shared.place();
    if target == me {
        tokio::spawn(async move {
            let _placed = placed;
            serve(socket).await
        });
        return;
    }
    let socket = match socket.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "connection closed: cannot move it to its worker thread");
            return;
        }
    };
    shared.handles[target].spawn(async move {
        let _placed = placed;
        match TcpStream::from_std(socket) {
            Ok(socket) => serve(socket).await,
            Err(e) => tracing::warn!(error = %e, "connection closed: its worker thread cannot watch it"),
        }
    });
}

/// Runs a connection's task that has no socket of its own (an SRT caller, whose packets arrive
/// through the listener) on the worker chosen for it, as [`spawn_connection`] does.
pub(crate) fn spawn_placed(task: impl Future<Output = ()> + Send + 'static) {
    let Some((shared, _)) = CURRENT.with(|c| c.borrow().clone()) else {
        tokio::spawn(task);
        return;
    };
    let (target, placed) = shared.place();
    shared.handles[target].spawn(async move {
        let _placed = placed;
        task.await
    });
}

/// Runs a short task that shares out a large fan-out's writes: on the workers in turn, so a
/// stream with thousands of players is written by all threads at once.
pub(crate) fn spawn_helper(task: impl Future<Output = ()> + Send + 'static) {
    match CURRENT.with(|c| c.borrow().clone()) {
        Some((shared, _)) if shared.handles.len() > 1 => {
            let i = shared.next_helper.fetch_add(1, Relaxed) % shared.handles.len();
            shared.handles[i].spawn(task);
        }
        _ => {
            tokio::spawn(task);
        }
    }
}

/// The worker that writes the players of the stream identified by `key` (any value stable for
/// the stream) instead of this thread, when this thread is a busy worker handing part of its
/// streams' writes to a less busy one: connections stay where they were placed, and the writes
/// for their players, most of a publisher's cost, move a share of streams at a time to where
/// there is room. `None`: write them here.
pub(crate) fn relief(key: usize) -> Option<Handle> {
    CURRENT.with(|c| {
        let c = c.borrow();
        let (shared, me) = c.as_ref()?;
        let share = shared.relief.get(*me)?.load(Relaxed);
        if share == 0 || spread_key(key) >= share {
            return None;
        }
        shared.handles.get(shared.relief_to[*me].load(Relaxed)).cloned()
    })
}

/// `key` spread evenly over 0..1000, so that a share of streams is about that share of keys.
fn spread_key(key: usize) -> u32 {
    let mixed = (key as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    (mixed % 1000) as u32
}

/// Each worker's load over the last sample and its connections, first worker first; empty off
/// the workers' threads.
pub(crate) fn loads() -> Vec<Load> {
    CURRENT.with(|c| match c.borrow().as_ref() {
        Some((s, _)) => (0..s.handles.len())
            .map(|i| Load {
                busy: f64::from(s.busy[i].load(Relaxed)) / 1000.0,
                connections: s.connections[i].load(Relaxed),
            })
            .collect(),
        None => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Runs `f` on a single-threaded runtime, as the edge runs its first worker.
    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    /// A connection placed by `spawn_connection`: the worker thread it ran on, after echoing
    /// one byte back over its socket.
    async fn place_one(listener: &tokio::net::TcpListener) -> String {
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (socket, _) = listener.accept().await.unwrap();
        let (tx, rx) = oneshot::channel();
        spawn_connection(socket, move |mut socket| async move {
            let mut b = [0u8; 1];
            if socket.read_exact(&mut b).await.is_ok() {
                let _ = socket.write_all(&b).await;
            }
            let name = std::thread::current().name().unwrap_or("").to_string();
            let _ = tx.send(name);
        });
        client.write_all(b"x").await.unwrap();
        let mut back = [0u8; 1];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"x", "the socket works on the thread it was moved to");
        rx.await.unwrap()
    }

    #[test]
    fn connections_fill_the_first_worker_then_go_to_the_next() {
        block_on(async {
            let main = std::thread::current().name().unwrap_or("").to_string();
            let workers = Workers::start_measured(2, false).unwrap();
            assert_eq!(workers.count(), 2);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();

            assert_eq!(place_one(&listener).await, main, "an idle edge keeps its connections on one thread");

            workers.shared.busy[0].store(BUSY_PERMILLE, Relaxed);
            assert_eq!(place_one(&listener).await, "edge-worker-1", "a busy first worker passes them on");

            workers.shared.busy[0].store(950, Relaxed);
            workers.shared.busy[1].store(700, Relaxed);
            assert_eq!(place_one(&listener).await, "edge-worker-1", "with all busy, the least busy takes it");

            workers.shared.busy[0].store(0, Relaxed);
            workers.shared.placed[0].store(BURST, Relaxed);
            workers.shared.busy[1].store(0, Relaxed);
            assert_eq!(place_one(&listener).await, "edge-worker-1", "a burst of connections is shared out");
        });
    }

    #[test]
    fn the_load_is_measured_and_connections_counted_while_they_live() {
        block_on(async {
            let _workers = Workers::start(2).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let _client = TcpStream::connect(addr).await.unwrap();
            let (socket, _) = listener.accept().await.unwrap();
            let (hold_tx, hold_rx) = oneshot::channel::<()>();
            spawn_connection(socket, move |_socket| async move {
                let _ = hold_rx.await;
            });
            assert_eq!(loads().iter().map(|l| l.connections).collect::<Vec<_>>(), [1, 0]);
            // A task on the first worker that never lets it wait shows as busy once a sample is
            // taken (the measuring task runs between its yields).
            let spinning = tokio::spawn(async {
                let give_up = std::time::Instant::now() + Duration::from_secs(10);
                while loads()[0].busy < 0.2 && std::time::Instant::now() < give_up {
                    tokio::task::yield_now().await;
                }
                loads()[0].busy
            });
            let busy = spinning.await.unwrap();
            // Not all of it: the runtime's polls for events between the yields are not tasks.
            assert!(busy >= 0.2, "a spinning worker never showed as busy: {busy}");
            assert!(loads()[1].busy < 0.1, "an idle worker shows as idle");
            drop(hold_tx);
            let closed = async {
                while loads()[0].connections != 0 {
                    tokio::task::yield_now().await;
                }
            };
            tokio::time::timeout(Duration::from_secs(10), closed)
                .await
                .expect("a closed connection is no longer counted");
        });
    }

    #[test]
    fn a_busy_worker_hands_a_growing_share_of_its_streams_to_the_least_busy() {
        block_on(async {
            let workers = Workers::start_measured(3, false).unwrap();
            let s = &workers.shared;
            let streams: Vec<usize> = (0..2000).map(|i| 0x1000 + i * 0x40).collect();
            let relieved = || streams.iter().filter(|&&k| relief(k).is_some()).count();
            let set = |b: [u32; 3]| {
                for (i, v) in b.into_iter().enumerate() {
                    s.busy[i].store(v, Relaxed);
                }
                s.adjust_relief();
            };
            assert_eq!(relieved(), 0, "a worker with room writes its own players");

            set([700, 400, 100]);
            let one_step = relieved();
            assert!((100..300).contains(&one_step), "one step moves about a tenth: {one_step}");
            set([700, 400, 100]);
            let two_steps = relieved();
            assert!(two_steps > one_step && two_steps < 500, "{one_step} then {two_steps}");
            // The same streams stay moved: a stream's key decides, not chance.
            assert_eq!(relieved(), two_steps);

            set([550, 400, 100]);
            assert_eq!(relieved(), two_steps, "between the marks the share holds");
            set([300, 400, 100]);
            assert!(relieved() < two_steps, "with room again, streams come back");
            set([300, 400, 100]);
            set([300, 400, 100]);
            assert_eq!(relieved(), 0);

            set([900, 850, 800]);
            assert_eq!(relieved(), 0, "with every worker busy, nobody has room to offer");
        });
    }

    #[test]
    fn relief_goes_to_the_least_busy_worker() {
        block_on(async {
            let workers = Workers::start_measured(3, false).unwrap();
            let s = &workers.shared;
            for _ in 0..10 {
                s.busy[0].store(900, Relaxed);
                s.busy[1].store(500, Relaxed);
                s.busy[2].store(100, Relaxed);
                s.adjust_relief();
            }
            let (tx, rx) = oneshot::channel();
            relief(0x1234).expect("all streams relieved").spawn(async move {
                let _ = tx.send(std::thread::current().name().unwrap_or("").to_string());
            });
            assert_eq!(rx.await.unwrap(), "edge-worker-2");
        });
    }

    #[test]
    fn off_the_workers_everything_runs_on_the_current_runtime() {
        block_on(async {
            assert!(loads().is_empty());
            assert!(relief(0).is_none());
            let (tx, rx) = oneshot::channel();
            spawn_helper(async move {
                let _ = tx.send(std::thread::current().id());
            });
            assert_eq!(rx.await.unwrap(), std::thread::current().id());
        });
    }
}
