//! In-process cost of stage locks, without the API server: encoding and parsing a lease
//! record, and one acquire + release through the in-memory store while 50 other leases sit
//! in the same ConfigMap (each write copies the whole object, as the UPDATE to kube-apiserver
//! does). The end-to-end acquire latency against a real kube-apiserver is printed by the e2e
//! crate's `lock_storm` test.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use kiln_operator::lock::{
    LeaseRecord, LeaseTimings, LockMode, Locker, MemoryStore, SystemClock, TryAcquire,
};

fn record(c: &mut Criterion) {
    let lease = LeaseRecord {
        uuid: "3f2c9a56-6a1e-4c1b-9a51-2b0c8e7d4f10".into(),
        lock_name: "myproj/stage/e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe".into(),
        expire_at: 1_767_225_600,
        shared_holders_count: 1,
        is_shared: false,
        unknown: Vec::new(),
    };
    let json = lease.to_json();
    let mut group = c.benchmark_group("lock");
    group.bench_function("lease record to JSON", |b| b.iter(|| lease.to_json()));
    group.bench_function("lease record from JSON", |b| {
        b.iter(|| LeaseRecord::parse(&json).unwrap())
    });
    group.finish();
}

fn acquire_release(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let locker = Locker::new(
        Arc::new(MemoryStore::new()),
        Arc::new(SystemClock),
        LeaseTimings::default(),
    );
    // 50 leases held for the whole benchmark (their renewals run every 3 s).
    let held: Vec<_> = runtime.block_on(async {
        let mut held = Vec::new();
        for i in 0..50 {
            let name = format!("bench/stage/{i:056x}");
            held.push(
                locker
                    .acquire(&name, LockMode::Exclusive, Duration::from_secs(1))
                    .await
                    .unwrap(),
            );
        }
        held
    });
    let mut group = c.benchmark_group("lock");
    group.bench_function("acquire + release, 50 other leases in the ConfigMap", |b| {
        b.iter(|| {
            runtime.block_on(async {
                match locker
                    .try_acquire("bench/stage/free", LockMode::Exclusive)
                    .await
                    .unwrap()
                {
                    TryAcquire::Held(guard) => guard.release().await.unwrap(),
                    TryAcquire::MustWait { .. } => panic!("the benchmark lock is free"),
                }
            })
        })
    });
    group.finish();
    drop(held);
}

criterion_group!(benches, record, acquire_release);
criterion_main!(benches);
