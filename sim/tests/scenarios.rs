//! Every scenario as a `#[madsim::test]`, for `cargo simtest` and its `MADSIM_TEST_*` variables
//! (`MADSIM_TEST_SEED=7 cargo simtest -p petrel-sim --test scenarios broker`). `cargo sim` runs
//! the same scenarios with a seed range, parallel jobs and a table of results.
#![cfg(madsim)]

use petrel_sim::scenarios;

#[madsim::test]
async fn namesrv() {
    scenarios::namesrv::run().await;
}

#[madsim::test]
async fn broker_admin() {
    scenarios::broker_admin::run().await;
}

#[madsim::test]
async fn namesrv_admin() {
    scenarios::namesrv_admin::run().await;
}

#[madsim::test]
async fn offsets_admin() {
    scenarios::offsets_admin::run().await;
}

#[madsim::test]
async fn expiry() {
    scenarios::expiry::run().await;
}

#[madsim::test]
async fn queries() {
    scenarios::queries::run().await;
}

#[madsim::test]
async fn request_reply() {
    scenarios::request_reply::run().await;
}

#[madsim::test]
async fn broker() {
    scenarios::broker::run().await;
}

#[madsim::test]
async fn producer() {
    scenarios::producer::run().await;
}

#[madsim::test]
async fn consumer() {
    scenarios::consumer::run().await;
}

#[madsim::test]
async fn pull_consumer() {
    scenarios::pull_consumer::run().await;
}

#[madsim::test]
async fn broadcast() {
    scenarios::broadcast::run().await;
}

#[madsim::test]
async fn replication() {
    scenarios::replication::run().await;
}

#[madsim::test]
async fn controller() {
    scenarios::controller::run().await;
}

#[madsim::test]
async fn failover() {
    scenarios::failover::run().await;
}

#[madsim::test]
async fn transactions() {
    scenarios::transactions::run().await;
}

#[madsim::test]
async fn timer() {
    scenarios::timer::run().await;
}

#[madsim::test]
async fn orderly() {
    scenarios::orderly::run().await;
}

#[madsim::test]
async fn pop() {
    scenarios::pop::run().await;
}

#[madsim::test]
async fn pop_orderly() {
    scenarios::pop_orderly::run().await;
}

#[madsim::test]
async fn filter() {
    scenarios::filter::run().await;
}

#[madsim::test]
async fn admin() {
    scenarios::admin::run().await;
}
