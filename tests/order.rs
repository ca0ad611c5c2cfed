//! The sample order of `tests/vectors/sample-order.json`, which the Python tests check too,
//! so that one seed gives one order in Rust and in Python (docs/sample-order.md).
//! `SHARDPACK_REGENERATE_VECTORS=1 cargo test --test order` rewrites the file.

use shardpack::order::{EpochOrder, Partition, ReadPlan, Shuffle, Tail};

const VECTOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/sample-order.json"
);

/// (shard samples, seed or none, span, window, epoch).
type Case = (Vec<u64>, Option<u64>, u32, u32, u64);

fn cases() -> Vec<Case> {
    vec![
        (vec![1000, 7, 2500, 1], Some(7), 64, 200, 0),
        (vec![1000, 7, 2500, 1], Some(7), 64, 200, 1),
        (vec![300], Some(9176), 1024, 4096, 0),
        (vec![50, 50], None, 1024, 4096, 0),
    ]
}

fn order_of(case: &Case) -> Vec<u64> {
    let (shards, seed, span, window, epoch) = case;
    let shuffle = seed.map(|seed| Shuffle {
        seed,
        span: *span,
        window: *window,
    });
    let order = EpochOrder::new(shards, shuffle, *epoch).unwrap();
    let len = order.len();
    let mut cursor = order.cursor();
    (0..len).map(|p| cursor.ordinal(p).unwrap()).collect()
}

fn document() -> serde_json::Value {
    let cases: Vec<serde_json::Value> = cases()
        .iter()
        .map(|case| {
            serde_json::json!({
                "shard_samples": case.0,
                "seed": case.1,
                "span": case.2,
                "window": case.3,
                "epoch": case.4,
                "order": order_of(case),
            })
        })
        .collect();
    serde_json::json!({ "cases": cases })
}

#[test]
fn the_order_vector_matches_this_build() {
    let expected = document();
    if std::env::var_os("SHARDPACK_REGENERATE_VECTORS").is_some() {
        std::fs::write(VECTOR, serde_json::to_string(&expected).unwrap() + "\n").unwrap();
    }
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(VECTOR).unwrap()).unwrap();
    assert_eq!(
        stored, expected,
        "regenerate with SHARDPACK_REGENERATE_VECTORS=1"
    );
}

#[test]
fn a_plan_reads_each_ordinal_of_a_shuffled_epoch_once() {
    let order = EpochOrder::new(&[400, 33, 900], Some(Shuffle::new(3)), 2).unwrap();
    let mut all = Vec::new();
    for rank in 0..2 {
        for worker in 0..3 {
            let partition = Partition {
                rank,
                world: 2,
                worker,
                workers: 3,
                batch: 32,
                tail: Tail::Keep,
            };
            let plan = ReadPlan::new(order.clone(), partition, 0, 0).unwrap();
            all.extend(plan.flatten());
        }
    }
    all.sort_unstable();
    assert_eq!(all, (0..1333).collect::<Vec<u64>>());
}
