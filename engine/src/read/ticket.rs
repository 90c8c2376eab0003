//! Prefetch tickets: a batch read on a background worker, collected later.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam::channel::{bounded, unbounded, Receiver, Sender};

use super::{Direct, ReadError, ReadStats};

type Reply = Result<(Vec<u8>, ReadStats), ReadError>;

/// A batch being read: [`wait`](Ticket::wait) for its rows. Owns its output
/// buffer; dropping it unwaited is safe (the worker's reply is discarded).
#[must_use = "a ticket's rows are only had through wait()"]
pub struct Ticket {
    state: State,
}

enum State {
    Ready(Box<Reply>),
    Pending { rx: Receiver<Reply>, path: PathBuf },
}

impl Ticket {
    pub(super) fn ready(r: Reply) -> Ticket {
        Ticket { state: State::Ready(Box::new(r)) }
    }

    /// Whether `wait` would return without blocking.
    pub fn is_ready(&self) -> bool {
        match &self.state {
            State::Ready(_) => true,
            State::Pending { rx, .. } => !rx.is_empty(),
        }
    }

    /// Blocks until the batch is read: the rows (row `i` at `i * row_bytes`, as
    /// [`read_rows`](super::RowReader::read_rows) writes them) and the stats, or
    /// the read's error.
    pub fn wait(self) -> Result<(Vec<u8>, ReadStats), ReadError> {
        match self.state {
            State::Ready(r) => *r,
            State::Pending { rx, path } => rx.recv().unwrap_or_else(|_| {
                Err(ReadError::Io { path, offset: 0, source: io::Error::other("prefetch worker stopped") })
            }),
        }
    }
}

struct Job {
    direct: Arc<Direct>,
    slots: Vec<u32>,
    reply: Sender<Reply>,
}

/// The workers of one reader, started on its first prefetch; dropping the pool
/// lets them finish the queued jobs and joins them.
pub(super) struct TicketPool {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl TicketPool {
    pub(super) fn new(threads: usize) -> TicketPool {
        let (tx, rx) = unbounded::<Job>();
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("scone-prefetch-{i}")).spawn(move || {
                for job in rx.iter() {
                    let mut out = vec![0u8; job.slots.len() * job.direct.row_bytes];
                    let r = job.direct.read_rows(&job.slots, &mut out).map(|st| (out, st));
                    // The ticket may have been dropped: nobody wants the rows.
                    let _ = job.reply.send(r);
                }
            });
            // A pool short of threads still works; with none, submit reads inline.
            if let Ok(w) = spawned {
                workers.push(w);
            }
        }
        TicketPool { jobs: Some(tx), workers }
    }

    pub(super) fn submit(&self, direct: Arc<Direct>, slots: Vec<u32>) -> Ticket {
        if self.workers.is_empty() {
            let mut out = vec![0u8; slots.len() * direct.row_bytes];
            return Ticket::ready(direct.read_rows(&slots, &mut out).map(|st| (out, st)));
        }
        let (reply, rx) = bounded(1);
        let path = direct.path.clone();
        let job = Job { direct, slots, reply };
        if let Some(jobs) = &self.jobs {
            // Workers only stop when `jobs` is dropped, so this succeeds; if it
            // did not, the reply sender would be dropped and wait() would say so.
            let _ = jobs.send(job);
        }
        Ticket { state: State::Pending { rx, path } }
    }
}

impl Drop for TicketPool {
    fn drop(&mut self) {
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
