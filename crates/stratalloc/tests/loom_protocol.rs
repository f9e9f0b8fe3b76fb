//! Model checking (loom) of the engine's cross-thread protocol: remote
//! frees, the FULL bit of floating pages, the segment's `pending` flag and
//! the heaps' pending stacks, and abandon/reclaim at thread exit.
//!
//! loom runs every interleaving (and every weak-memory outcome it models)
//! of small programs, so these are models: each step below is the engine's
//! step, with the same atomic operations and orderings, on one page whose
//! blocks are numbered. The engine functions they mirror are named at each
//! step (`engine/remote.rs::{push, publish, notify}`, `engine/page.rs::{try_mark_full,
//! clear_full, collect}`, `engine/heap.rs::{pending_push, pass_on,
//! pass_on_all}`, `engine/abandon.rs::{collect_pending, settle, abandon,
//! reclaim, adopt_where}`); a change there must be made here too. The
//! page's segment is the only one, so a heap's pending stack is a flag
//! (is the segment on it).
//!
//! Properties checked in every interleaving:
//! - no block freed by another thread is stranded: when every thread is
//!   done and the owner (or the adopter) has made its last pass, every
//!   freed block has been collected;
//! - no thread touches a page after its owner released it (a remote free
//!   keeps the page alive with its own block until its push is visible);
//! - `used` never goes below zero (no block collected twice).

use loom::model::Builder;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// Run `f` under loom with every interleaving that has at most this many
/// preemptions (loom's advice: bugs show within two or three; unbounded,
/// three threads take hours). `LOOM_MAX_PREEMPTIONS` overrides it.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// `thread_free` low bit: the owner wants to hear about remote frees.
const TF_FULL: usize = 1;

/// One page of `n` blocks, all handed out; blocks are `2, 4, ...` (even,
/// so the FULL bit is free), linked through `links`.
struct Page {
    thread_free: AtomicUsize,
    /// The segment's `pending` flag.
    pending: AtomicBool,
    /// The segment's owning heap: 1 (the first owner), 2 (an adopter), 0
    /// while abandoned.
    heap: AtomicUsize,
    /// `stacks[h]`: the segment is on heap `h`'s pending stack.
    stacks: Vec<AtomicUsize>,
    /// `links[b / 2]`: the block's next pointer (written before its push).
    links: Vec<AtomicUsize>,
    /// Set by the owner when it releases the span (used reaches 0).
    released: AtomicBool,
}

impl Page {
    fn new(n: usize) -> Self {
        Page {
            thread_free: AtomicUsize::new(0),
            pending: AtomicBool::new(false),
            heap: AtomicUsize::new(1),
            stacks: (0..3).map(|_| AtomicUsize::new(0)).collect(),
            links: (0..=n).map(|_| AtomicUsize::new(0)).collect(),
            released: AtomicBool::new(false),
        }
    }

    /// A remote free of one block (a chain of one: `remote.rs::publish`).
    fn free_remote(&self, b: usize) {
        self.publish(b, b);
    }

    /// `remote.rs::push` then `publish`: the freeing thread links the
    /// blocks of its batch (`blocks[0]` is the head, the last the tail)
    /// without atomics, and the chain goes on `thread_free` with one CAS.
    fn free_batch(&self, blocks: &[usize]) {
        for w in blocks.windows(2) {
            self.links[w[0] / 2].store(w[1], Relaxed);
        }
        self.publish(blocks[0], blocks[blocks.len() - 1]);
    }

    /// `remote.rs::notify`: raise `pending` and push the segment on its
    /// owner's stack; pass that stack on if the owner gave it up meanwhile.
    fn notify(&self) {
        let h = self.heap.load(Acquire);
        if h != 0 && !self.pending.swap(true, AcqRel) {
            self.push(h);
            if self.heap.load(Acquire) != h {
                self.pass_on_all(h);
            }
        }
    }

    /// `heap.rs::pending_push`.
    fn push(&self, h: usize) {
        let was = self.stacks[h].swap(1, AcqRel);
        assert_eq!(was, 0, "a segment pushed on a stack it is on");
    }

    /// `heap.rs::pass_on`: to the owner now, or flag cleared if abandoned.
    fn pass_on(&self) {
        let o = self.heap.load(Acquire);
        if o == 0 {
            self.pending.swap(false, AcqRel);
        } else {
            self.push(o);
        }
    }

    /// `heap.rs::pass_on_all`.
    fn pass_on_all(&self, h: usize) {
        if self.stacks[h].swap(0, AcqRel) != 0 {
            self.pass_on();
        }
    }

    /// `remote.rs::publish`: the chain `head ..= tail` (linked already but
    /// for the tail's link) pushed with one CAS, after the FULL bit is
    /// cleared and `pending` set.
    fn publish(&self, head: usize, tail: usize) {
        let tf = &self.thread_free;
        let mut old = tf.load(Relaxed);
        loop {
            assert!(
                !self.released.load(SeqCst),
                "remote free touched a released page"
            );
            if old & TF_FULL != 0 {
                match tf.compare_exchange_weak(old, old & !TF_FULL, AcqRel, Relaxed) {
                    Ok(_) => {
                        self.notify();
                        old &= !TF_FULL;
                    }
                    Err(o) => {
                        old = o;
                        continue;
                    }
                }
            }
            self.links[tail / 2].store(old, Relaxed);
            match tf.compare_exchange_weak(old, head, Release, Relaxed) {
                Ok(_) => return,
                Err(o) => old = o,
            }
        }
    }
}

/// The owner's view of the page.
struct Owner {
    /// Its heap (the index of its pending stack).
    id: usize,
    used: usize,
    floating: bool,
}

impl Owner {
    /// `page.rs::collect` (the thread-free part): take the list, keep the
    /// FULL bit, count the blocks.
    fn collect(&mut self, p: &Page) {
        if p.thread_free.load(Relaxed) & !TF_FULL == 0 {
            return;
        }
        let mut old = p.thread_free.load(Relaxed);
        loop {
            match p
                .thread_free
                .compare_exchange_weak(old, old & TF_FULL, AcqRel, Relaxed)
            {
                Ok(_) => break,
                Err(o) => old = o,
            }
        }
        let mut b = old & !TF_FULL;
        while b != 0 {
            assert!(self.used > 0, "a block was collected twice");
            self.used -= 1;
            b = p.links[b / 2].load(Relaxed);
        }
    }

    /// `page.rs::try_mark_full`.
    fn try_mark_full(&mut self, p: &Page) -> bool {
        let mut old = p.thread_free.load(Relaxed);
        loop {
            if old & !TF_FULL != 0 {
                return false;
            }
            match p
                .thread_free
                .compare_exchange_weak(old, old | TF_FULL, AcqRel, Relaxed)
            {
                Ok(_) => break,
                Err(o) => old = o,
            }
        }
        self.floating = true;
        true
    }

    /// `page.rs::clear_full`.
    fn clear_full(&mut self, p: &Page) {
        self.floating = false;
        p.thread_free.fetch_and(!TF_FULL, AcqRel);
    }

    /// `heap.rs::settle`: released if empty, else queued (it has room now)
    /// or floated again.
    fn settle(&mut self, p: &Page) {
        loop {
            if self.used == 0 {
                p.released.store(true, SeqCst);
                return;
            }
            if self.used < p.links.len() - 1 {
                return; // queued: the owner's malloc will find its blocks
            }
            if self.try_mark_full(p) {
                return;
            }
            self.collect(p);
        }
    }

    /// `abandon.rs::collect_pending`: take the stack; a segment of
    /// another heap's (or abandoned) is passed on.
    fn collect_pending(&mut self, p: &Page) {
        if p.stacks[self.id].swap(0, AcqRel) != 0 {
            if p.heap.load(Acquire) != self.id {
                p.pass_on();
                return;
            }
            p.pending.swap(false, AcqRel);
            if !self.floating {
                return;
            }
            let tf = p.thread_free.load(Acquire);
            if tf & TF_FULL != 0 && tf & !TF_FULL == 0 {
                return;
            }
            self.clear_full(p);
            self.collect(p);
            self.settle(p);
        }
    }

    /// Blocks freed by others that the owner has not taken: they must be
    /// on a page it will look at again (a queued page: the next malloc of
    /// its class collects it), never on a floating page with no pending
    /// flag to bring it back.
    fn stranded(&self, p: &Page) -> bool {
        let tf = p.thread_free.load(Acquire);
        self.floating && tf & !TF_FULL != 0 && p.stacks[self.id].load(Acquire) == 0
    }
}

/// The owner floats its full page while two other threads free one block
/// each; afterwards its slow paths look at pending segments.
#[test]
fn remote_frees_to_a_floating_page_are_never_stranded() {
    model(|| {
        let page = Arc::new(Page::new(2));
        let remotes: Vec<_> = [2usize, 4]
            .into_iter()
            .map(|b| {
                let p = page.clone();
                thread::spawn(move || p.free_remote(b))
            })
            .collect();
        let mut me = Owner {
            id: 1,
            used: 2,
            floating: false,
        };
        // `heap.rs::alloc_class_slow`: a full page is floated, or, if
        // remote frees are already waiting, collected and kept.
        if !me.try_mark_full(&page) {
            me.collect(&page);
        }
        me.collect_pending(&page);
        for t in remotes {
            t.join().unwrap();
        }
        assert!(!me.stranded(&page), "a remote free is stranded");
        // A later slow path (or the next malloc of the class) takes them.
        me.collect_pending(&page);
        if !me.floating {
            me.collect(&page);
        }
        assert_eq!(me.used, 0, "freed blocks were not all collected");
    });
}

/// The owner exits while another thread frees into its floating page; a
/// third thread adopts the abandoned segment.
#[test]
fn remote_frees_into_an_abandoned_segment_reach_the_adopter() {
    model(|| {
        let page = Arc::new(Page::new(2));
        // The abandoned list: the page's owner state travels with it.
        let abandoned: Arc<Mutex<Option<Owner>>> = Arc::new(Mutex::new(None));
        let remote = {
            let p = page.clone();
            thread::spawn(move || p.free_remote(2))
        };
        let owner = {
            let (p, list) = (page.clone(), abandoned.clone());
            thread::spawn(move || {
                let mut me = Owner {
                    id: 1,
                    used: 2,
                    floating: false,
                };
                if !me.try_mark_full(&p) {
                    me.collect(&p);
                }
                // `abandon.rs::abandon`: take the stack, give the segment
                // up (`heap` cleared), collect every page, release empty
                // ones, push the segment (under the global lock), take the
                // stack again.
                me.collect_pending(&p);
                p.heap.store(0, Release);
                me.collect(&p);
                if me.used == 0 {
                    p.released.store(true, SeqCst);
                }
                me.collect_pending(&p);
                *list.lock().unwrap() = Some(me);
            })
        };
        owner.join().unwrap();
        // `adopt_where` adopts only a segment whose flag is clear; the
        // remote free clears it by itself if it pushed late.
        let mut remote = Some(remote);
        if page.pending.load(Acquire) {
            remote.take().unwrap().join().unwrap();
            assert!(
                !page.pending.load(Acquire),
                "an abandoned segment kept its flag: never adopted"
            );
        }
        // `abandon.rs::reclaim` by another thread: owner set, then clear
        // FULL, collect, settle every page.
        let mut me = abandoned.lock().unwrap().take().unwrap();
        me.id = 2;
        page.heap.store(2, Release);
        me.clear_full(&page);
        me.collect(&page);
        me.settle(&page);
        if let Some(t) = remote {
            t.join().unwrap();
        }
        assert!(!me.stranded(&page), "a remote free is stranded");
        me.collect_pending(&page);
        if !me.floating {
            me.collect(&page);
        }
        // One block was freed by the remote thread; the other is still
        // held by the program.
        assert_eq!(me.used, 1, "the remote free was lost or counted twice");
    });
}

/// The owner floats its full page while one thread pushes a batch of two
/// blocks (one CAS for both) and another frees one block alone.
#[test]
fn a_batch_of_remote_frees_to_a_floating_page_is_never_stranded() {
    model(|| {
        let page = Arc::new(Page::new(3));
        let batch = {
            let p = page.clone();
            thread::spawn(move || p.free_batch(&[2, 4]))
        };
        let single = {
            let p = page.clone();
            thread::spawn(move || p.free_remote(6))
        };
        let mut me = Owner {
            id: 1,
            used: 3,
            floating: false,
        };
        if !me.try_mark_full(&page) {
            me.collect(&page);
        }
        me.collect_pending(&page);
        batch.join().unwrap();
        single.join().unwrap();
        assert!(!me.stranded(&page), "a remote free is stranded");
        me.collect_pending(&page);
        if !me.floating {
            me.collect(&page);
        }
        assert_eq!(me.used, 0, "freed blocks were not all collected");
    });
}
