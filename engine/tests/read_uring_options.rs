//! io_uring options: a submission-queue polling thread (SQPOLL), or the
//! fallback to a plain ring where the kernel refuses it; reads are the same.

mod common;

use common::*;
use engine::read::{
    AlignedBuf, Backend, BackendKind, ReadMode, ReadReq, ReaderOptions, RegisteredBuf, RingSetup, RowReader,
    UringBackend,
};
use engine::{Dtype, Table, MISS_SLOT};
use rand::{Rng, SeedableRng};

#[test]
fn sqpoll_or_its_fallback_reads_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    for (dim, dtype) in [(100, Dtype::BF16), (2048, Dtype::F16)] {
        let path = make_table(dir.path(), &format!("s{dim}.scone"), dim as u64, 300, dim, dtype);
        let t = Table::open(&path).unwrap();
        if !uring_available(&path) {
            continue;
        }
        let b = UringBackend::with_sqpoll(std::fs::File::open(&path).unwrap(), 8, Some(10)).unwrap();
        let on = b.sqpoll();
        assert_eq!(on, b.sqpoll_refused().is_none(), "refused: {:?}", b.sqpoll_refused());
        if !on {
            eprintln!("SQPOLL refused here ({:?}): the fallback ring is tested", b.sqpoll_refused());
        }
        assert!(!UringBackend::new(std::fs::File::open(&path).unwrap(), 8).unwrap().sqpoll());
        let slots: Vec<u32> = (0..300).rev().chain((0..300).step_by(7)).chain([MISS_SLOT, 5, 5]).collect();
        let want = reference(&t, &slots);
        for sqpoll in [None, Some(10), Some(0)] {
            for (backend, queue_depth) in [(BackendKind::Uring, 1), (BackendKind::Uring, 32), (BackendKind::Auto, 128)]
            {
                for hot_bytes in [0, 20 * 4096] {
                    let mode = ReadMode::Direct { backend, queue_depth };
                    let opts = ReaderOptions { sqpoll, hot_bytes, ..ReaderOptions::default() };
                    let r = RowReader::open_with(&t, mode, opts).unwrap();
                    let info = r.mode_info();
                    assert_eq!(info.sqpoll, sqpoll.is_some() && on, "{info:?}");
                    assert_eq!(r.describe().contains("io_uring with SQPOLL"), info.sqpoll, "{}", r.describe());
                    // Twice, with a pause past the idle time between (the poller sleeps, then wakes).
                    for round in 0..2 {
                        let mut got = AlignedBuf::new(want.len()).unwrap();
                        r.read_rows(&slots, &mut got).unwrap();
                        assert!(got[..] == want[..], "{mode:?} {sqpoll:?} round {round}");
                        let mut v = vec![0u8; want.len()];
                        r.read_rows(&slots, &mut v).unwrap();
                        assert!(v == want);
                        std::thread::sleep(std::time::Duration::from_millis(15));
                    }
                    let tickets: Vec<_> = (0..6).map(|_| r.prefetch(slots.clone())).collect();
                    for tk in tickets.into_iter().rev() {
                        assert!(tk.wait().unwrap().0 == want);
                    }
                }
            }
        }
    }
}

#[test]
fn a_refused_sqpoll_falls_back_to_a_plain_ring() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "r.scone", 3, 200, 2048, Dtype::F16);
    let t = Table::open(&path).unwrap();
    if !uring_available(&path) {
        return;
    }
    // A CPU that is not online: the kernel refuses the SQPOLL ring (EINVAL).
    let file = || std::fs::File::open(&path).unwrap();
    let b = UringBackend::with_sqpoll_on_cpu(file(), 16, Some(10), Some(1 << 20)).unwrap();
    assert!(!b.sqpoll());
    assert!(b.sqpoll_refused().is_some());
    let r = RowReader::with_backend(&t, Box::new(b), ReaderOptions::default());
    assert!(!r.mode_info().sqpoll);
    let slots: Vec<u32> = (0..200).chain([MISS_SLOT, 9, 9]).collect();
    let want = reference(&t, &slots);
    for mut got in [AlignedBuf::new(want.len()).unwrap().to_vec(), vec![0u8; want.len()]] {
        r.read_rows(&slots, &mut got).unwrap();
        assert!(got == want);
    }
    let mut got = AlignedBuf::new(want.len()).unwrap();
    let st = r.read_rows(&slots, &mut got).unwrap();
    assert!(got[..] == want[..]);
    assert_eq!(st.bounce_bytes, 0);
    // Bound to CPU 0 (online), SQPOLL is on wherever it is on at all.
    let plain = UringBackend::with_sqpoll(file(), 16, Some(10)).unwrap();
    let on0 = UringBackend::with_sqpoll_on_cpu(file(), 16, Some(10), Some(0)).unwrap();
    assert_eq!(on0.sqpoll(), plain.sqpoll());
}

/// Whether this kernel gives io_uring a sparse registered-buffer table.
fn registered_buffers_available(path: &std::path::Path) -> bool {
    let mut b = UringBackend::new(std::fs::File::open(path).unwrap(), 4).unwrap();
    let ok = b.enable_registered_buffers(4).is_ok();
    if !ok {
        eprintln!("no sparse registered-buffer table here: unregistered reads are tested");
    }
    ok
}

#[test]
fn registered_bounce_buffers_read_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "g.scone", 17, 400, 100, Dtype::BF16);
    let t = Table::open(&path).unwrap();
    if !uring_available(&path) {
        return;
    }
    let avail = registered_buffers_available(&path);
    let slots: Vec<u32> = (0..400).rev().chain((0..400).step_by(5)).chain([MISS_SLOT, 2, 2]).collect();
    let want = reference(&t, &slots);
    for registered_buffers in [false, true] {
        for sqpoll in [None, Some(10)] {
            for (backend, queue_depth) in [(BackendKind::Uring, 1), (BackendKind::Uring, 32), (BackendKind::Auto, 64)] {
                let mode = ReadMode::Direct { backend, queue_depth };
                let opts =
                    ReaderOptions { registered_buffers, sqpoll, hot_bytes: 10 * 256, ..ReaderOptions::default() };
                let r = RowReader::open_with(&t, mode, opts).unwrap();
                assert_eq!(r.registered_buffers(), 0, "registered lazily, with the first bounce buffer");
                let mut got = vec![0u8; want.len()];
                let st = r.read_rows(&slots, &mut got).unwrap();
                assert!(got == want, "{mode:?} registered {registered_buffers}");
                assert!(st.bounce_bytes > 0);
                assert_eq!(r.registered_buffers(), usize::from(registered_buffers && avail));
                // Tickets on four workers: a bounce buffer each, each registered.
                let tickets: Vec<_> = (0..8).map(|_| r.prefetch(slots.clone())).collect();
                for tk in tickets {
                    assert!(tk.wait().unwrap().0 == want);
                }
                let n = r.registered_buffers();
                assert!(if registered_buffers && avail { (1..=5).contains(&n) } else { n == 0 }, "{n}");
            }
        }
    }
}

#[test]
fn a_replaced_registered_bounce_buffer_is_unregistered_first() {
    let dir = tempfile::tempdir().unwrap();
    // Rows of 1.2 MB: each is one span larger than the 1 MiB bounce buffer, and
    // row 1's aligned span is larger than row 0's, so reading row 1 after row 0
    // replaces the (registered) buffer.
    let path = make_table(dir.path(), "big.scone", 23, 3, 300_000, Dtype::F32);
    let t = Table::open(&path).unwrap();
    if !uring_available(&path) {
        return;
    }
    let avail = registered_buffers_available(&path);
    let opts = ReaderOptions { registered_buffers: true, bounce_bytes: 0, ..ReaderOptions::default() };
    let r = RowReader::open_with(&t, ReadMode::Direct { backend: BackendKind::Uring, queue_depth: 4 }, opts).unwrap();
    for slots in [vec![0], vec![1], vec![0], vec![2, 1, 0, 1], vec![MISS_SLOT, 2]] {
        let want = reference(&t, &slots);
        let mut got = vec![0u8; want.len()];
        r.read_rows(&slots, &mut got).unwrap();
        assert!(got == want, "{slots:?}");
        assert_eq!(r.registered_buffers(), usize::from(avail));
    }
}

#[test]
fn reads_into_a_registered_buffer_are_read_fixed() {
    use engine::read::{Backend, ReadReq};
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "x.scone", 29, 50, 2048, Dtype::F16);
    if !uring_available(&path) || !registered_buffers_available(&path) {
        return;
    }
    let expect = std::fs::read(&path).unwrap();
    let mut b = UringBackend::new(engine::read::open_file(&path, true).unwrap().0, 8).unwrap();
    b.enable_registered_buffers(2).unwrap();
    let mut buf = RegisteredBuf::new(&b, AlignedBuf::new(64 << 10).unwrap());
    assert!(buf.is_registered());
    assert_eq!(b.registered_buffers(), 1);
    {
        // Two requests inside the registered buffer, one outside.
        let mut other = AlignedBuf::new(8192).unwrap();
        let (x, y) = buf.split_at_mut(32 << 10);
        let mut reqs =
            [ReadReq::new(0, x, 32 << 10), ReadReq::new(40960, y, 32 << 10), ReadReq::new(8192, &mut other, 8192)];
        b.read_batch(&mut reqs).unwrap();
        assert_eq!(reqs[2].buf, &expect[8192..16384]);
    }
    assert_eq!(b.fixed_reads(), 2);
    assert_eq!(&buf[..32 << 10], &expect[..32 << 10]);
    assert_eq!(&buf[32 << 10..], &expect[40960..40960 + (32 << 10)]);
    let mut buf = buf.into_inner();
    assert_eq!(b.registered_buffers(), 0);
    let mut reqs = [ReadReq::new(4096, &mut buf[..4096], 4096)];
    b.read_batch(&mut reqs).unwrap();
    assert_eq!(b.fixed_reads(), 2, "unregistered: a plain read");
    assert_eq!(&buf[..4096], &expect[4096..8192]);
    // Slots run out: a third buffer is not registered.
    let page = || AlignedBuf::new(4096).unwrap();
    let (p, q) = (RegisteredBuf::new(&b, page()), RegisteredBuf::new(&b, page()));
    assert!(p.is_registered() && q.is_registered());
    let r = RegisteredBuf::new(&b, page());
    assert!(!r.is_registered());
    drop(p);
    assert_eq!(b.registered_buffers(), 1, "dropping a registered buffer unregisters it");
    let r = RegisteredBuf::new(&b, r.into_inner());
    assert!(r.is_registered(), "a freed slot is reused");
    drop((q, r));
    assert_eq!(b.registered_buffers(), 0);
    // A registration that outlives its backend ends with the ring: dropping
    // it afterwards is harmless.
    let late = RegisteredBuf::new(&b, page());
    assert!(late.is_registered());
    drop(b);
    drop(late);
}

#[test]
fn concurrent_batches_share_one_ring_and_keep_their_own_errors() {
    use engine::read::{Backend, ReadReq};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "c.scone", 31, 300, 2048, Dtype::F16);
    if !uring_available(&path) {
        return;
    }
    let expect = Arc::new(std::fs::read(&path).unwrap());
    let pages = expect.len() as u64 / 4096;
    for registered in [false, true] {
        let mut b = UringBackend::new(engine::read::open_file(&path, true).unwrap().0, 8).unwrap();
        if registered && b.enable_registered_buffers(8).is_err() {
            continue;
        }
        let b = Arc::new(b);
        let threads: Vec<_> = (0..6u64)
            .map(|t| {
                let (b, expect) = (Arc::clone(&b), Arc::clone(&expect));
                std::thread::spawn(move || {
                    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(t);
                    let mut buf = RegisteredBuf::new(&*b, AlignedBuf::new(40 * 8192).unwrap());
                    for round in 0..30 {
                        let n = rng.gen_range(1..40);
                        let offs: Vec<u64> = (0..n).map(|_| rng.gen_range(0..pages - 1) * 4096).collect();
                        // Every third batch of thread 0 also reads past the end of the file.
                        let bad = t == 0 && round % 3 == 0;
                        let mut reqs: Vec<ReadReq<'_>> = Vec::new();
                        let mut rest = &mut buf[..];
                        for (k, &o) in offs.iter().enumerate() {
                            let (head, tail) = rest.split_at_mut(8192);
                            let o = if bad && k == n / 2 { pages * 4096 + 4096 } else { o };
                            reqs.push(ReadReq::new(o, head, 8192));
                            rest = tail;
                        }
                        match b.read_batch(&mut reqs) {
                            Ok(()) => {
                                assert!(!bad);
                                for r in &reqs {
                                    let o = r.offset as usize;
                                    assert!(r.buf[..] == expect[o..o + 8192], "thread {t} round {round}");
                                }
                            }
                            Err(e) => {
                                assert!(bad, "thread {t} round {round}: {}", e.source);
                                assert_eq!(e.offset, pages * 4096 + 4096);
                                assert_eq!(e.source.kind(), std::io::ErrorKind::UnexpectedEof);
                            }
                        }
                    }
                    drop(buf);
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        if registered {
            assert!(b.fixed_reads() > 0);
        }
        assert_eq!(b.registered_buffers(), 0);
    }
}

/// The kernel release's (major, minor), e.g. (6, 18) for "6.18.44-...".
fn kernel_version() -> Option<(u32, u32)> {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut it = r.trim().split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The ring belongs to one I/O thread, so on Linux 6.1+ it is set up with
/// SINGLE_ISSUER + DEFER_TASKRUN; batches from many threads at once, and
/// buffer registrations from them, all go through that thread.
#[test]
fn one_io_thread_serves_batches_from_many_threads() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "m.scone", 7, 400, 512, Dtype::F16);
    if !uring_available(&path) {
        return;
    }
    let mut b = UringBackend::new(engine::read::open_file(&path, true).unwrap().0, 16).unwrap();
    match kernel_version() {
        Some(v) if v >= (6, 1) => assert_eq!(b.ring_setup(), RingSetup::DeferTaskrun),
        v => eprintln!("kernel {v:?}: ring set up as {:?}", b.ring_setup()),
    }
    assert!(!b.sqpoll());
    let _ = b.enable_registered_buffers(8);
    let b = std::sync::Arc::new(b);
    // Chunks of the file itself (a multiple of 512 bytes: O_DIRECT-aligned).
    let file = std::fs::read(&path).unwrap();
    let chunk = 1024usize;
    let chunks = (file.len() / chunk) as u64;
    assert!(chunks > 100);
    // Polling for completions before sleeping (the default), and sleeping at once.
    for spin in [engine::read::DEFAULT_SPIN_US, 0] {
        b.set_spin_us(spin);
        assert_eq!(b.spin_us(), spin);
        std::thread::scope(|s| {
            for th in 0..4u64 {
                let (b, file) = (b.clone(), &file);
                s.spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(th);
                    let mut buf = RegisteredBuf::new(&*b, AlignedBuf::new(64 * chunk).unwrap());
                    for round in 0..50 {
                        let at: Vec<u64> = (0..64).map(|_| rng.gen_range(0..chunks) * chunk as u64).collect();
                        let mut reqs: Vec<ReadReq<'_>> =
                            buf.chunks_mut(chunk).zip(&at).map(|(c, &o)| ReadReq::new(o, c, chunk)).collect();
                        b.read_batch(&mut reqs).unwrap();
                        assert!(reqs.iter().all(|r| r.filled == chunk));
                        for (c, &o) in buf.chunks(chunk).zip(&at) {
                            assert!(c == &file[o as usize..o as usize + chunk], "thread {th} round {round} offset {o}");
                        }
                    }
                    drop(buf);
                });
            }
        });
    }
    assert_eq!(b.registered_buffers(), 0);
}

/// `read_batch_while` runs its work exactly once, while the batch is read or
/// when it fails, and the batch reads what `read_batch` would.
#[test]
fn work_runs_once_beside_a_batch_that_succeeds_or_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "w.scone", 3, 200, 512, Dtype::F16);
    if !uring_available(&path) {
        return;
    }
    let file = std::fs::read(&path).unwrap();
    let b = UringBackend::new(std::fs::File::open(&path).unwrap(), 8).unwrap();
    let pread = engine::read::PreadBackend::new(std::fs::File::open(&path).unwrap(), 4).unwrap();
    for backend in [&b as &dyn Backend, &pread] {
        let mut bufs = vec![vec![0u8; 1000]; 20];
        let mut runs = 0;
        let mut reqs: Vec<ReadReq<'_>> =
            bufs.iter_mut().enumerate().map(|(i, v)| ReadReq::new(i as u64 * 777, v, 1000)).collect();
        backend.read_batch_while(&mut reqs, &mut || runs += 1).unwrap();
        assert_eq!(runs, 1, "{}", backend.name());
        for (i, v) in bufs.iter().enumerate() {
            assert!(v[..] == file[i * 777..i * 777 + 1000], "{} request {i}", backend.name());
        }
        // Past the end of the file: an error, and the work still ran once.
        let mut v = vec![0u8; 4096];
        let mut reqs = [ReadReq::new(file.len() as u64 - 10, &mut v, 4096)];
        let mut runs = 0;
        let e = backend.read_batch_while(&mut reqs, &mut || runs += 1).expect_err("past the end");
        assert_eq!(e.source.kind(), std::io::ErrorKind::UnexpectedEof, "{}", backend.name());
        assert_eq!(runs, 1, "{}", backend.name());
    }
}

/// A `work` closure that panics while the batch's reads are in flight: the
/// unwinding waits for the kernel to finish with the buffers (they are full
/// and intact afterwards, nothing else was written), and the backend and the
/// process carry on.
#[test]
fn a_panicking_work_waits_for_the_reads_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_table(dir.path(), "p.scone", 5, 400, 2048, Dtype::F16);
    if !uring_available(&path) {
        return;
    }
    let file = std::fs::read(&path).unwrap();
    let b = UringBackend::new(engine::read::open_file(&path, true).unwrap().0, 4).unwrap();
    let chunk = 64 << 10;
    let n = (file.len() / chunk).min(64);
    assert!(n >= 8, "a batch larger than the queue depth keeps reads queued at the panic");
    // Guard pages of 0xAA around each request's bytes catch stray writes.
    let mut bufs: Vec<AlignedBuf> = (0..n).map(|_| AlignedBuf::new(chunk + 8192).unwrap()).collect();
    for buf in &mut bufs {
        buf.fill(0xAA);
    }
    for round in 0..5 {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut reqs: Vec<ReadReq<'_>> = bufs
                .iter_mut()
                .enumerate()
                .map(|(i, buf)| ReadReq::new((i * chunk) as u64, &mut buf[4096..4096 + chunk], chunk))
                .collect();
            let _ = b.read_batch_while(&mut reqs, &mut || panic!("work panics in round {round}"));
            unreachable!("the panic propagates");
        }));
        assert!(r.is_err());
        for (i, buf) in bufs.iter().enumerate() {
            assert!(buf[4096..4096 + chunk] == file[i * chunk..(i + 1) * chunk], "round {round} request {i}");
            assert!(buf[..4096].iter().chain(&buf[4096 + chunk..]).all(|&x| x == 0xAA), "round {round} guard {i}");
        }
        for buf in &mut bufs {
            buf[4096..4096 + chunk].fill(0);
        }
    }
    // The ring still serves batches.
    let mut v = AlignedBuf::new(4096).unwrap();
    let mut reqs = [ReadReq::new(8192, &mut v[..], 4096)];
    b.read_batch(&mut reqs).unwrap();
    assert!(v[..] == file[8192..12288]);
}
