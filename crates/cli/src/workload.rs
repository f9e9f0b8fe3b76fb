//! A built-in workload for `replay` and `viz` when no trace is given: a
//! deterministic mix of many small short-lived blocks, some medium ones,
//! a few large long-lived ones and some reallocs, in phases that build up
//! and tear down, so the heap map shows growth, holes and reuse.

use stratalloc::__private::trace::{Event, Op, Trace};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `ops` operations (roughly), from `seed`.
pub fn mixed(ops: usize, seed: u64) -> Trace {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut live: Vec<u32> = Vec::new();
    let mut events = Vec::with_capacity(ops);
    let mut ids = 0u32;
    let push = |op: Op, events: &mut Vec<Event>| {
        let time = events.len() as u64 * 100;
        events.push(Event {
            op,
            thread: 1,
            time,
        })
    };
    while events.len() < ops {
        let phase = (events.len() * 4 / ops.max(1)) as u64; // 0..3
        let grow = phase % 2 == 0;
        let r = rng.below(100);
        let p_alloc = if grow { 65 } else { 35 };
        if r < p_alloc || live.is_empty() {
            let size = match rng.below(100) {
                0..=69 => 8 + rng.below(120),
                70..=94 => 256 + rng.below(4000),
                _ => 16_384 + rng.below(120_000),
            };
            let align = if rng.below(20) == 0 { 64 } else { 16 };
            push(
                Op::Alloc {
                    id: ids,
                    size,
                    align,
                    zeroed: rng.below(10) == 0,
                },
                &mut events,
            );
            live.push(ids);
            ids += 1;
        } else if r < 90 {
            let i = rng.below(live.len() as u64) as usize;
            let id = live.swap_remove(i);
            push(Op::Free { id }, &mut events);
        } else {
            let i = rng.below(live.len() as u64) as usize;
            let old = live[i];
            let size = 16 + rng.below(8000);
            push(
                Op::Realloc {
                    old,
                    new: ids,
                    size,
                },
                &mut events,
            );
            live[i] = ids;
            ids += 1;
        }
    }
    Trace {
        pid: 0,
        events,
        ids,
        threads: 1,
        unmatched: 0,
        other_pids: Vec::new(),
    }
}
