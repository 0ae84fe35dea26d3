//! stub
#[path = "../tests/support/kafka_broker.rs"]
#[allow(dead_code)]
mod kafka_broker;
fn main() {
    let _ = kafka_broker::BROKER_VERSION;
}
