//! Golden cases for the client's decisions, from RocketMQ 5.3.3's Java algorithms:
//! `testdata/allocate.txt` (rebalance: which queues each member takes) and `testdata/fault.txt`
//! (how long a broker is avoided after a send of a given latency, or a failure).
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

use petrel_core::client::allocate::{allocate, Strategy};
use petrel_core::client::fault::{not_available_for, FaultTable, ISOLATION_LATENCY};
use petrel_core::client::MessageQueue;

fn cases(file: &str) -> impl Iterator<Item = String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .into_iter()
}

#[test]
fn allocations_match_rocketmq() {
    let mut checked = 0;
    for line in cases("allocate.txt") {
        let mut parts = line.split('|');
        let head: Vec<&str> = parts.next().unwrap().split_whitespace().collect();
        let strategy = match head[0] {
            "AVG" => Strategy::Averagely,
            "CIRCLE" => Strategy::AveragelyByCircle,
            other => match other.strip_prefix("CH") {
                Some(n) => Strategy::ConsistentHash { virtual_nodes: n.parse().unwrap() },
                None => panic!("unknown strategy {other}"),
            },
        };
        let (queues, members): (i32, usize) = (head[1].parse().unwrap(), head[2].parse().unwrap());
        let all_queues: Vec<MessageQueue> =
            (0..queues).map(|q| MessageQueue::new("T", "b", q)).collect();
        // Members c00, c01, ... as in the file (consistent hashing hashes the names).
        let all_members: Vec<String> = (0..members).map(|i| format!("c{i:02}")).collect();
        for (member, expected) in all_members.iter().zip(parts) {
            let expected: Vec<i32> =
                expected.split_whitespace().map(|q| q.parse().unwrap()).collect();
            let got: Vec<i32> = allocate(strategy, member, &all_queues, &all_members)
                .iter()
                .map(|q| q.queue_id)
                .collect();
            assert_eq!(got, expected, "{line}: member {member}");
            checked += 1;
        }
    }
    assert!(checked > 500, "the golden file lost its cases: {checked}");
}

#[test]
fn fault_durations_match_rocketmq() {
    let mut checked = 0;
    for line in cases("fault.txt") {
        let (latency, expected) = line.split_once(' ').unwrap();
        let expected: u64 = expected.parse().unwrap();
        let latency =
            if latency == "failed" { ISOLATION_LATENCY } else { latency.parse().unwrap() };
        assert_eq!(not_available_for(latency), expected, "{line}");
        // The table applies it: the broker is avoided exactly that long.
        let mut table = FaultTable::default();
        table.update("b", latency, false, 1_000);
        assert!(table.is_available("b", 1_000 + expected));
        if expected > 0 {
            assert!(!table.is_available("b", 1_000 + expected - 1));
        }
        checked += 1;
    }
    assert!(checked >= 17);
}
