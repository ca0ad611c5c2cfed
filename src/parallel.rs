//! Work on every core, results in the order the work was handed in.
//!
//! Packing (reading input files), compressing blocks, scanning (decoding blocks) and
//! verifying (checking shards) have one shape: a sequence of jobs whose results must be
//! taken in sequence, because an archive's bytes and a report's order may not depend on the
//! number of threads, with a bound on the jobs not yet taken so that memory stays bounded.
//! [`Ordered`] is that shape, once: worker threads that each keep a state of their own (a
//! zstd context, an open folder), one queue of jobs, and a reorder buffer. It runs on
//! threads it owns ([`Ordered::spawn`]) or inside a [`std::thread::scope`] so that jobs may
//! borrow ([`in_order`]).

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Scope};

/// The number of worker threads to use by default: one per core.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A result as a worker hands it back: `Err` when the job panicked.
type Outcome<R> = std::thread::Result<R>;
type Jobs<J> = Arc<Mutex<Receiver<(u64, J)>>>;

/// Jobs run on worker threads, their results taken in submission order. At most `ahead`
/// jobs are submitted and not yet taken; [`Ordered::submit`] waits for the oldest when the
/// window is full.
pub(crate) struct Ordered<'scope, J, R> {
    /// Closing it ends the workers.
    jobs: Option<SyncSender<(u64, J)>>,
    results: Receiver<(u64, Outcome<R>)>,
    /// The threads of [`Ordered::spawn`], joined on drop; a scope joins its own.
    owned: Vec<JoinHandle<()>>,
    ahead: u64,
    submitted: u64,
    /// Results taken out of the pool: handed to the caller or waiting in `ready`.
    taken: u64,
    /// Results received out of order, by sequence number.
    early: BTreeMap<u64, Outcome<R>>,
    /// The oldest results, taken out to make room for a submission, not yet handed on.
    ready: VecDeque<R>,
    _scope: PhantomData<&'scope ()>,
}

/// The loop of one worker: take a job, run it, send the result back, until either side
/// closes.
fn serve<S, J, R>(
    mut state: S,
    jobs: &Mutex<Receiver<(u64, J)>>,
    results: &Sender<(u64, Outcome<R>)>,
    work: &(impl Fn(&mut S, J) -> R + ?Sized),
) {
    loop {
        let next = match jobs.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok((seq, job)) = next else { return };
        // A panic becomes that job's result, so that the caller waiting for it hears of it
        // instead of waiting for ever; the worker stops, as its state may be broken.
        let outcome = catch_unwind(AssertUnwindSafe(|| work(&mut state, job)));
        let failed = outcome.is_err();
        if results.send((seq, outcome)).is_err() || failed {
            return;
        }
    }
}

impl<J: Send + 'static, R: Send + 'static> Ordered<'static, J, R> {
    /// One worker thread per state in `states`, each running `work` with its own state.
    ///
    /// # Errors
    /// No thread could be started.
    pub(crate) fn spawn<S: Send + 'static>(
        name: &str,
        states: Vec<S>,
        ahead: usize,
        work: impl Fn(&mut S, J) -> R + Send + Sync + 'static,
    ) -> io::Result<Self> {
        let (mut pool, jobs, results) = Ordered::channels(ahead, states.len());
        let work = Arc::new(work);
        for state in states {
            let (jobs, results, work) = (Arc::clone(&jobs), results.clone(), Arc::clone(&work));
            let started = std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || serve(state, &jobs, &results, &*work));
            match started {
                Ok(handle) => pool.owned.push(handle),
                Err(e) if pool.owned.is_empty() => return Err(e),
                // Fewer threads than asked still do the work.
                Err(_) => break,
            }
        }
        Ok(pool)
    }
}

impl<'scope, J: Send + 'scope, R: Send + 'scope> Ordered<'scope, J, R> {
    /// Like [`Ordered::spawn`], on threads of `scope`, so jobs and `work` may borrow. The
    /// pool must be dropped before the scope ends (the scope waits for its workers, and
    /// they end when the pool is dropped).
    ///
    /// # Errors
    /// No thread could be started.
    pub(crate) fn scoped<'env, S: Send + 'scope, F>(
        scope: &'scope Scope<'scope, 'env>,
        states: Vec<S>,
        ahead: usize,
        work: &'scope F,
    ) -> io::Result<Self>
    where
        F: Fn(&mut S, J) -> R + Sync,
    {
        let (pool, jobs, results) = Ordered::channels(ahead, states.len());
        let mut started = 0;
        for state in states {
            let (jobs, results) = (Arc::clone(&jobs), results.clone());
            let spawned = std::thread::Builder::new()
                .name("shardpack-worker".into())
                .spawn_scoped(scope, move || serve(state, &jobs, &results, work));
            match spawned {
                Ok(_) => started += 1,
                Err(e) if started == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(pool)
    }

    #[allow(clippy::type_complexity)]
    fn channels(ahead: usize, threads: usize) -> (Self, Jobs<J>, Sender<(u64, Outcome<R>)>) {
        let ahead = ahead.max(1);
        let (job_tx, job_rx) = mpsc::sync_channel(ahead);
        let (result_tx, result_rx) = mpsc::channel();
        let pool = Ordered {
            jobs: Some(job_tx),
            results: result_rx,
            owned: Vec::with_capacity(threads),
            ahead: ahead as u64,
            submitted: 0,
            taken: 0,
            early: BTreeMap::new(),
            ready: VecDeque::new(),
            _scope: PhantomData,
        };
        (pool, Arc::new(Mutex::new(job_rx)), result_tx)
    }

    /// Hands a job to the workers, first waiting for the oldest result when `ahead` jobs are
    /// not yet taken (it is kept for [`Ordered::try_next`]).
    ///
    /// # Errors
    /// The workers stopped, or the job waited for panicked.
    pub(crate) fn submit(&mut self, job: J) -> io::Result<()> {
        if self.submitted - self.taken >= self.ahead {
            let oldest = self.wait_oldest()?;
            self.ready.push_back(oldest);
        }
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send((self.submitted, job)).map_err(|_| stopped())?;
        self.submitted += 1;
        Ok(())
    }

    /// Takes `result`, worked out by the caller, as the next in order: for work too small
    /// to be worth a hand-over to a worker.
    pub(crate) fn submit_done(&mut self, result: R) {
        self.early.insert(self.submitted, Ok(result));
        self.submitted += 1;
    }

    /// The oldest result not yet taken, if it is done.
    pub(crate) fn try_next(&mut self) -> Option<io::Result<R>> {
        if let Some(r) = self.ready.pop_front() {
            return Some(Ok(r));
        }
        if self.taken == self.submitted {
            return None;
        }
        while !self.early.contains_key(&self.taken) {
            let (seq, outcome) = self.results.try_recv().ok()?;
            self.early.insert(seq, outcome);
        }
        Some(self.take_early())
    }

    /// The oldest result not yet taken, waiting for it; `None` when every job's result was.
    pub(crate) fn next(&mut self) -> Option<io::Result<R>> {
        if let Some(r) = self.ready.pop_front() {
            return Some(Ok(r));
        }
        (self.taken < self.submitted).then(|| self.wait_oldest())
    }

    fn wait_oldest(&mut self) -> io::Result<R> {
        while !self.early.contains_key(&self.taken) {
            let (seq, outcome) = self.results.recv().map_err(|_| stopped())?;
            self.early.insert(seq, outcome);
        }
        self.take_early()
    }

    fn take_early(&mut self) -> io::Result<R> {
        let outcome = self.early.remove(&self.taken).ok_or_else(stopped)?;
        self.taken += 1;
        outcome.map_err(|_| io::Error::other("a worker thread panicked"))
    }
}

impl<J, R> Drop for Ordered<'_, J, R> {
    fn drop(&mut self) {
        self.jobs = None;
        for handle in self.owned.drain(..) {
            let _ = handle.join();
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("the worker threads stopped")
}

/// Runs `work` on every item, one worker per state in `states` with at most `ahead` items
/// in flight, and calls `consume` with the results in item order on the calling thread.
/// Stops at the first error `consume` returns. A worker that could not start or panicked
/// is reported through `stopped`.
///
/// # Errors
/// The first error of `consume`, or what `stopped` makes of a pool failure.
pub(crate) fn in_order<S, J, R, E>(
    states: Vec<S>,
    ahead: usize,
    items: impl IntoIterator<Item = J>,
    work: impl Fn(&mut S, J) -> R + Sync,
    mut consume: impl FnMut(R) -> Result<(), E>,
    stopped: impl Fn(io::Error) -> E,
) -> Result<(), E>
where
    S: Send,
    J: Send,
    R: Send,
{
    let work = &work;
    std::thread::scope(|scope| {
        let mut pool = Ordered::scoped(scope, states, ahead, work).map_err(&stopped)?;
        for item in items {
            pool.submit(item).map_err(&stopped)?;
            while let Some(result) = pool.try_next() {
                consume(result.map_err(&stopped)?)?;
            }
        }
        while let Some(result) = pool.next() {
            consume(result.map_err(&stopped)?)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn results_come_back_in_submission_order_whatever_the_finishing_order() {
        let mut pool = Ordered::spawn("test", vec![(); 4], 8, |_, i: u64| {
            // Later jobs finish first.
            std::thread::sleep(Duration::from_millis(20 - i.min(20)));
            i
        })
        .unwrap();
        let mut got = Vec::new();
        for i in 0..20 {
            pool.submit(i).unwrap();
            while let Some(r) = pool.try_next() {
                got.push(r.unwrap());
            }
        }
        while let Some(r) = pool.next() {
            got.push(r.unwrap());
        }
        assert_eq!(got, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn results_worked_out_by_the_caller_keep_their_place_among_the_jobs() {
        let mut pool = Ordered::spawn("test", vec![(); 2], 4, |_, i: u64| {
            std::thread::sleep(Duration::from_millis(10));
            i
        })
        .unwrap();
        let mut got = Vec::new();
        for i in 0..12 {
            if i % 3 == 0 {
                pool.submit(i).unwrap();
            } else {
                pool.submit_done(i);
            }
            while let Some(r) = pool.try_next() {
                got.push(r.unwrap());
            }
        }
        while let Some(r) = pool.next() {
            got.push(r.unwrap());
        }
        assert_eq!(got, (0..12).collect::<Vec<_>>());
    }

    #[test]
    fn no_more_than_ahead_jobs_are_outstanding() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let mut taken = 0;
        in_order(
            vec![(); 3],
            4,
            0..100u32,
            |_, i| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_micros(200));
                running.fetch_sub(1, Ordering::SeqCst);
                i
            },
            |i| {
                assert_eq!(i, taken);
                taken += 1;
                Ok::<(), io::Error>(())
            },
            |e| e,
        )
        .unwrap();
        assert_eq!(taken, 100);
        assert!(most.load(Ordering::SeqCst) <= 3);
    }

    #[test]
    fn each_worker_keeps_its_own_state() {
        let mut sums = Vec::new();
        let mut pool = Ordered::spawn("test", vec![0u64; 2], 4, |seen: &mut u64, i: u64| {
            *seen += 1;
            (i, *seen)
        })
        .unwrap();
        for i in 0..50 {
            pool.submit(i).unwrap();
        }
        while let Some(r) = pool.next() {
            sums.push(r.unwrap());
        }
        assert_eq!(
            sums.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            (0..50).collect::<Vec<_>>()
        );
        assert!(sums.iter().all(|&(_, seen)| (1..=50).contains(&seen)));
    }

    #[test]
    fn a_panicking_job_is_an_error_for_its_result_not_a_hang() {
        let mut pool = Ordered::spawn("test", vec![(); 1], 4, |_, i: u32| {
            assert!(i != 1, "job 1 fails");
            i
        })
        .unwrap();
        pool.submit(0).unwrap();
        pool.submit(1).unwrap();
        assert_eq!(pool.next().unwrap().unwrap(), 0);
        assert!(pool.next().unwrap().is_err());
        // The one worker is gone: a further job is an error, not a wait for ever.
        let later = pool.submit(2).and_then(|()| pool.next().unwrap());
        assert!(later.is_err());
    }

    #[test]
    fn an_error_of_the_consumer_stops_the_run() {
        let seen = AtomicUsize::new(0);
        let result = in_order(
            vec![(); 2],
            2,
            0..1000u32,
            |_, i| {
                seen.fetch_add(1, Ordering::SeqCst);
                i
            },
            |i| {
                if i == 5 {
                    Err(io::Error::other("stop"))
                } else {
                    Ok(())
                }
            },
            |e| e,
        );
        assert!(result.is_err());
        assert!(seen.load(Ordering::SeqCst) < 20);
    }
}
