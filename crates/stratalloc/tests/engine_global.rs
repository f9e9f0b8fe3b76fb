//! The engine as `#[global_allocator]`: this whole test binary (the test
//! harness, std's threads, channels, strings) runs on it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use stratalloc::StratAlloc;

#[global_allocator]
static A: StratAlloc = StratAlloc::new();

#[test]
fn collections_threads_and_channels_work() {
    let shared = Arc::new(Mutex::new(BTreeMap::new()));
    let (tx, rx) = mpsc::channel::<Vec<String>>();
    let mut hs = Vec::new();
    for t in 0..4 {
        let shared = Arc::clone(&shared);
        let tx = tx.clone();
        hs.push(thread::spawn(move || {
            let mut m: HashMap<String, Vec<u64>> = HashMap::new();
            for i in 0..20_000u64 {
                let k = format!("k{}-{}", t, i % 997);
                m.entry(k).or_default().push(i);
                if i % 1000 == 0 {
                    tx.send((0..50).map(|j| format!("{t}:{i}:{j}")).collect())
                        .unwrap();
                }
            }
            let total: u64 = m.values().map(|v| v.iter().sum::<u64>()).sum();
            shared.lock().unwrap().insert(t, total);
        }));
    }
    drop(tx);
    let mut got = 0;
    for v in rx {
        for s in &v {
            assert!(s.contains(':'));
        }
        got += v.len();
    }
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(got, 4 * 20 * 50);
    let m = shared.lock().unwrap();
    let expect: u64 = (0..20_000u64).sum();
    assert!(m.values().all(|&v| v == expect));
}

#[test]
fn big_and_aligned_values() {
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    let pages: Vec<Box<Page>> = (0..100).map(|i| Box::new(Page([i as u8; 4096]))).collect();
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(&**p as *const Page as usize % 4096, 0);
        assert!(p.0.iter().all(|&b| b == i as u8));
    }
    let mut v: Vec<u8> = Vec::new();
    for i in 0..(20 << 20) {
        v.push(i as u8);
    }
    assert!(v.iter().enumerate().all(|(i, &b)| b == i as u8));
    let z = vec![0u64; 1 << 20];
    assert!(z.iter().all(|&x| x == 0));
}

#[test]
fn allocator_api2_collections() {
    use allocator_api2::vec::Vec as AVec;
    let mut v = AVec::new_in(StratAlloc::new());
    for i in 0..100_000u32 {
        v.push(i);
    }
    assert_eq!(
        v.iter().map(|&x| x as u64).sum::<u64>(),
        (0..100_000u64).sum()
    );
}
